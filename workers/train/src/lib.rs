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

use nadir_common::audit::{self, AuditRecord, StageKind};
use nadir_common::config::Analysis;
use nadir_common::layout::{self, ArtifactRef, Manifest};
use nadir_common::memory;
use nadir_common::messages::{
    EvalJob, SCHEMA_VERSION, SilverPartition, TrainJob, TrainedModel, TrainingWindow, subject,
};
use nadir_common::registry::RegistryChange;
use nadir_common::stage::{JobContext, Outcome, Stage, StageError, compute};
use nadir_detectors::model::{DetectorParams, ModelSpec, ThresholdRule};
use nadir_detectors::{Dataset, DetectorError, Model, PrepSpec};
use nadir_flows::FlowTable;
use nadir_flows::table::held_out;
use serde_json::json;

pub struct Train;

/// The model specification of every configured detector, in order.
pub fn model_specs(analysis: &Analysis) -> Result<Vec<ModelSpec>, String> {
    analysis
        .detectors
        .iter()
        .map(|algorithm| {
            Ok(ModelSpec {
                detector: DetectorParams::named(algorithm, analysis.seed)
                    .map_err(|e| e.to_string())?,
                prep: PrepSpec {
                    scaling: analysis.scaling,
                    ..Default::default()
                },
                threshold: ThresholdRule::Contamination(analysis.contamination),
            })
        })
        .collect()
}

/// What fitting one detector gave.
pub enum Fitted {
    Model {
        model: Box<Model>,
        seconds: f64,
        /// The most heap in use during the fit (zero unless the binary
        /// counts allocations, see `nadir_common::memory`).
        peak_bytes: usize,
    },
    /// The data cannot serve this detector (the group detector on flows
    /// without hosts and times).
    Skipped(String),
}

/// Fits one detector (pure, CPU-bound); an error is bad input.
pub fn fit(spec: &ModelSpec, data: &Dataset) -> Result<Fitted, String> {
    memory::reset_peak();
    let started = Instant::now();
    match spec.fit(data) {
        Ok(model) => Ok(Fitted::Model {
            model: Box::new(model),
            seconds: started.elapsed().as_secs_f64(),
            peak_bytes: memory::peak(),
        }),
        Err(DetectorError::MissingField(what)) => {
            Ok(Fitted::Skipped(format!("skipped: the flows lack {what}")))
        }
        Err(e) => Err(format!("{}: {e}", spec.detector.algorithm())),
    }
}

/// What a model was fitted with, as its manifest and audit row record it
/// (and `nadir reproduce` reads back).
pub fn model_parameters(
    spec: &ModelSpec,
    training: &[SilverPartition],
    window: &TrainingWindow,
) -> serde_json::Value {
    json!({
        "spec": spec,
        "features": training[0].features,
        "code_version": layout::CODE_VERSION,
        "window": window,
        "training_partitions": training.iter().map(|p| &p.raw_version).collect::<Vec<_>>(),
    })
}

/// What the train stage records of a fitted model (manifest and audit row).
pub fn model_metrics(
    model: &Model,
    rows: usize,
    seconds: f64,
    peak_bytes: usize,
) -> serde_json::Value {
    json!({
        "rows": rows,
        "fit_seconds": seconds,
        "peak_heap_bytes": peak_bytes,
        "threshold": model.threshold(),
        "training_scores": model.metadata.training_scores,
        "fit": model.metadata.fit,
    })
}

/// The flows of all partitions as one dataset; they must share their
/// features. With a hold-out share, the held-out flows are left out.
pub fn training_dataset(
    partitions: &[SilverPartition],
    parquet: &[bytes::Bytes],
    holdout: Option<f64>,
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
        let data = table.dataset().map_err(|e| e.to_string())?;
        parts.push(match holdout {
            Some(share) => {
                let kept: Vec<usize> = table
                    .flow_ids()
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| !held_out(&partition.raw_version, **id, share))
                    .map(|(row, _)| row)
                    .collect();
                data.select(&kept)
            }
            None => data,
        });
    }
    let data = Dataset::concat(&parts).map_err(|e| e.to_string())?;
    if data.rows() == 0 {
        return Err("no flows left to train on after the hold-out".into());
    }
    Ok(data)
}

/// The training window: the run's own partitions, then the newest others
/// with the same features, as far as the window reaches (pure: `recent`
/// is the transform stage's partitions, newest first).
pub fn training_window(
    own: &[SilverPartition],
    recent: &[SilverPartition],
    window: &TrainingWindow,
) -> Vec<SilverPartition> {
    if window.partitions.is_none() && window.span_hours.is_none() {
        return own.to_vec();
    }
    let limit = window
        .partitions
        .map_or(usize::MAX, |n| n as usize)
        .max(own.len());
    let mut chosen = own.to_vec();
    for p in recent {
        if chosen.len() >= limit {
            break;
        }
        if p.features == own[0].features && !chosen.iter().any(|c| c.raw_version == p.raw_version) {
            chosen.push(p.clone());
        }
    }
    chosen
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
        let analysis = &services.config.analysis;
        let window = job
            .training
            .clone()
            .unwrap_or_default()
            .or(&analysis.window);
        let recent = if window.partitions.is_some() || window.span_hours.is_some() {
            // The run's own partitions are among the newest: N more cover the window.
            let limit = window
                .partitions
                .map(|n| i64::from(n) + job.silver.len() as i64);
            audit::silver_partitions(
                &services.db,
                &job.silver[0].features,
                limit,
                window.span_hours,
            )
            .await?
        } else {
            Vec::new()
        };
        let training = training_window(&job.silver, &recent, &window);
        let mut parquet = Vec::new();
        for p in &training {
            parquet.push(services.store.get(&p.flows.bucket, &p.flows.key).await?);
        }
        let bytes_read = parquet.iter().map(|b| b.len() as u64).sum();
        let (partitions, holdout) = (training.clone(), window.holdout);
        let data = compute(move || training_dataset(&partitions, &parquet, holdout))
            .await?
            .map_err(StageError::Rejected)?;
        let data = Arc::new(data);
        let inputs: Vec<ArtifactRef> = training.iter().map(|p| p.flows.clone()).collect();
        let specs = model_specs(analysis).map_err(StageError::Rejected)?;
        let mut records = Vec::new();
        let mut registry = Vec::new();
        let mut models = Vec::new();
        for spec in specs {
            let algorithm = spec.detector.algorithm().to_string();
            let parameters = model_parameters(&spec, &training, &window);
            let (fit_spec, fit_data) = (spec.clone(), data.clone());
            let fitted = compute(move || fit(&fit_spec, &fit_data))
                .await?
                .map_err(StageError::Rejected)?;
            let (model, seconds, peak_bytes) = match fitted {
                Fitted::Model {
                    model,
                    seconds,
                    peak_bytes,
                } => (model, seconds, peak_bytes),
                Fitted::Skipped(reason) => {
                    tracing::info!(run_id = %ctx.run_id, algorithm, %reason, "detector skipped");
                    records.push(AuditRecord {
                        item: algorithm,
                        inputs: json!(inputs),
                        outputs: json!([]),
                        parameters,
                        metrics: json!({ "skipped": reason }),
                    });
                    continue;
                }
            };
            let model_ref = services
                .store
                .put_artifact(
                    bucket,
                    layout::model_key(&algorithm, ctx.version),
                    ctx.version,
                    model.to_bytes(),
                    "application/json",
                )
                .await?;
            let metrics = model_metrics(&model, data.rows(), seconds, peak_bytes);
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
                    layout::model_manifest_key(&algorithm, ctx.version),
                    &manifest,
                )
                .await?;
            tracing::info!(run_id = %ctx.run_id, algorithm, rows = data.rows(), seconds, "model fitted");
            records.push(AuditRecord {
                item: algorithm.clone(),
                inputs: json!(inputs),
                outputs: json!([model_ref, manifest_ref]),
                parameters,
                metrics: metrics.clone(),
            });
            registry.push(RegistryChange::Register {
                algorithm: algorithm.clone(),
                feature_set: layout::feature_set(&job.silver[0].features),
                model: model_ref.clone(),
                manifest: manifest_ref.clone(),
                metrics,
            });
            models.push(TrainedModel {
                algorithm,
                model: model_ref,
                manifest: manifest_ref,
            });
        }
        if models.is_empty() {
            return Err(StageError::Rejected(format!(
                "none of the configured detectors ({}) could be fitted on these flows",
                analysis.detectors.join(", ")
            )));
        }
        Ok(Outcome {
            records,
            rows: data.rows() as u64,
            bytes: bytes_read,
            registry,
            next: EvalJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: job.silver.clone(),
                models,
                training_silver: training,
                holdout: window.holdout,
            },
        })
    }
}
