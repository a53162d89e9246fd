//! The transform stage: RAW objects in, SILVER flow partitions out.
//!
//! Each RAW object of the run becomes one SILVER partition,
//! `silver/flows/<raw version>/<version>/flows.parquet`, with its manifest.
//! The bytes are checked against the sha256 ingest recorded, so a RAW object
//! replaced in between is caught rather than silently mixed in. This build
//! reads flow CSVs (plain or gzip); a capture format it cannot yet turn into
//! flows fails the run with a message that says so.

use std::io::Read;
use std::time::Instant;

use chrono::Utc;
use nadir_common::audit::{AuditRecord, StageKind};
use nadir_common::layout::{self, ArtifactRef, Manifest};
use nadir_common::messages::{
    RawObject, SCHEMA_VERSION, SilverPartition, TrainJob, TransformJob, subject,
};
use nadir_common::stage::{JobContext, Outcome, Stage, StageError, compute};
use nadir_flows::FlowTable;
use serde_json::json;

pub struct Transform;

/// RAW bytes to a flow table (pure).
pub fn flows_from_raw(object: &RawObject, bytes: &[u8]) -> Result<FlowTable, String> {
    let actual = layout::sha256_hex(bytes);
    if actual != object.sha256 {
        return Err(format!(
            "content changed since ingest (sha256 {} was recorded, the object now hashes to {actual})",
            object.sha256
        ));
    }
    let gzip = object.format.ends_with("+gzip");
    let inflated;
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip stream is corrupt: {e}"))?;
        inflated = out;
        &inflated[..]
    } else {
        bytes
    };
    match object.format.trim_end_matches("+gzip") {
        "csv" => FlowTable::from_csv(bytes).map_err(|e| e.to_string()),
        other => Err(format!(
            "{other} input is detected but this build's transform reads flow CSVs only; convert it to a flow CSV first"
        )),
    }
}

impl Stage for Transform {
    const KIND: StageKind = StageKind::Transform;
    const NEXT_SUBJECT: &'static str = subject::TRAIN;
    type Input = TransformJob;
    type Output = TrainJob;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        job: &TransformJob,
    ) -> Result<Outcome<TrainJob>, StageError> {
        let services = ctx.services;
        let buckets = &services.config.buckets;
        let mut partitions = Vec::new();
        let mut records = Vec::new();
        let (mut rows, mut bytes_read) = (0, 0);
        for object in &job.raw {
            let started = Instant::now();
            let bytes = services.store.get(&buckets.raw, &object.key).await?;
            bytes_read += bytes.len() as u64;
            let owned = object.clone();
            let table = compute(move || {
                let table = flows_from_raw(&owned, &bytes)?;
                let parquet = table.to_parquet().map_err(|e| e.to_string())?;
                Ok::<_, String>((table, parquet))
            })
            .await?;
            let (table, parquet) = table.map_err(|e| {
                StageError::Rejected(format!("s3://{}/{}: {e}", buckets.raw, object.key))
            })?;
            let flows_key = layout::silver_flows_key(&object.version, ctx.version);
            let flows_ref = services
                .store
                .put_artifact(
                    &buckets.silver,
                    flows_key,
                    ctx.version,
                    parquet,
                    "application/vnd.apache.parquet",
                )
                .await?;
            let raw_ref = ArtifactRef {
                bucket: buckets.raw.clone(),
                key: object.key.clone(),
                version: object.version.clone(),
                sha256: object.sha256.clone(),
                size: object.size,
            };
            let parameters = json!({ "format": object.format, "features": table.features, "text_columns": table.text });
            let metrics = json!({
                "rows": table.rows(),
                "features": table.features.len(),
                "labelled": table.labelled,
                "seconds": started.elapsed().as_secs_f64(),
            });
            let manifest = Manifest {
                kind: "silver".into(),
                run_id: ctx.run_id,
                version: ctx.version.to_string(),
                created_at: Utc::now(),
                code_version: layout::CODE_VERSION.into(),
                inputs: vec![raw_ref.clone(), object.manifest.clone()],
                outputs: vec![flows_ref.clone()],
                parameters: parameters.clone(),
                metrics: metrics.clone(),
            }
            .to_json();
            let manifest_key = layout::silver_manifest_key(&object.version, ctx.version);
            let manifest_ref = services
                .store
                .put_artifact(
                    &buckets.silver,
                    manifest_key,
                    ctx.version,
                    manifest,
                    "application/json",
                )
                .await?;
            rows += table.rows() as u64;
            records.push(AuditRecord {
                item: object.version.clone(),
                inputs: json!([raw_ref]),
                outputs: json!([flows_ref, manifest_ref]),
                parameters,
                metrics,
            });
            partitions.push(SilverPartition {
                raw_version: object.version.clone(),
                features: table.features.clone(),
                flows: flows_ref,
                manifest: manifest_ref,
                rows: table.rows() as u64,
            });
        }
        Ok(Outcome {
            records,
            rows,
            bytes: bytes_read,
            next: TrainJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: partitions,
            },
        })
    }
}
