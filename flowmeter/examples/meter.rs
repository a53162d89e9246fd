//! The meter alone on a local capture, mapped into memory: packets and
//! flows counted, no SILVER written. For profiling the meter
//! (`perf record`, `valgrind --tool=callgrind`) without the rest of
//! `nadir flows`.
//!
//!   cargo run --release -p nadir-flowmeter --example meter -- CAPTURE

use nadir_flowmeter::{MeterConfig, stream_flows};

fn main() {
    let path = std::env::args().nth(1).expect("usage: meter CAPTURE");
    let file = std::fs::File::open(&path).expect("opening the capture");
    // SAFETY: read-only, and nothing else writes the file while it is profiled.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mapping the capture");
    let started = std::time::Instant::now();
    let mut flows = 0u64;
    let stats = stream_flows(&map[..], MeterConfig::default(), |_| {}, |_| flows += 1)
        .expect("metering the capture");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} packets -> {flows} flows in {seconds:.3}s ({:.0} packets/s)",
        stats.packets,
        stats.packets as f64 / seconds
    );
}
