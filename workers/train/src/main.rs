//! `nadir-train`: consumes `pipeline.train`, fits the detectors on SILVER
//! partitions, stores them in `models` and publishes `pipeline.eval`.

use std::sync::Arc;

use nadir_bus::TRAIN;
use nadir_runtime::services::run_worker;
use nadir_runtime::stage::{self, Source};
use nadir_train::Train;

#[global_allocator]
static ALLOC: nadir_pipeline::memory::Counting = nadir_pipeline::memory::Counting;

fn main() -> anyhow::Result<()> {
    let analysis = nadir_pipeline::Analysis::from_env()?;
    run_worker("nadir-train", |worker| async move {
        let sources = vec![Source::messages(TRAIN)];
        stage::run(
            Arc::new(Train { analysis }),
            worker.services,
            sources,
            worker.shutdown,
        )
        .await
    })
}
