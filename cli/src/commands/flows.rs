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
    // Flows go to the Parquet file as the meter hands them out: memory
    // follows the open flows, not the capture.
    let out = super::create(output)?;
    let mapped = mapped(&file);
    let mut released = 0;
    let progress = |offset: u64| {
        bar.set_position(offset);
        if let Some(map) = &mapped {
            released = release_behind(map, released, offset as usize);
        }
    };
    let source = match &mapped {
        Some(bytes) => nadir_flowmeter::Source::Bytes(bytes),
        None => nadir_flowmeter::Source::reader(std::io::BufReader::new(file)),
    };
    let (stats, silver) =
        nadir_flows::capture::capture_to_silver(source, config, None, out, progress)
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

/// A regular file mapped into memory, for the meter to read in place (no
/// copy through a buffer); `None` for anything else (a pipe, a device) or
/// when the mapping fails, and the file is streamed.
fn mapped(file: &std::fs::File) -> Option<memmap2::Mmap> {
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: the map is read-only and private to this process. A file
    // truncated under it by another process ends this command with
    // SIGBUS: a command-line tool reading a file its user named (the
    // workers never map a file).
    let map = unsafe { memmap2::Mmap::map(file) }.ok()?;
    let _ = map.advise(memmap2::Advice::Sequential);
    Some(map)
}

/// Lets go of the mapped pages before `offset` (from `released` on, in
/// whole pages), which the meter has read: the resident set follows what
/// the meter holds, not how far into the file it is. Returns the new
/// start of what is kept.
fn release_behind(map: &memmap2::Mmap, released: usize, offset: usize) -> usize {
    const PAGE: usize = 4096;
    let until = offset / PAGE * PAGE;
    if until <= released {
        return released;
    }
    // SAFETY: the map is a read-only shared mapping of a file: pages let
    // go of are read again from the file if touched, never zeroed, and
    // the meter holds no reference behind the offset it reports.
    let _ = unsafe {
        map.unchecked_advise_range(
            memmap2::UncheckedAdvice::DontNeed,
            released,
            until - released,
        )
    };
    until
}
