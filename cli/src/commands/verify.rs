//! `nadir verify`: is the object store what the audit trail says?
//!
//! Every artifact a succeeded audit row names must exist with its recorded
//! size and sha256, and every object in the SILVER, MODELS and EVAL buckets
//! must be named by one (or belong to an attempt still at work, or one
//! whose leftovers the reaper has not removed yet). Prints the figures, and
//! each problem; exits 1 when there is one.

use std::collections::HashSet;
use std::process::ExitCode;

use nadir_config::Config;
use nadir_contract::layout::{ArtifactRef, sha256_hex};
use nadir_store::{ObjectStore, StoreError};
use serde::Serialize;

use super::detail;
use crate::output::print_json;

#[derive(Debug, Default, Serialize)]
struct Verified {
    artifacts: usize,
    missing: Vec<String>,
    mismatched: Vec<String>,
    orphans: Vec<String>,
}

pub async fn verify(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let store = ObjectStore::new(&config.s3);
    let mut recorded: Vec<ArtifactRef> = Vec::new();
    for outputs in nadir_db::runs::recorded_outputs(&db)
        .await
        .map_err(detail)?
    {
        recorded.extend(serde_json::from_value::<Vec<ArtifactRef>>(outputs)?);
    }
    let mut verified = Verified::default();
    let mut named: HashSet<(String, String)> = HashSet::new();
    for artifact in &recorded {
        if !named.insert((artifact.bucket.clone(), artifact.key.clone())) {
            continue;
        }
        verified.artifacts += 1;
        match store.get(&artifact.bucket, &artifact.key).await {
            Ok(bytes) if sha256_hex(&bytes) == artifact.sha256 => {}
            Ok(bytes) => verified.mismatched.push(format!(
                "{}: sha256 {} recorded, {} stored",
                artifact.uri(),
                artifact.sha256,
                sha256_hex(&bytes)
            )),
            Err(StoreError::NotFound { .. }) => verified.missing.push(artifact.uri()),
            Err(e) => return Err(e.into()),
        }
    }
    let in_flight: HashSet<(String, String)> = nadir_db::runs::in_flight_objects(&db)
        .await
        .map_err(detail)?
        .into_iter()
        .collect();
    let buckets = &config.buckets;
    for bucket in [&buckets.silver, &buckets.models, &buckets.eval] {
        for object in store.list(bucket, "").await? {
            let id = (bucket.to_string(), object.key.clone());
            if !named.contains(&id) && !in_flight.contains(&id) {
                verified
                    .orphans
                    .push(format!("s3://{bucket}/{}", object.key));
            }
        }
    }
    let problems = verified.missing.len() + verified.mismatched.len() + verified.orphans.len();
    if json {
        print_json(&verified)?;
    } else {
        println!(
            "{} artifacts recorded: {} missing, {} with another sha256; {} objects no audit row names",
            verified.artifacts,
            verified.missing.len(),
            verified.mismatched.len(),
            verified.orphans.len()
        );
        for line in verified
            .missing
            .iter()
            .map(|m| format!("missing: {m}"))
            .chain(verified.mismatched.iter().map(|m| format!("mismatch: {m}")))
            .chain(verified.orphans.iter().map(|m| format!("orphan: {m}")))
        {
            println!("  {line}");
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
