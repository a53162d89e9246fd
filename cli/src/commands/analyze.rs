//! `nadir analyze`: runs transform, train and eval on local files with no
//! service ([`crate::analyze`], the workers' own code) and prints the
//! findings first (the ten ranked highest, as in the report), then the
//! comparison table; or the report as JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::output::{print_comparison, print_findings, print_json};

pub async fn analyze(
    inputs: &[PathBuf],
    train: &[PathBuf],
    eval: &[PathBuf],
    output: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let settings = nadir_pipeline::Analysis::from_env()?;
    let result = crate::analyze::analyze(inputs, train, eval, output, &settings).await?;
    if json {
        print_json(&result.report)?;
    } else {
        let summary = &result.summary;
        println!(
            "flows {}  flagged {}  (artifacts in {})",
            summary.rows,
            summary.flagged,
            output.display()
        );
        if let Some(findings) = &result.report.findings_summary {
            println!();
            print_findings(findings);
        }
        println!();
        print_comparison(summary);
        println!();
        println!("{}", summary.reason);
    }
    Ok(ExitCode::SUCCESS)
}
