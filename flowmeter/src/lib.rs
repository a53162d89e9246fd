//! A flow meter: packet captures in, bidirectional flows with features out.
//!
//! Library code with no I/O of its own: the caller hands in any
//! [`std::io::Read`] (a file, an S3 body, a gzip stream) or bytes in
//! memory ([`Source`]) and gets flow
//! records back, so the meter can be tested, fuzzed and benchmarked alone.
//! Memory is bounded by the flows of one active timeout: the capture is
//! read through a fixed buffer (or in place, when its bytes are already in
//! memory, as a mapped file is) and finished flows are handed to the caller,
//! in the order of their first packet, as soon as no open flow started
//! before them.
//!
//! - [`capture`]: pcap (both byte orders, µs and ns) and pcapng (several
//!   interfaces, enhanced and simple packet blocks), plain or gzip.
//! - [`packet`]: one frame decoded (Ethernet with VLAN tags, Linux SLL and
//!   SLL2, raw IP, BSD loopback) down to the transport header.
//! - [`meter`]: flow assembly (canonical 5-tuple, idle/active timeouts,
//!   TCP teardown) and per-direction statistics.
//! - [`app`]: DNS query names and response codes, TLS SNI, HTTP host and
//!   method, from a flow's first packets.
//! - [`context`]: per-host sliding-window context (fan-out, failures, bytes).
//! - [`record`]: the flow record and its column documentation.

pub mod app;
pub mod capture;
pub mod context;
pub mod meter;
pub mod packet;
pub mod record;
pub mod zeek;

pub use capture::{CaptureError, CaptureReader, Source};
pub use meter::{FlowMeter, MeterConfig, MeterStats};
pub use record::FlowRecord;

/// How many bytes of the capture `progress` is told about at a time. The
/// meter holds no frame when it is told, so a caller reading mapped bytes
/// may let go of those behind the offset.
pub const PROGRESS_EVERY: u64 = 8 << 20;

/// The reason packets stamped beyond an `i64` of nanoseconds are skipped
/// under (in [`MeterStats::skipped`]).
pub const UNREPRESENTABLE: &str = "timestamp outside the years 1678 to 2262";

/// Reads a capture and hands each flow, with its per-host context, to
/// `sink`, in the order of their first packet. Memory holds the open flows
/// and those finished but started after the oldest open one (at most one
/// active timeout's worth), never the capture (bytes in memory are read
/// where they lie). `progress` is told the byte offset reached every
/// [`PROGRESS_EVERY`] bytes and at the end.
pub fn stream_flows<'r>(
    source: impl Into<Source<'r>>,
    config: MeterConfig,
    mut progress: impl FnMut(u64),
    mut sink: impl FnMut(FlowRecord),
) -> Result<MeterStats, CaptureError> {
    let mut capture = CaptureReader::open(source.into(), config.max_gzip_ratio)?;
    let mut meter = FlowMeter::new(config);
    let mut contexts = context::HostContexts::new(config.context_window_ns);
    let mut ready = Vec::new();
    let mut hand_out = |ready: &mut Vec<FlowRecord>| {
        for mut flow in ready.drain(..) {
            contexts.add(&mut flow);
            sink(flow);
        }
    };
    let mut told = 0;
    while let Some(()) = capture.next_packet(|frame| meter.observe(&frame))? {
        meter.drain_finished(&mut ready);
        if !ready.is_empty() {
            hand_out(&mut ready);
        }
        if capture.offset() - told >= PROGRESS_EVERY {
            told = capture.offset();
            progress(told);
        }
    }
    progress(capture.offset());
    let truncated = capture.truncated_tail();
    let mut stats = meter.finish(&mut ready);
    hand_out(&mut ready);
    stats.capture_bytes = capture.offset();
    if truncated {
        stats.skip("truncated last record");
    }
    let unrepresentable = capture.unrepresentable_timestamps();
    stats.packets += unrepresentable;
    stats.skip_n(UNREPRESENTABLE, unrepresentable);
    Ok(stats)
}

/// [`stream_flows`] collected into a vector.
pub fn flows_from_capture<'r>(
    source: impl Into<Source<'r>>,
    config: MeterConfig,
    progress: impl FnMut(u64),
) -> Result<(Vec<FlowRecord>, MeterStats), CaptureError> {
    let mut flows = Vec::new();
    let stats = stream_flows(source, config, progress, |f| flows.push(f))?;
    Ok((flows, stats))
}
