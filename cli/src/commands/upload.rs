//! `nadir upload`: puts files into the RAW bucket the way any S3 client
//! would (ground truth first); each capture starts a run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nadir_config::Config;
use nadir_contract::messages::object_run_id;
use nadir_store::ObjectStore;

pub async fn upload(config: &Config, files: &[PathBuf], prefix: &str) -> anyhow::Result<ExitCode> {
    let store = ObjectStore::new(&config.s3);
    let bucket = &config.buckets.raw;
    // Ground truth first: transform looks for it when the capture's run reaches it.
    let mut files = files.to_vec();
    files.sort_by_key(|f| !nadir_flows::labels::is_sidecar(&f.to_string_lossy()));
    for file in &files {
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", file.display()))?;
        let key = format!("{prefix}{name}");
        let size = bytes.len();
        let etag = store
            .put(bucket, &key, bytes.into(), "application/octet-stream")
            .await?;
        if nadir_flows::labels::is_sidecar(&key) {
            println!("uploaded s3://{bucket}/{key} ({size} bytes): ground truth for its capture");
            continue;
        }
        let run_id = object_run_id(bucket, &key, &etag);
        println!("uploaded s3://{bucket}/{key} ({size} bytes, ETag {etag}); run {run_id}");
    }
    Ok(ExitCode::SUCCESS)
}
