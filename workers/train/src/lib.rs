//! The train stage: SILVER partitions in, fitted models out.
//!
//! Fits every configured detector (`NADIR_DETECTORS`) on the run's SILVER
//! partitions (labels are never shown to the detectors) and stores each as
//! `models/<algorithm>/<version>/model.json` with a manifest naming the
//! partitions and hashes it was fitted on, its parameters, seed, features
//! and scaling. A detector the data cannot serve (the per-host group
//! detector on flows without hosts and times) is recorded as skipped.

use std::sync::Arc;
use std::time::Instant;

use nadir_common::audit::{AuditRecord, StageKind};
use nadir_common::layout::{self, ArtifactRef, Manifest};
use nadir_common::messages::{
    EvalJob, SCHEMA_VERSION, SilverPartition, TrainJob, TrainedModel, subject,
};
use nadir_common::stage::{JobContext, Outcome, Stage, StageError, compute};
use nadir_detectors::model::{DetectorParams, ModelSpec, ThresholdRule};
use nadir_detectors::{Dataset, DetectorError, PrepSpec};
use nadir_flows::FlowTable;
use serde_json::json;

pub struct Train;

/// The flows of all partitions as one dataset; they must share their features.
pub fn training_dataset(
    partitions: &[SilverPartition],
    parquet: &[bytes::Bytes],
) -> Result<Dataset, String> {
    let features = &partitions[0].features;
    let mut parts = Vec::new();
    for (partition, bytes) in partitions.iter().zip(parquet) {
        if &partition.features != features {
            return Err(format!(
                "partition {} has features {:?}, partition {} has {:?}; a model is fitted on one feature set",
                partitions[0].raw_version, features, partition.raw_version, partition.features
            ));
        }
        let table = FlowTable::from_parquet(bytes, features)
            .map_err(|e| format!("{}: {e}", partition.flows.uri()))?;
        parts.push(table.dataset().map_err(|e| e.to_string())?);
    }
    Dataset::concat(&parts).map_err(|e| e.to_string())
}

impl Stage for Train {
    const KIND: StageKind = StageKind::Train;
    const NEXT_SUBJECT: &'static str = subject::EVAL;
    type Input = TrainJob;
    type Output = EvalJob;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        job: &TrainJob,
    ) -> Result<Outcome<EvalJob>, StageError> {
        let services = ctx.services;
        let bucket = &services.config.buckets.models;
        if job.silver.is_empty() {
            return Err(StageError::Rejected(
                "pipeline.train names no SILVER partitions".into(),
            ));
        }
        let mut parquet = Vec::new();
        for p in &job.silver {
            parquet.push(services.store.get(&p.flows.bucket, &p.flows.key).await?);
        }
        let bytes_read = parquet.iter().map(|b| b.len() as u64).sum();
        let partitions = job.silver.clone();
        let data = compute(move || training_dataset(&partitions, &parquet))
            .await?
            .map_err(StageError::Rejected)?;
        let data = Arc::new(data);
        let inputs: Vec<ArtifactRef> = job.silver.iter().map(|p| p.flows.clone()).collect();
        let config = &services.config;
        let mut records = Vec::new();
        let mut models = Vec::new();
        for algorithm in &config.detectors {
            let spec = ModelSpec {
                detector: DetectorParams::named(algorithm, config.seed)
                    .map_err(|e| StageError::Rejected(e.to_string()))?,
                prep: PrepSpec {
                    scaling: config.scaling,
                    ..Default::default()
                },
                threshold: ThresholdRule::Contamination(config.contamination),
            };
            let started = Instant::now();
            let (fit_spec, fit_data) = (spec.clone(), data.clone());
            let fitted = compute(move || fit_spec.fit(&fit_data)).await?;
            let seconds = started.elapsed().as_secs_f64();
            let parameters = json!({ "spec": spec, "features": job.silver[0].features });
            let model = match fitted {
                Ok(model) => model,
                Err(DetectorError::MissingField(what)) => {
                    let reason = format!("skipped: the flows lack {what}");
                    tracing::info!(run_id = %ctx.run_id, algorithm, %reason, "detector skipped");
                    records.push(AuditRecord {
                        item: algorithm.clone(),
                        inputs: json!(inputs),
                        outputs: json!([]),
                        parameters,
                        metrics: json!({ "skipped": reason }),
                    });
                    continue;
                }
                Err(e) => return Err(StageError::Rejected(format!("{algorithm}: {e}"))),
            };
            let model_ref = services
                .store
                .put_artifact(
                    bucket,
                    layout::model_key(algorithm, ctx.version),
                    ctx.version,
                    model.to_bytes(),
                    "application/json",
                )
                .await?;
            let metrics = json!({
                "rows": data.rows(),
                "fit_seconds": seconds,
                "threshold": model.threshold(),
                "training_scores": model.metadata.training_scores,
                "fit": model.metadata.fit,
            });
            let manifest = Manifest::new(
                "model",
                ctx.run_id,
                ctx.version,
                inputs.clone(),
                vec![model_ref.clone()],
                parameters.clone(),
                metrics.clone(),
            );
            let manifest_ref = services
                .store
                .put_manifest(
                    bucket,
                    layout::model_manifest_key(algorithm, ctx.version),
                    &manifest,
                )
                .await?;
            tracing::info!(run_id = %ctx.run_id, algorithm, rows = data.rows(), seconds, "model fitted");
            records.push(AuditRecord {
                item: algorithm.clone(),
                inputs: json!(inputs),
                outputs: json!([model_ref, manifest_ref]),
                parameters,
                metrics,
            });
            models.push(TrainedModel {
                algorithm: algorithm.clone(),
                model: model_ref,
                manifest: manifest_ref,
            });
        }
        if models.is_empty() {
            return Err(StageError::Rejected(format!(
                "none of the configured detectors ({}) could be fitted on these flows",
                config.detectors.join(", ")
            )));
        }
        Ok(Outcome {
            records,
            rows: data.rows() as u64,
            bytes: bytes_read,
            next: EvalJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: job.silver.clone(),
                models,
            },
        })
    }
}
