//! `nadir-transform`: consumes `pipeline.transform`, writes SILVER flow
//! partitions and publishes `pipeline.train`.

use std::sync::Arc;

use nadir_common::bus::TRANSFORM;
use nadir_common::services::run_worker;
use nadir_common::stage::{self, Source};
use nadir_transform::Transform;

fn main() -> anyhow::Result<()> {
    run_worker("nadir-transform", |worker| async move {
        let sources = vec![Source::messages(TRANSFORM)];
        stage::run(
            Arc::new(Transform),
            worker.services,
            sources,
            worker.shutdown,
        )
        .await
    })
}
