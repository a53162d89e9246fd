//! `nadir start` publishes `pipeline.start` (optionally with a training
//! window) and, with `--wait`, follows the run; `nadir wait` follows a run
//! until `pipeline.done` or `pipeline.dead`, exiting 1 if it failed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use nadir_bus::Bus;
use nadir_config::Config;
use nadir_contract::messages::{
    Message, RunDead, RunDone, RunMode, StartRun, TrainingWindow, subject,
};
use nadir_db::runs;
use uuid::Uuid;

use crate::output::shown;

/// The `pipeline.start` of `nadir start` (and `nadir pipeline`), checked.
pub fn request(
    mode: RunMode,
    keys: Vec<String>,
    prefix: Option<String>,
    window: TrainingWindow,
    requested_by: &str,
) -> anyhow::Result<StartRun> {
    let prefix = match mode {
        RunMode::Backfill => Some(prefix.unwrap_or_default()),
        _ => prefix,
    };
    let mut start = StartRun::new(keys, prefix, requested_by);
    start.mode = mode;
    if window != TrainingWindow::default() {
        window.check()?;
        start.training = Some(window);
    }
    start.check()?;
    Ok(start)
}

/// Publishes `start` on `pipeline.start`, its run id as message id.
pub async fn publish(bus: &Bus, start: &StartRun) -> anyhow::Result<()> {
    bus.publish(subject::START, &start.run_id.to_string(), start.encode())
        .await?;
    println!(
        "run {} requested on {} ({})",
        start.run_id,
        subject::START,
        start.mode
    );
    Ok(())
}

pub async fn start(
    config: &Config,
    start: StartRun,
    wait: bool,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let bus = Bus::connect(&config.nats, "nadir-cli").await?;
    publish(&bus, &start).await?;
    if wait {
        return self::wait(config, start.run_id, timeout).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows `pipeline.done` and `pipeline.dead` until one names the run,
/// checking the audit trail too in case the run ended before we listened.
pub async fn wait(config: &Config, run_id: Uuid, timeout: u64) -> anyhow::Result<ExitCode> {
    let bus = Bus::connect(&config.nats, "nadir-wait").await?;
    let mut done = bus.client.subscribe(subject::DONE).await?;
    let mut dead = bus.client.subscribe(subject::DEAD).await?;
    let db = super::db(config)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => bail!("run {run_id} did not finish within {timeout}s"),
            Some(msg) = done.next() => {
                if let Ok(d) = RunDone::decode(&msg.payload)
                    && d.run_id == run_id
                {
                    println!("run {run_id} done: report {}", d.report.uri());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(msg) = dead.next() => {
                if let Ok(d) = RunDead::decode(&msg.payload)
                    && d.run_id == run_id
                {
                    return Ok(failed(run_id, &d.stage, &d.error));
                }
            }
            _ = poll.tick() => {
                if let Ok(Some(run)) = runs::run(&db, run_id).await {
                    match run.status.as_str() {
                        "succeeded" => {
                            println!("run {run_id} done");
                            return Ok(ExitCode::SUCCESS);
                        }
                        "failed" => {
                            return Ok(failed(
                                run_id,
                                run.error_stage.as_deref().unwrap_or("?"),
                                run.error.as_deref().unwrap_or(""),
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Says in which stage and why the run failed.
fn failed(run_id: Uuid, stage: &str, error: &str) -> ExitCode {
    println!("run {run_id} failed in {stage}: {}", shown(error));
    ExitCode::FAILURE
}
