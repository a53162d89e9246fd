"""Compares nadir's flows with NFStream's on the same capture.

Both meters run with the same idle and active timeouts and count IP bytes
(NFStream's accounting_mode=1). Flows are matched on protocol and endpoints
(in either direction; ICMP ports ignored, since NFStream keys ICMP flows on
addresses only) and, where several flows share them, in order of their first
packet. Prints the flow counts, and every matched flow whose packets or bytes
per direction differ, then a summary line per capture.
"""

import sys
from collections import defaultdict

import nfstream
import pyarrow.parquet as pq


def endpoints(proto, a, ap, b, bp):
    if proto in (1, 58):
        ap = bp = 0
    x, y = (a, ap), (b, bp)
    return (proto,) + ((x, y) if x <= y else (y, x))


def nadir_flows(path):
    t = pq.read_table(path).to_pylist()
    out = defaultdict(list)
    for r in t:
        key = endpoints(r["protocol"], r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"])
        out[key].append(
            dict(first=r["first_seen_ns"] / 1e6, src=r["src_ip"],
                 fp=int(r["fwd_packets"]), bp=int(r["bwd_packets"]),
                 fb=int(r["fwd_bytes"]), bb=int(r["bwd_bytes"]))
        )
    return out


def nfstream_flows(capture, idle, active):
    out = defaultdict(list)
    streamer = nfstream.NFStreamer(source=capture, idle_timeout=idle, active_timeout=active,
                                   accounting_mode=1, statistical_analysis=False, n_dissections=0,
                                   n_meters=1, decode_tunnels=False)
    for f in streamer:
        key = endpoints(f.protocol, f.src_ip, f.src_port, f.dst_ip, f.dst_port)
        out[key].append(dict(first=f.bidirectional_first_seen_ms, src=f.src_ip,
                             fp=f.src2dst_packets, bp=f.dst2src_packets,
                             fb=f.src2dst_bytes, bb=f.dst2src_bytes))
    return out


def main():
    capture, nadir_parquet, idle, active = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ours, theirs = nadir_flows(nadir_parquet), nfstream_flows(capture, idle, active)
    n_ours = sum(len(v) for v in ours.values())
    n_theirs = sum(len(v) for v in theirs.values())
    matched = same = 0
    differences = []
    for key in sorted(set(ours) | set(theirs), key=str):
        a = sorted(ours.get(key, []), key=lambda f: f["first"])
        b = sorted(theirs.get(key, []), key=lambda f: f["first"])
        for x, y in zip(a, b):
            matched += 1
            if x["src"] != y["src"]:
                # Opposite notions of the source: compare crosswise.
                y = dict(y, fp=y["bp"], bp=y["fp"], fb=y["bb"], bb=y["fb"])
            fields = [k for k in ("fp", "bp", "fb", "bb") if x[k] != y[k]]
            if fields:
                differences.append((key, {k: (x[k], y[k]) for k in fields}))
            else:
                same += 1
        if len(a) != len(b):
            differences.append((key, {"flows": (len(a), len(b))}))
    for key, diff in differences[:40]:
        print(f"  {key}: " + ", ".join(f"{k} nadir {v[0]} nfstream {v[1]}" for k, v in diff.items()))
    if len(differences) > 40:
        print(f"  ... {len(differences) - 40} more")
    print(f"flows: nadir {n_ours}, nfstream {n_theirs}; matched {matched}, identical packets and bytes {same}")


if __name__ == "__main__":
    main()
