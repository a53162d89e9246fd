//! `nadir variables`: prints the environment variables a nadir binary
//! reads, one per line with `required` or `optional`.

use std::process::ExitCode;

use anyhow::Context;

pub fn variables(binary: &str) -> anyhow::Result<ExitCode> {
    let vars = nadir_pipeline::settings::variables_of(binary)
        .with_context(|| format!("{binary:?} is not a nadir binary"))?;
    for (var, required) in vars {
        println!("{var} {}", if required { "required" } else { "optional" });
    }
    Ok(ExitCode::SUCCESS)
}
