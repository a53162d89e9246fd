//! The flow meter's memory on hostile captures, measured from `/proc`.
//!
//! One test in a binary of its own, so the process's peak resident set
//! (`VmHWM` in `/proc/self/status`) is this test's alone. The captures are
//! made as they are read, a record at a time, and the flows counted as they
//! come out, so what the process holds is what the meter holds.

mod common;

use std::io::Read;

use common::{PcapForm, T0, Y2106, pcap_header, pcap_record, udp};
use nadir_flowmeter::{MeterConfig, MeterStats, Source, stream_flows};

/// Flows of each hostile capture.
const FLOWS: u64 = 1_000_000;

/// A capture made as it is read: the pcap file header, then the packet
/// `packet(i)` returns for i = 0, 1, … until it returns `None`. Holds a
/// few records, never the capture.
struct Generated<F> {
    form: PcapForm,
    packet: F,
    next: u64,
    /// Bytes made and not read yet.
    buf: Vec<u8>,
    done: bool,
}

impl<F: FnMut(u64) -> Option<(i64, Vec<u8>)>> Generated<F> {
    fn new(packet: F) -> Self {
        let form = PcapForm::USUAL;
        Generated {
            form,
            packet,
            next: 0,
            // Ethernet.
            buf: pcap_header(form, 1),
            done: false,
        }
    }
}

impl<F: FnMut(u64) -> Option<(i64, Vec<u8>)>> Read for Generated<F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while !self.done && self.buf.len() < out.len() {
            match (self.packet)(self.next) {
                Some((ts, frame)) => {
                    pcap_record(&mut self.buf, self.form, ts, &frame);
                    self.next += 1;
                }
                None => self.done = true,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        Ok(n)
    }
}

/// The source of the `i`th generated flow: distinct for every `i` below
/// 16 million (60 000 ports per address), a few addresses in all.
fn source(i: u64) -> ([u8; 4], u16) {
    let host = i / 60_000;
    (
        [10, 1, (host >> 8) as u8, host as u8],
        1024 + (i % 60_000) as u16,
    )
}

/// A field of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Sets the peak resident set (`VmHWM`) back to the current one (Linux 4.0
/// and later), so each case measures its own peak.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM in /proc/self/clear_refs");
}

/// Meters `capture` with `config` as the transform does (streamed, each
/// flow handed on as it comes); the flows counted, the statistics and how
/// far the peak resident set rose above the resident set before, in MiB.
fn metered(capture: impl Read + Send, config: MeterConfig) -> (u64, MeterStats, f64) {
    reset_peak();
    let before = status_kb("VmRSS");
    let mut flows = 0u64;
    let stats = stream_flows(Source::reader(capture), config, |_| {}, |_| flows += 1).unwrap();
    let growth = status_kb("VmHWM").saturating_sub(before);
    (flows, stats, growth as f64 / 1024.0)
}

/// How far the peak resident set may rise while a hostile capture is
/// metered, in MiB. Measured: about 43 MiB with the clock-jump rule
/// (some 12 500 flows open at once, 60 s of per-host context) and about
/// 58 MiB with the open-flow cap (10 000 open, and a million flows in the
/// 60 s context window); with every flow left open, about 2.3 GiB.
const BOUND_MIB: f64 = 100.0;

const FAR_AFTER: &str = "timestamp far after the packets before it (max_clock_jump)";

#[test]
fn hostile_captures_keep_the_meters_memory_bounded() {
    // 1. A packet dated 2106 first (the clock moves back to the real
    // packets: a reset), another in the middle (skipped), and between them
    // a million one-packet flows 10 ms apart (2¾ hours of capture). The
    // 120 s idle timeout ends each flow about two minutes after it began,
    // so about 12 500 are open at once; had the bogus packet pinned the
    // clock, all would be.
    let config = MeterConfig::default();
    let bogus = udp([10, 255, 0, 1], 7);
    let capture = Generated::new(move |i| match i {
        0 => Some((Y2106, bogus.clone())),
        i if i == FLOWS / 2 + 1 => Some((Y2106, bogus.clone())),
        i if i <= FLOWS + 1 => {
            let n = if i > FLOWS / 2 + 1 { i - 2 } else { i - 1 };
            let (src, port) = source(n);
            Some((T0 + n as i64 * 10_000_000, udp(src, port)))
        }
        _ => None,
    });
    let (flows, stats, growth) = metered(capture, config);
    println!(
        "2106 then {FLOWS} flows over {} s: peak resident set +{growth:.1} MiB, {flows} flows, {} clock reset(s), {} skipped far ahead",
        FLOWS / 100,
        stats.clock_resets,
        stats.skipped.get(FAR_AFTER).copied().unwrap_or(0)
    );
    assert!(
        growth < BOUND_MIB,
        "memory grew by {growth:.1} MiB: flows did not expire"
    );
    assert_eq!(stats.packets, FLOWS + 2);
    assert_eq!(
        flows,
        FLOWS + 1,
        "every generated flow and the first bogus packet's"
    );
    assert_eq!(stats.flows, flows);
    assert_eq!(stats.clock_resets, 1, "the first packet, dated 2106");
    assert_eq!(
        stats.skipped.get(FAR_AFTER).copied(),
        Some(1),
        "the second packet dated 2106"
    );
    assert_eq!(stats.evicted, 0, "the idle timeout ended them, not the cap");

    // 2. A million flows in one second: none goes idle, so only the cap on
    // open flows bounds them. At the cap the oldest is ended (`evicted`).
    let config = MeterConfig {
        max_open_flows: 10_000,
        ..MeterConfig::default()
    };
    let capture = Generated::new(|i| {
        (i < FLOWS).then(|| {
            let (src, port) = source(i);
            (T0 + i as i64 * 1_000, udp(src, port))
        })
    });
    let (flows, stats, growth) = metered(capture, config);
    println!(
        "{FLOWS} flows in 1 s, at most {} open: peak resident set +{growth:.1} MiB, {flows} flows, {} evicted",
        config.max_open_flows, stats.evicted
    );
    assert!(
        growth < BOUND_MIB,
        "memory grew by {growth:.1} MiB: open flows were not capped"
    );
    assert_eq!(flows, FLOWS);
    assert_eq!(stats.flows, FLOWS);
    assert_eq!(stats.evicted, FLOWS - config.max_open_flows as u64);
}
