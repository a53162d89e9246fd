//! `nadir-train`: consumes `pipeline.train`, fits the detectors on SILVER
//! partitions, stores them in `models` and publishes `pipeline.eval`.

use std::sync::Arc;

use nadir_common::bus::TRAIN;
use nadir_common::services::start_worker;
use nadir_common::stage::{self, Source};
use nadir_train::Train;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(worker) = start_worker("nadir-train").await? else {
        return Ok(());
    };
    let sources = vec![Source::messages(TRAIN)];
    stage::run(Arc::new(Train), worker.services, sources, worker.shutdown).await
}
