//! `nadir upload`: puts files into the RAW bucket the way any S3 client
//! would (ground truth first); each capture starts a run. A file is hashed
//! once and goes up in one PUT with its sha256 checksum, or above 64 MiB in
//! parts side by side; its metadata names its sha256, so ingest need not
//! read it again (transform checks every byte against it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nadir_config::Config;
use nadir_contract::messages::object_run_id;
use nadir_store::{ObjectStore, Upload};

pub async fn upload(config: &Config, files: &[PathBuf], prefix: &str) -> anyhow::Result<ExitCode> {
    let store = ObjectStore::new(&config.s3);
    let bucket = &config.buckets.raw;
    // Ground truth first: transform looks for it when the capture's run reaches it.
    let mut files = files.to_vec();
    files.sort_by_key(|f| !nadir_flows::labels::is_sidecar(&f.to_string_lossy()));
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", file.display()))?;
        let key = format!("{prefix}{name}");
        let started = std::time::Instant::now();
        let uploaded = store
            .put_file(
                bucket,
                &key,
                file,
                "application/octet-stream",
                Upload::default(),
            )
            .await
            .with_context(|| format!("uploading {}", file.display()))?;
        let (size, seconds) = (uploaded.size, started.elapsed().as_secs_f64());
        if nadir_flows::labels::is_sidecar(&key) {
            println!("uploaded s3://{bucket}/{key} ({size} bytes): ground truth for its capture");
            continue;
        }
        let run_id = object_run_id(bucket, &key, &uploaded.etag);
        println!(
            "uploaded s3://{bucket}/{key} ({size} bytes in {} part(s), {seconds:.2} s, sha256 {}, ETag {}); run {run_id}",
            uploaded.parts, uploaded.sha256, uploaded.etag
        );
    }
    Ok(ExitCode::SUCCESS)
}
