"""Times NFStream on a capture, one meter process, full statistical features.

Prints: packets flows seconds
"""

import sys
import time

import nfstream

capture = sys.argv[1]
started = time.perf_counter()
flows = packets = 0
streamer = nfstream.NFStreamer(source=capture, idle_timeout=120, active_timeout=1800,
                               statistical_analysis=True, n_meters=1, accounting_mode=1)
for flow in streamer:
    flows += 1
    packets += flow.bidirectional_packets
print(packets, flows, time.perf_counter() - started)
