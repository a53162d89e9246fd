//! `nadir flows`: turns a local capture (pcap or pcapng, plain or gzip)
//! into SILVER flow features exactly as the transform stage does, with a
//! progress bar on a terminal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use nadir_flowmeter::MeterConfig;

pub fn flows(capture: &Path, output: &Path, idle: u64, active: u64) -> anyhow::Result<ExitCode> {
    let file =
        std::fs::File::open(capture).with_context(|| format!("opening {}", capture.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let config = MeterConfig {
        idle_timeout_ns: idle as i64 * 1_000_000_000,
        active_timeout_ns: active as i64 * 1_000_000_000,
        ..MeterConfig::default()
    };
    let started = std::time::Instant::now();
    let counted = CountingReader {
        inner: std::io::BufReader::new(file),
        read: 0,
        bar: bar.clone(),
    };
    // Flows go to the Parquet file as the meter hands them out: memory
    // follows the open flows, not the capture.
    let out = super::create(output)?;
    let (stats, silver) =
        nadir_flows::capture::capture_to_silver(counted, config, None, out, |_| {})
            .with_context(|| format!("{} to {}", capture.display(), output.display()))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} packets ({} IP) -> {} flows in {:.2}s ({:.0} packets/s); wrote {}",
        stats.packets,
        stats.ip_packets,
        silver.rows,
        seconds,
        stats.packets as f64 / seconds.max(1e-9),
        output.display()
    );
    for (reason, count) in &stats.skipped {
        println!("  skipped {count}: {reason}");
    }
    if stats.out_of_order > 0 {
        println!("  {} packets out of time order", stats.out_of_order);
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts bytes read from the capture file for the progress bar.
struct CountingReader<R> {
    inner: R,
    read: u64,
    bar: indicatif::ProgressBar,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.bar.set_position(self.read);
        Ok(n)
    }
}
