//! A flow meter: packet captures in, bidirectional flows with features out.
//!
//! Library code with no I/O of its own: the caller hands in any
//! [`std::io::Read`] (a file, an S3 body, a gzip stream) and gets flow
//! records back, so the meter can be tested, fuzzed and benchmarked alone.
//! Memory is bounded by the number of active flows: the capture is read
//! through a fixed buffer and finished flows are handed to the caller as
//! they expire.
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

pub use capture::{CaptureError, CaptureReader};
pub use meter::{FlowMeter, MeterConfig, MeterStats};
pub use record::FlowRecord;

/// Reads a whole capture into flow records, with per-host context joined.
/// `progress` is told the byte offset reached, now and then.
pub fn flows_from_capture<R: std::io::Read + Send>(
    reader: R,
    config: MeterConfig,
    mut progress: impl FnMut(u64),
) -> Result<(Vec<FlowRecord>, MeterStats), CaptureError> {
    let mut capture = CaptureReader::new(reader)?;
    let mut meter = FlowMeter::new(config);
    let mut flows = Vec::new();
    let mut since_progress = 0u32;
    while let Some(()) = capture.next_packet(|frame| meter.observe(&frame))? {
        meter.drain_finished(&mut flows);
        since_progress += 1;
        if since_progress == 65_536 {
            since_progress = 0;
            progress(capture.offset());
        }
    }
    progress(capture.offset());
    let truncated = capture.truncated_tail();
    let mut stats = meter.finish(&mut flows);
    stats.capture_bytes = capture.offset();
    if truncated {
        stats.skip("truncated last record");
    }
    context::add_host_context(&mut flows, config.context_window_ns);
    Ok((flows, stats))
}
