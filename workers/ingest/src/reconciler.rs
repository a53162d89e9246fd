//! The reconciler: lists `raw` on an interval and starts a run for every
//! object that no run has seen, and again (as a new run) for an object
//! whose runs failed only because an outage outlasted their retry budget.
//!
//! S3 servers without bucket notifications rely on it; with MinIO it picks
//! up events lost while NATS was unreachable or MinIO's queue was full. It
//! publishes an ordinary `pipeline.start` whose run id is the object's
//! ([`object_run_id`]), with that id as `Nats-Msg-Id`: every ingest replica
//! runs a reconciler, and JetStream and the ingest job's lease make their
//! findings, and a bucket event for the same object, one run.

use std::sync::Arc;

use nadir_config::shutdown::Shutdown;
use nadir_contract::messages::{
    Message, RunMode, SCHEMA_VERSION, StartRun, object_run_id, subject,
};
use nadir_db::runs::unseen_run_id;
use nadir_runtime::Services;

/// One pass: returns how many runs it started.
pub async fn reconcile_once(services: &Services) -> anyhow::Result<usize> {
    let raw = &services.config.buckets.raw;
    let mut started = 0;
    for object in services.store.list_with_etags(raw, "").await? {
        if nadir_flows::labels::is_sidecar(&object.key) {
            continue;
        }
        let object_run = object_run_id(raw, &object.key, &object.etag);
        let Some(run_id) = unseen_run_id(&services.db, object_run, &object.key, &object.etag)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail()))?
        else {
            continue;
        };
        let start = StartRun {
            schema: SCHEMA_VERSION,
            run_id,
            mode: RunMode::Ingest,
            keys: vec![object.key.clone()],
            prefix: None,
            requested_by: Some("reconciler".into()),
            training: None,
        };
        services
            .bus
            .publish(subject::START, &run_id.to_string(), start.encode())
            .await?;
        services.metrics.reconciled.with_label_values(&[raw]).inc();
        tracing::info!(%run_id, key = %object.key, "reconciler found an object without a run");
        started += 1;
    }
    Ok(started)
}

/// Runs [`reconcile_once`] every `NADIR_RECONCILE_INTERVAL_SECS` until shutdown.
pub async fn run(services: Arc<Services>, shutdown: Shutdown) -> anyhow::Result<()> {
    let interval = services.config.reconcile_interval;
    if interval.is_zero() {
        tracing::info!("reconciler off (NADIR_RECONCILE_INTERVAL_SECS=0)");
        return Ok(());
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            _ = ticks.tick() => {}
        }
        if let Err(e) = reconcile_once(&services).await {
            tracing::warn!(error = %format!("{e:#}"), "reconciliation pass failed; next pass in {}s", interval.as_secs());
        }
    }
}
