//! The parameters each stage records in its manifests and audit rows, as
//! types: what, with the inputs, reproduces the outputs. `nadir reproduce`
//! reads them back with the same types the stages wrote them with.

use serde::{Deserialize, Serialize};

use crate::format::Detected;
use crate::messages::TrainingWindow;

/// What ingest records of a RAW object it fingerprinted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestParams {
    /// Who asked for the run: `cli`, `reconciler`, `minio-event`, ...
    pub requested_by: String,
}

/// What a SILVER partition was made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformParams {
    /// The RAW object's format as ingest detected it (`pcap+gzip`, `csv`, ...).
    pub format: Detected,
    /// The numeric columns detectors learn from, in order.
    pub features: Vec<String>,
    /// Text columns kept beside them (DNS names, server names, ...).
    #[serde(default)]
    pub text_columns: Vec<String>,
    /// The flow meter's idle and active timeouts.
    pub flow_idle_timeout_s: u64,
    pub flow_active_timeout_s: u64,
}

/// What a model was fitted with. `Spec` is the detector specification
/// (`nadir_detectors::ModelSpec`); a reader that does not fit models can
/// read it as `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams<Spec> {
    pub spec: Spec,
    /// The features of the flows it was fitted on.
    pub features: Vec<String>,
    pub code_version: String,
    /// The training window the run asked for, defaults applied.
    pub window: TrainingWindow,
    /// The RAW versions of the partitions it was fitted on.
    pub training_partitions: Vec<String>,
}

/// What an evaluation judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalParams {
    /// The share of training flows each model's threshold flags.
    pub contamination: f64,
    /// The labelled metric the champion is chosen by.
    pub selection_metric: String,
}
