//! `nadir sample`: writes the generated, labelled demo flow CSV.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

pub fn sample(output: &Path, rows: usize, seed: u64) -> anyhow::Result<ExitCode> {
    std::fs::write(output, nadir_flows::sample::flow_csv(rows, seed))
        .with_context(|| format!("writing {}", output.display()))?;
    println!("wrote {} flows to {}", rows, output.display());
    Ok(ExitCode::SUCCESS)
}
