//! `nadir-ingest`: consumes `minio.raw` and `pipeline.start`, reconciles
//! `raw` on an interval, fingerprints RAW objects and publishes
//! `pipeline.transform`.

fn main() -> anyhow::Result<()> {
    nadir_runtime::services::run_worker("nadir-ingest", |worker| {
        nadir_ingest::run(worker.services, worker.shutdown)
    })
}
