//! `nadir-transform`: consumes `pipeline.transform`, writes SILVER flow
//! partitions and publishes `pipeline.train`.

fn main() -> anyhow::Result<()> {
    let analysis = nadir_pipeline::Analysis::from_env()?;
    nadir_runtime::services::run_worker("nadir-transform", |worker| {
        nadir_transform::run(worker.services, analysis, worker.shutdown)
    })
}
