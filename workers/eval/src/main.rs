//! `nadir-eval`: consumes `pipeline.eval`, scores the run's flows with its
//! models, writes the report and scores to `eval`, and publishes
//! `pipeline.done`.

use std::sync::Arc;

use nadir_bus::EVAL;
use nadir_eval::Eval;
use nadir_runtime::services::run_worker;
use nadir_runtime::stage::{self, Source};

fn main() -> anyhow::Result<()> {
    let analysis = nadir_pipeline::Analysis::from_env()?;
    run_worker("nadir-eval", |worker| async move {
        let sources = vec![Source::messages(EVAL)];
        stage::run(
            Arc::new(Eval { analysis }),
            worker.services,
            sources,
            worker.shutdown,
        )
        .await
    })
}
