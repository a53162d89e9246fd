//! `nadir runs` lists recent runs and `nadir status` shows one (stages,
//! timings, artifacts, metrics, errors, the report's summary), both from
//! the audit trail, as a table or JSON; `status` exits 1 for a failed run.

use std::process::ExitCode;

use anyhow::bail;
use nadir_config::Config;
use nadir_db::runs::{self, RunSummary, StageRow};
use nadir_pipeline::report::RunFigures;
use uuid::Uuid;

use super::detail;
use crate::output::{print_comparison, print_json, shown};

pub async fn runs(config: &Config, limit: i64, json: bool) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let runs = runs::runs(&db, limit).await.map_err(detail)?;
    if json {
        print_json(&runs)?;
    } else {
        print_runs(&runs);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(config: &Config, run_id: Uuid, json: bool) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let Some(run) = runs::run(&db, run_id).await.map_err(detail)? else {
        bail!("no run {run_id} in the audit trail");
    };
    let rows = runs::stage_rows(&db, run_id).await.map_err(detail)?;
    if json {
        print_json(&serde_json::json!({ "run": run, "stages": rows }))?;
    } else {
        print_status(&run, &rows);
    }
    if run.status == "failed" {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the run took, or `-` while it runs.
fn seconds(run: &RunSummary) -> String {
    match run.finished_at {
        Some(end) => format!(
            "{:.1}s",
            (end - run.started_at).num_milliseconds() as f64 / 1000.0
        ),
        None => "-".into(),
    }
}

fn print_runs(runs: &[RunSummary]) {
    println!(
        "{:<36}  {:<9}  {:<9}  {:<15}  {:>7}  started",
        "run", "status", "stage", "trigger", "took"
    );
    for r in runs {
        println!(
            "{:<36}  {:<9}  {:<9}  {:<15}  {:>7}  {}",
            r.run_id,
            r.status,
            r.stage,
            shown(&r.trigger),
            seconds(r),
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
}

fn print_status(run: &RunSummary, rows: &[StageRow]) {
    println!("run      {}", run.run_id);
    println!(
        "status   {} (stage {}, trigger {}, took {})",
        run.status,
        run.stage,
        shown(&run.trigger),
        seconds(run)
    );
    if let Some(error) = &run.error {
        println!(
            "error    in {}: {}",
            run.error_stage.as_deref().unwrap_or("?"),
            shown(error)
        );
    }
    println!();
    for row in rows {
        println!(
            "{:<9} {:<9} {:>7.3}s  attempt {}  {}",
            row.stage.name(),
            row.status,
            row.seconds,
            row.attempts,
            shown(&row.item)
        );
        if let Some(outputs) = row.outputs.as_array() {
            for o in outputs {
                let sha256 = o["sha256"].as_str().unwrap_or("");
                println!(
                    "          -> s3://{}/{}  sha256 {}  {} bytes",
                    shown(o["bucket"].as_str().unwrap_or("")),
                    shown(o["key"].as_str().unwrap_or("")),
                    &sha256[..12.min(sha256.len())],
                    o["size"]
                );
            }
        }
        if let Some(skipped) = row.metrics["skipped"].as_str() {
            println!("          {}", shown(skipped));
        }
        if let Some(error) = &row.error {
            println!("          error: {}", shown(error));
        }
    }
    let summary = run
        .report
        .as_ref()
        .and_then(|r| r.get("summary"))
        .map(|s| serde_json::from_value::<RunFigures>(s.clone()));
    match summary {
        Some(Ok(summary)) => {
            println!();
            println!("flows    {}  flagged {}", summary.rows, summary.flagged);
            println!();
            print_comparison(&summary);
            println!();
            let champion = match (&summary.champion, &summary.champion_version) {
                (Some(a), Some(v)) => format!("{a} ({v})"),
                (Some(a), None) => a.to_string(),
                _ => "none".into(),
            };
            println!("decision {}: champion {champion}", summary.decision.name());
            println!("         {}", summary.reason);
        }
        Some(Err(e)) => println!("\nthe run's summary cannot be read: {e}"),
        None => {}
    }
}
