//! `nadir pipeline`: the whole pipeline in one process. It starts a run,
//! then serves the four stages with the shared runtime (the workers' own
//! durable consumers, leases, audit and artifacts, so it can run beside
//! stage workers without doing anything twice) until that run ends, and
//! exits 0 if it succeeded, 1 if it failed: the "complete pipeline as a
//! Kubernetes Job" for a cluster that keeps no stage Deployments. Like any
//! replica, it may take other runs' jobs while it serves; at the end it
//! finishes or hands back what it holds, as a worker does at SIGTERM.

use std::process::ExitCode;

use nadir_config::Config;
use nadir_config::shutdown::Shutdown;
use nadir_config::telemetry::Metrics;
use nadir_contract::messages::StartRun;
use nadir_pipeline::Analysis;
use nadir_runtime::Services;

use super::start;

pub async fn pipeline(config: &Config, run: StartRun, timeout: u64) -> anyhow::Result<ExitCode> {
    let analysis = Analysis::from_env()?;
    let shutdown = Shutdown::on_signals();
    let services =
        Services::connect(config.clone(), "nadir-pipeline", Metrics::new(), &shutdown).await?;
    let stages = {
        let (services, shutdown) = (services.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::try_join!(
                nadir_ingest::run_stage(services.clone(), shutdown.clone()),
                nadir_transform::run(services.clone(), analysis.clone(), shutdown.clone()),
                nadir_train::run(services.clone(), analysis.clone(), shutdown.clone()),
                nadir_eval::run(services, analysis, shutdown),
            )
            .map(|_| ())
        })
    };
    start::publish(&services.bus, &run).await?;
    let outcome = tokio::select! {
        outcome = start::wait(config, run.run_id, timeout) => outcome,
        _ = shutdown.requested() => {
            println!("run {} interrupted: stopped before it ended", run.run_id);
            Ok(ExitCode::FAILURE)
        }
    };
    shutdown.request();
    stages.await??;
    outcome
}
