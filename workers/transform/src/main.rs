//! `nadir-transform`: consumes `pipeline.transform`, writes SILVER flow
//! partitions and publishes `pipeline.train`.

use std::sync::Arc;

use nadir_common::bus::TRANSFORM;
use nadir_common::services::start_worker;
use nadir_common::stage::{self, Source};
use nadir_transform::Transform;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(worker) = start_worker("nadir-transform").await? else {
        return Ok(());
    };
    let sources = vec![Source::messages(TRANSFORM)];
    stage::run(
        Arc::new(Transform),
        worker.services,
        sources,
        worker.shutdown,
    )
    .await
}
