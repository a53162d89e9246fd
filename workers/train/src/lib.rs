//! The train stage: SILVER partitions in, fitted models out.
//!
//! Fits every configured detector on the run's SILVER partitions (labels are
//! never shown to the detectors) and stores each as
//! `models/<algorithm>/<version>/model.json` with a manifest naming the
//! partitions and hashes it was fitted on, its parameters and seed. This
//! build fits an Isolation Forest; the other detectors join it here.

use std::time::Instant;

use chrono::Utc;
use nadir_common::audit::{AuditRecord, StageKind};
use nadir_common::layout::{self, ArtifactRef, Manifest};
use nadir_common::messages::{
    EvalJob, SCHEMA_VERSION, SilverPartition, TrainJob, TrainedModel, subject,
};
use nadir_common::stage::{JobContext, Outcome, Stage, StageError, compute};
use nadir_detectors::{Detector, IsolationForestParams};
use nadir_flows::FlowTable;
use ndarray::{Array2, Axis};
use serde_json::json;

pub struct Train;

/// The feature matrix of all partitions, which must share their features.
pub fn training_matrix(
    partitions: &[SilverPartition],
    parquet: &[bytes::Bytes],
) -> Result<Array2<f64>, String> {
    let features = &partitions[0].features;
    let mut matrices = Vec::new();
    for (partition, bytes) in partitions.iter().zip(parquet) {
        if &partition.features != features {
            return Err(format!(
                "partition {} has features {:?}, partition {} has {:?}; a model is fitted on one feature set",
                partitions[0].raw_version, features, partition.raw_version, partition.features
            ));
        }
        let table = FlowTable::from_parquet(bytes, features)
            .map_err(|e| format!("{}: {e}", partition.flows.uri()))?;
        matrices.push(table.feature_matrix().map_err(|e| e.to_string())?);
    }
    let views: Vec<_> = matrices.iter().map(|m| m.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())
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
        let params = IsolationForestParams {
            seed: services.config.seed,
            ..Default::default()
        };
        let started = Instant::now();
        let (partitions, fit_params) = (job.silver.clone(), params.clone());
        let fitted = compute(move || {
            let x = training_matrix(&partitions, &parquet)?;
            let model = fit_params.fit(x.view()).map_err(|e| e.to_string())?;
            Ok::<_, String>((x.nrows(), model))
        })
        .await?
        .map_err(StageError::Rejected)?;
        let (rows, model) = fitted;
        let seconds = started.elapsed().as_secs_f64();
        let algorithm = model.algorithm();
        let model_bytes = model.to_json();
        let model_key = layout::model_key(algorithm, ctx.version);
        let model_ref = services
            .store
            .put_artifact(
                bucket,
                model_key,
                ctx.version,
                model_bytes,
                "application/json",
            )
            .await?;

        let features = &job.silver[0].features;
        let parameters = json!({ "algorithm": algorithm, "params": params, "features": features });
        let metrics = json!({ "rows": rows, "fit_seconds": seconds });
        let inputs: Vec<ArtifactRef> = job.silver.iter().map(|p| p.flows.clone()).collect();
        let manifest = Manifest {
            kind: "model".into(),
            run_id: ctx.run_id,
            version: ctx.version.to_string(),
            created_at: Utc::now(),
            code_version: layout::CODE_VERSION.into(),
            inputs: inputs.clone(),
            outputs: vec![model_ref.clone()],
            parameters: parameters.clone(),
            metrics: metrics.clone(),
        }
        .to_json();
        let manifest_key = layout::model_manifest_key(algorithm, ctx.version);
        let manifest_ref = services
            .store
            .put_artifact(
                bucket,
                manifest_key,
                ctx.version,
                manifest,
                "application/json",
            )
            .await?;
        tracing::info!(run_id = %ctx.run_id, algorithm, rows, seconds, "model fitted");
        Ok(Outcome {
            records: vec![AuditRecord {
                item: algorithm.into(),
                inputs: json!(inputs),
                outputs: json!([model_ref, manifest_ref]),
                parameters,
                metrics,
            }],
            rows: rows as u64,
            bytes: bytes_read,
            next: EvalJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: job.silver.clone(),
                models: vec![TrainedModel {
                    algorithm: algorithm.into(),
                    model: model_ref,
                    manifest: manifest_ref,
                }],
            },
        })
    }
}
