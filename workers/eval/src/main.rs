//! `nadir-eval`: consumes `pipeline.eval`, scores the run's flows with its
//! models, writes the report and scores to `eval`, and publishes
//! `pipeline.done`.

use std::sync::Arc;

use nadir_common::bus::EVAL;
use nadir_common::services::start_worker;
use nadir_common::stage::{self, Source};
use nadir_eval::Eval;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(worker) = start_worker("nadir-eval").await? else {
        return Ok(());
    };
    let sources = vec![Source::messages(EVAL)];
    stage::run(Arc::new(Eval), worker.services, sources, worker.shutdown).await
}
