//! The train core: SILVER partitions in, fitted models out.
//!
//! Fits every configured detector (`NADIR_DETECTORS`) on the run's SILVER
//! partitions (labels are never shown to the detectors) and stores each as
//! `models/<algorithm>/<version>/model.json` with a manifest naming the
//! partitions and hashes it was fitted on, its parameters, seed, features
//! and scaling. A detector the data cannot serve (the per-host group
//! detector on flows without hosts and times) is recorded as skipped.

use std::time::Instant;

use nadir_contract::audit::AuditRecord;
use nadir_contract::layout::{self, ArtifactRef, ManifestKind};
use nadir_contract::messages::{SilverPartition, TrainedModel, TrainingWindow};
use nadir_contract::params::ModelParams;
use nadir_contract::registry::RegistryChange;
use nadir_detectors::behaviour::{Baseline, BehaviourParams};
use nadir_detectors::model::{DetectorParams, ModelSpec, ThresholdRule};
use nadir_detectors::{Dataset, DetectorError, Model, PrepSpec};
use nadir_flows::FlowTable;
use nadir_flows::split::held_out;
use serde_json::json;
use uuid::Uuid;

use crate::Analysis;
use crate::memory;
use nadir_store::sink::{Artifact, Product, Written};

/// The model specification of every configured detector, in order.
pub fn model_specs(analysis: &Analysis) -> Vec<ModelSpec> {
    analysis
        .detectors
        .iter()
        .map(|algorithm| ModelSpec {
            detector: DetectorParams::defaults(*algorithm, analysis.seed),
            prep: PrepSpec {
                scaling: analysis.scaling,
                ..Default::default()
            },
            threshold: ThresholdRule::Contamination(analysis.contamination),
        })
        .collect()
}

/// What fitting one detector gave.
pub enum Fitted {
    Model {
        model: Box<Model>,
        seconds: f64,
        /// The most heap in use during the fit (zero unless the binary
        /// counts allocations, see `nadir_pipeline::memory`).
        peak_bytes: usize,
    },
    /// The data cannot serve this detector (the group detector on flows
    /// without hosts and times).
    Skipped(String),
}

/// Fits one detector (pure, CPU-bound), the window's baseline kept in the
/// model file; an error is bad input.
pub fn fit(spec: &ModelSpec, training: &Training) -> Result<Fitted, String> {
    memory::reset_peak();
    let started = Instant::now();
    match spec.fit(&training.data) {
        Ok(mut model) => Ok(Fitted::Model {
            model: Box::new({
                model.metadata.baseline = training.baseline.clone();
                model
            }),
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
) -> ModelParams<ModelSpec> {
    ModelParams {
        spec: spec.clone(),
        features: training[0].features.clone(),
        code_version: layout::CODE_VERSION.to_string(),
        window: window.clone(),
        training_partitions: training.iter().map(|p| p.raw_version.clone()).collect(),
    }
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

/// The training window as the train core reads it.
#[derive(Debug)]
pub struct Training {
    /// The flows of all partitions, for the detectors.
    pub data: Dataset,
    /// What the hosts did in the partitions eval does not judge, for the
    /// behavioural thresholds; none where every partition is judged (a
    /// run trained on its own capture cannot be its own baseline: its
    /// scan would raise its own threshold).
    pub baseline: Option<Baseline>,
}

/// The flows of all partitions as one dataset; they must share their
/// features. With a hold-out share, the held-out flows are left out.
/// The partitions not among `judged` are measured for the baseline with
/// the thresholds eval judges by (`behaviour`).
pub fn training_dataset(
    partitions: &[SilverPartition],
    parquet: &[bytes::Bytes],
    holdout: Option<f64>,
    judged: &[SilverPartition],
    behaviour: &BehaviourParams,
) -> Result<Training, String> {
    let features = &partitions[0].features;
    let mut parts = Vec::new();
    let mut loaded = 0u64;
    let (mut before, mut measured) = (Vec::new(), Vec::new());
    for (partition, bytes) in partitions.iter().zip(parquet) {
        if &partition.features != features {
            return Err(format!(
                "partition {} has features {:?}, partition {} has {:?}; a model is fitted on one feature set",
                partitions[0].raw_version, features, partition.raw_version, partition.features
            ));
        }
        let table = FlowTable::from_parquet(bytes, features)
            .map_err(|e| format!("{}: {e}", partition.flows.uri()))?;
        loaded += table.rows() as u64;
        if !judged
            .iter()
            .any(|j| j.raw_version == partition.raw_version)
        {
            before.extend(crate::eval::findings::flows_of(&table.frame)?);
            measured.push(partition.raw_version.clone());
        }
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
        return Err(no_flows(partitions, loaded, holdout));
    }
    // Flows without hosts (flow files of other features) say nothing of hosts.
    let baseline = (!before.is_empty() && before.iter().any(|f| !f.src.is_empty()))
        .then(|| Baseline::measure(&before, behaviour, measured));
    Ok(Training { data, baseline })
}

/// Why there is nothing to train on: no flows at all (a capture without IP
/// traffic), or all of them held out.
fn no_flows(partitions: &[SilverPartition], loaded: u64, holdout: Option<f64>) -> String {
    let versions = || {
        partitions
            .iter()
            .map(|p| p.raw_version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match holdout {
        Some(share) if loaded > 0 => format!(
            "no flows left to train on after the hold-out: the hold-out share {share} keeps all {loaded} flows of the training window ({}) out of training",
            versions()
        ),
        _ => format!(
            "no flows to train on: the training window ({}) holds no flows (a capture with no IP packets the flow meter could read, or a table with no rows)",
            versions()
        ),
    }
}

/// Refuses a training window of more than `max_rows` flows before its
/// partitions are fetched (the rows each partition recorded; the hold-out
/// is taken from what is loaded, so it does not count).
pub fn check_training_rows(training: &[SilverPartition], max_rows: u64) -> Result<(), String> {
    let rows = training
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.rows));
    if rows > max_rows {
        return Err(format!(
            "the training window holds {rows} flows in {} partitions, more than the {max_rows} train may load (NADIR_MAX_TRAINING_ROWS); narrow the window (NADIR_TRAIN_PARTITIONS, NADIR_TRAIN_SPAN_HOURS) or raise the setting",
            training.len()
        ));
    }
    Ok(())
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

/// What training one detector gave, in the configured order.
pub enum Outcome {
    /// A fitted model, as a product to write.
    Fitted { model: Box<Model>, product: Product },
    /// The detector could not serve these flows: its audit row says why.
    Skipped(AuditRecord),
}

/// Fits every configured detector on `data` (CPU-bound, pure): the models
/// as products (model file and manifest), or why a detector was skipped.
/// An error is bad input.
pub fn train(
    analysis: &Analysis,
    data: &Training,
    training: &[SilverPartition],
    window: &TrainingWindow,
    run_id: Uuid,
    version: &str,
) -> Result<Vec<Outcome>, String> {
    let inputs: Vec<ArtifactRef> = training.iter().map(|p| p.flows.clone()).collect();
    let mut outcomes = Vec::new();
    for spec in model_specs(analysis) {
        let algorithm = spec.detector.algorithm().to_string();
        let parameters = serde_json::to_value(model_parameters(&spec, training, window))
            .expect("parameters serialize");
        outcomes.push(match fit(&spec, data)? {
            Fitted::Skipped(reason) => Outcome::Skipped(AuditRecord {
                item: algorithm,
                inputs: json!(inputs),
                outputs: json!([]),
                parameters,
                metrics: json!({ "skipped": reason }),
            }),
            Fitted::Model {
                model,
                seconds,
                peak_bytes,
            } => {
                let product = Product {
                    kind: ManifestKind::Model,
                    run_id,
                    version: version.to_string(),
                    item: algorithm.clone(),
                    inputs: inputs.clone(),
                    audit_inputs: None,
                    artifacts: vec![Artifact::json(
                        layout::model_key(&algorithm, version),
                        model.to_bytes(),
                    )],
                    existing: Vec::new(),
                    audit_metrics: None,
                    manifest_key: layout::model_manifest_key(&algorithm, version),
                    parameters,
                    metrics: model_metrics(&model, data.data.rows(), seconds, peak_bytes),
                };
                Outcome::Fitted { model, product }
            }
        });
    }
    if !outcomes.iter().any(|o| matches!(o, Outcome::Fitted { .. })) {
        return Err(format!(
            "none of the configured detectors ({}) could be fitted on these flows",
            analysis
                .detectors
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(outcomes)
}

/// The model the next stage reads, and its registration, from what was
/// written.
pub fn trained(
    algorithm: &str,
    features: &[String],
    written: &Written,
) -> (TrainedModel, RegistryChange) {
    let model = TrainedModel {
        algorithm: algorithm.to_string(),
        model: written.artifacts[0].clone(),
        manifest: written.manifest.clone(),
    };
    let change = RegistryChange::Register {
        algorithm: algorithm.to_string(),
        feature_set: layout::feature_set(features),
        model: model.model.clone(),
        manifest: model.manifest.clone(),
        metrics: written.record.metrics.clone(),
    };
    (model, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(raw_version: &str, rows: u64) -> SilverPartition {
        let artifact = ArtifactRef::of("silver", format!("{raw_version}/flows.parquet"), "v", b"");
        SilverPartition {
            raw_version: raw_version.into(),
            features: vec!["duration_s".into()],
            flows: artifact.clone(),
            manifest: artifact,
            rows,
        }
    }

    fn parquet(rows: usize) -> bytes::Bytes {
        let csv: String = std::iter::once("duration_s,label\n".to_string())
            .chain((0..rows).map(|i| format!("{i}.5,normal\n")))
            .collect();
        let table = if rows == 0 {
            let empty = FlowTable::from_csv(b"duration_s,label\n1,normal\n").unwrap();
            FlowTable {
                frame: empty.frame.head(Some(0)),
                ..empty
            }
        } else {
            FlowTable::from_csv(csv.as_bytes()).unwrap()
        };
        table.to_parquet().unwrap().into()
    }

    #[test]
    fn a_window_without_flows_says_so_and_a_hold_out_is_named_only_when_there_is_one() {
        let empty = [partition("empty-capture", 0)];
        let err = training_dataset(
            &empty,
            &[parquet(0)],
            None,
            &empty,
            &BehaviourParams::default(),
        )
        .unwrap_err();
        assert!(err.starts_with("no flows to train on"), "{err}");
        assert!(
            !err.contains("hold-out") && err.contains("empty-capture"),
            "{err}"
        );
        let err = training_dataset(
            &empty,
            &[parquet(0)],
            Some(0.5),
            &empty,
            &BehaviourParams::default(),
        )
        .unwrap_err();
        assert!(err.starts_with("no flows to train on"), "{err}");
        // Every flow held out: the hold-out is the reason.
        let one = [partition("one", 1)];
        let all_out = (1..100)
            .map(|i| i as f64 / 100.0)
            .find(|share| held_out("one", 0, *share))
            .expect("some share holds the one flow out");
        let err = training_dataset(
            &one,
            &[parquet(1)],
            Some(all_out),
            &one,
            &BehaviourParams::default(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("no flows left to train on after the hold-out"),
            "{err}"
        );
        assert!(
            training_dataset(&one, &[parquet(1)], None, &one, &BehaviourParams::default()).is_ok()
        );
    }

    #[test]
    fn a_training_window_over_the_row_limit_is_refused_with_the_setting_named() {
        let window = [partition("a", 3_000_000), partition("b", 2_500_000)];
        assert!(check_training_rows(&window[..1], 5_000_000).is_ok());
        let err = check_training_rows(&window, 5_000_000).unwrap_err();
        assert!(
            err.contains("5500000 flows in 2 partitions")
                && err.contains("NADIR_MAX_TRAINING_ROWS"),
            "{err}"
        );
        assert!(
            check_training_rows(&[partition("x", u64::MAX), partition("y", 1)], u64::MAX).is_ok()
        );
    }
}
