//! `nadir-train`: consumes `pipeline.train`, fits the detectors on SILVER
//! partitions, stores them in `models` and publishes `pipeline.eval`.

use std::sync::Arc;

use nadir_common::bus::TRAIN;
use nadir_common::services::run_worker;
use nadir_common::stage::{self, Source};
use nadir_train::Train;

#[global_allocator]
static ALLOC: nadir_common::memory::Counting = nadir_common::memory::Counting;

fn main() -> anyhow::Result<()> {
    run_worker("nadir-train", |worker| async move {
        let sources = vec![Source::messages(TRAIN)];
        stage::run(Arc::new(Train), worker.services, sources, worker.shutdown).await
    })
}
