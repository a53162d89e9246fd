//! `nadir-transform`: consumes `pipeline.transform`, writes SILVER flow
//! partitions and publishes `pipeline.train`.

use std::sync::Arc;

use nadir_bus::TRANSFORM;
use nadir_runtime::services::run_worker;
use nadir_runtime::stage::{self, Source};
use nadir_transform::Transform;

fn main() -> anyhow::Result<()> {
    let analysis = nadir_pipeline::Analysis::from_env()?;
    run_worker("nadir-transform", |worker| async move {
        let sources = vec![Source::messages(TRANSFORM)];
        stage::run(
            Arc::new(Transform { analysis }),
            worker.services,
            sources,
            worker.shutdown,
        )
        .await
    })
}
