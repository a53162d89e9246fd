//! `nadir-eval`: consumes `pipeline.eval`, scores the run's flows with its
//! models, writes the report and scores to `eval`, and publishes
//! `pipeline.done`.

fn main() -> anyhow::Result<()> {
    let analysis = nadir_pipeline::Analysis::from_env()?;
    nadir_runtime::services::run_worker("nadir-eval", |worker| {
        nadir_eval::run(worker.services, analysis, worker.shutdown)
    })
}
