//! `nadir-ingest`: consumes `minio.raw` and `pipeline.start`, reconciles
//! `raw` on an interval, fingerprints RAW objects and publishes
//! `pipeline.transform`.

use std::sync::Arc;

use nadir_bus::{INGEST_EVENTS, INGEST_START};
use nadir_ingest::{Ingest, decode_event, decode_start, reconciler};
use nadir_runtime::services::run_worker;
use nadir_runtime::stage::{self, Source};

fn main() -> anyhow::Result<()> {
    run_worker("nadir-ingest", |worker| async move {
        let raw = worker.services.config.buckets.raw.clone();
        let sources = vec![
            Source {
                consumer: INGEST_EVENTS,
                decode: Box::new(move |payload| decode_event(&raw, payload)),
            },
            Source {
                consumer: INGEST_START,
                decode: Box::new(decode_start),
            },
        ];
        let stage = stage::run(
            Arc::new(Ingest),
            worker.services.clone(),
            sources,
            worker.shutdown.clone(),
        );
        let reconciler = reconciler::run(worker.services.clone(), worker.shutdown.clone());
        tokio::try_join!(stage, reconciler)?;
        Ok(())
    })
}
