//! Long connections and exfiltration: how long a pair talks, and how much
//! leaves a host for one peer.

use nadir_contract::findings::FindingKind;
use nadir_contract::findings::service_peer;

use super::{
    Behaviour, Flow, Judging, bytes_words, excess, group_by, median, score, seconds_words,
};

/// A long connection alone is often benign (a VPN, a backup): medium.
const LONG_BASE: f64 = 0.45;
/// Data leaving: high from the start.
const EXFIL_BASE: f64 = 0.6;

pub(super) fn long_connections(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let candidates = group_by(flows, |f| {
        let d = f.duration_s();
        (d >= params.long_min_s / 2.0).then(|| (f.src.clone(), f.dst.clone(), f.dst_port))
    });
    let mut found = Vec::new();
    for ((src, dst, port), rows) in candidates {
        let peer = service_peer(&dst, port);
        // A pair that held connections this long before is not news.
        let before = judging
            .host(&src)
            .flatten()
            .and_then(|h| h.long_connections.get(&peer).copied());
        let min_s = params
            .long_min_s
            .max(params.baseline_margin * before.unwrap_or(0.0));
        let rows: Vec<usize> = rows
            .into_iter()
            .filter(|r| {
                let (f, d) = (&flows[*r], flows[*r].duration_s());
                d >= min_s || (f.still_open && d >= min_s / 2.0)
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let longest = rows
            .iter()
            .map(|r| flows[*r].duration_s())
            .fold(0.0, f64::max);
        let open = rows.iter().filter(|r| flows[**r].still_open).count();
        let against = match (judging.host(&src), before) {
            (None, _) => format!("threshold {}", seconds_words(min_s)),
            (Some(None), _) => format!(
                "this host is not in the training window; threshold {}",
                seconds_words(min_s)
            ),
            (Some(Some(_)), None) => format!(
                "none this long to it in the training window; threshold {}",
                seconds_words(min_s)
            ),
            (Some(Some(_)), Some(before)) => format!(
                "its longest to it in the training window: {}; threshold {}",
                seconds_words(before),
                seconds_words(min_s)
            ),
        };
        found.push(Behaviour {
            kind: FindingKind::LongConnection,
            explanation: format!(
                "{} connection(s) of {src} to {dst}:{port}, the longest open {}{}; {against}",
                rows.len(),
                seconds_words(longest),
                if open > 0 {
                    format!(", {open} still open at the end of the capture")
                } else {
                    String::new()
                },
            ),
            src,
            peer,
            score: score(LONG_BASE, excess(longest, min_s / 2.0)),
            flows: rows,
        });
    }
    found
}

pub(super) fn exfiltration(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let pairs = group_by(flows, |f| Some((f.src.clone(), f.dst.clone())));
    let sent = |rows: &[usize]| rows.iter().map(|r| flows[*r].fwd_bytes).sum::<u64>();
    let typical = median(pairs.values().map(|rows| sent(rows) as f64).collect());
    let mut found = Vec::new();
    for ((src, dst), rows) in pairs {
        let out = sent(&rows);
        let back: u64 = rows.iter().map(|r| flows[*r].bwd_bytes).sum();
        let ratio = out as f64 / back.max(1) as f64;
        let threshold = judging.volume(&src, params.exfil_min_bytes as f64, |h| {
            h.bytes_to_one_peer as f64
        });
        if (out as f64) < threshold.value || ratio < params.exfil_min_ratio {
            continue;
        }
        let ports: std::collections::BTreeSet<u16> =
            rows.iter().map(|r| flows[*r].dst_port).collect();
        let peer = if ports.len() == 1 {
            format!("{dst}:{}", ports.first().copied().unwrap_or(0))
        } else {
            dst.clone()
        };
        let against = match judging.baseline {
            None => format!(
                "typical in this run: {} per host pair; threshold {}",
                bytes_words(typical),
                bytes_words(threshold.value)
            ),
            Some(_) => threshold.words("this host", |v| format!("{} to one peer", bytes_words(v))),
        };
        found.push(Behaviour {
            kind: FindingKind::Exfiltration,
            explanation: format!(
                "{} sent by {src} to {peer} in {} connection(s), {:.0}× what it received; {against}",
                bytes_words(out as f64),
                rows.len(),
                ratio,
            ),
            src,
            peer,
            score: score(EXFIL_BASE, excess(out as f64, threshold.value / 2.0)),
            flows: rows,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::tests::{benign, numbered, tcp};
    use super::*;

    #[test]
    fn a_connection_open_for_hours_is_long() {
        let mut flows = benign();
        let mut vpn = tcp("10.0.0.15", "192.0.2.1", 1194, 0.0, 7200.0);
        vpn.still_open = true;
        flows.push(vpn);
        let found = long_connections(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .explanation
                .contains("the longest open 2.0 h, 1 still open"),
            "{}",
            found[0].explanation
        );
    }

    #[test]
    fn megabytes_out_for_nothing_back_are_exfiltration() {
        let mut flows = benign();
        let mut leak = tcp("10.0.0.13", "203.0.113.7", 8443, 20.0, 150.0);
        leak.fwd_bytes = 12_000_000;
        leak.bwd_bytes = 40_000;
        flows.push(leak);
        let found = exfiltration(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].peer, "203.0.113.7:8443");
        assert!(
            found[0].explanation.starts_with(
                "12.0 MB sent by 10.0.0.13 to 203.0.113.7:8443 in 1 connection(s), 300×"
            ),
            "{}",
            found[0].explanation
        );
    }

    #[test]
    fn a_download_is_no_exfiltration() {
        let mut flows = benign();
        let mut download = tcp("10.0.0.13", "203.0.113.7", 443, 20.0, 150.0);
        download.fwd_bytes = 12_000_000;
        download.bwd_bytes = 9_000_000;
        flows.push(download);
        assert!(exfiltration(&numbered(flows.clone()), &Judging::defaults(&flows)).is_empty());
    }
}
