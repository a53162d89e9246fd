//! `nadir gen-capture`: generates a labelled capture, ordinary traffic
//! between hosts with attacks mixed in (pcap), and its ground truth beside
//! it (`<output>.labels.csv`). Deterministic for a seed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nadir_trafficgen::{Attack, Config};

pub fn gen_capture(
    output: &Path,
    hosts: u16,
    duration: u32,
    rate: f64,
    seed: u64,
    attacks: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut config = Config {
        seed,
        hosts,
        duration_s: duration,
        sessions_per_host_minute: rate,
        ..Config::default()
    };
    if let Some(spec) = attacks {
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, times) = part.split_once('=').unwrap_or((part, "1"));
            let attack =
                Attack::parse(name.trim()).with_context(|| format!("unknown attack {name:?}"))?;
            let times: u32 = times
                .trim()
                .parse()
                .with_context(|| format!("{part:?}: not a count"))?;
            config.attacks.retain(|(a, _)| *a != attack);
            config.attacks.push((attack, times));
        }
    }
    let labels = PathBuf::from(format!(
        "{}{}",
        output.display(),
        nadir_flows::labels::SIDECAR_SUFFIX
    ));
    let mut capture = super::create(output)?;
    let mut truth = super::create(&labels)?;
    let summary = nadir_trafficgen::generate(&config, &mut capture, &mut truth)?;
    std::io::Write::flush(&mut capture)?;
    std::io::Write::flush(&mut truth)?;
    println!(
        "wrote {} packets ({} bytes, {} sessions) to {}, and {} attack flows to {}",
        summary.packets,
        summary.bytes,
        summary.sessions,
        output.display(),
        summary.attack_flows,
        labels.display()
    );
    Ok(ExitCode::SUCCESS)
}
