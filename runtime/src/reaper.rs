//! The reaper: what no delivery will finish on its own.
//!
//! Every replica of a stage runs one, every ten seconds, once its services
//! have answered for two lease lengths (so an owner whose PostgreSQL just
//! came back has renewed its lease before anyone calls it dead):
//!
//! - the outbox: next messages and dead letters committed but not stored
//!   by JetStream (NATS was down, the worker died between commit and
//!   publish), and next messages of running runs that no job of the next
//!   stage took up within `NADIR_REAP_AFTER_SECS` (a JetStream that lost
//!   them), published again under the same `Nats-Msg-Id`;
//! - artifacts of attempts that were not committed, deleted;
//! - jobs nobody works on (lease expired or handed back, no delivery for
//!   `NADIR_REAP_AFTER_SECS`), run again from their stored request.
//!
//! Replicas racing on one job meet in its lease and in JetStream's
//! de-duplication, so the reaper never does anything twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nadir_db::jobs;

use crate::delivery::Runtime;
use crate::stage::Stage;

const EVERY: Duration = Duration::from_secs(10);

/// Runs the reaper of a stage until shutdown.
pub(crate) async fn run<S: Stage>(runtime: Arc<Runtime<S>>) -> anyhow::Result<()> {
    let settle = runtime.services.config.delivery.lease() * 2;
    let mut ready_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = runtime.shutdown.requested() => return Ok(()),
            _ = tokio::time::sleep(EVERY) => {}
        }
        if runtime.services.check_ready().await.is_err() {
            ready_since = None;
            continue;
        }
        if ready_since.get_or_insert_with(Instant::now).elapsed() < settle {
            continue;
        }
        reap(&runtime).await;
    }
}

/// One pass.
pub(crate) async fn reap<S: Stage>(runtime: &Runtime<S>) {
    let services = &*runtime.services;
    let delivery = &services.config.delivery;
    let stage = runtime.stage_name();
    match jobs::unpublished(&services.db, S::KIND, EVERY, delivery.reap_after).await {
        Ok((next, dead)) => {
            for pending in next.iter().chain(&dead) {
                tracing::info!(stage, run_id = %pending.key.run_id, subject = %pending.subject, "reaper publishes a message from the outbox");
                if runtime.publish(pending).await {
                    runtime.count("reaped_message");
                }
            }
        }
        Err(e) => tracing::warn!(stage, error = %e.detail(), "reaper could not read the outbox"),
    }
    runtime.remove_leftovers(None).await;
    let orphans = match jobs::orphans(&services.db, S::KIND, delivery.reap_after).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(stage, error = %e.detail(), "reaper could not look for abandoned jobs");
            return;
        }
    };
    for (key, request) in orphans {
        if runtime.shutdown.is_requested() {
            return;
        }
        match serde_json::from_value::<S::Input>(request) {
            Ok(job) => {
                tracing::warn!(stage, run_id = %key.run_id, "reaper takes up a job nobody works on");
                runtime.count("reaped_job");
                runtime.handle_job(&job, "reaper", None).await;
            }
            Err(e) => {
                tracing::error!(stage, run_id = %key.run_id, error = %e, "reaper cannot read a stored job request")
            }
        }
    }
}
