//! `nadir-train`: consumes `pipeline.train`, fits the detectors on SILVER
//! partitions, stores them in `models` and publishes `pipeline.eval`.

#[global_allocator]
static ALLOC: nadir_pipeline::memory::Counting = nadir_pipeline::memory::Counting;

fn main() -> anyhow::Result<()> {
    let analysis = nadir_pipeline::Analysis::from_env()?;
    nadir_runtime::services::run_worker("nadir-train", |worker| {
        nadir_train::run(worker.services, analysis, worker.shutdown)
    })
}
