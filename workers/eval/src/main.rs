//! `nadir-eval`: consumes `pipeline.eval`, scores the run's flows with its
//! models, writes the report and scores to `eval`, and publishes
//! `pipeline.done`.

use std::sync::Arc;

use nadir_common::bus::EVAL;
use nadir_common::services::run_worker;
use nadir_common::stage::{self, Source};
use nadir_eval::Eval;

fn main() -> anyhow::Result<()> {
    run_worker("nadir-eval", |worker| async move {
        let sources = vec![Source::messages(EVAL)];
        stage::run(Arc::new(Eval), worker.services, sources, worker.shutdown).await
    })
}
