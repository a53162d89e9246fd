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
    /// The flow meter's limits: flows open at once before the oldest is
    /// evicted (`NADIR_MAX_OPEN_FLOWS`), and how far after the clock a
    /// packet may be stamped (`NADIR_MAX_CLOCK_JUMP_SECS`). `None` in
    /// partitions made before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_flows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_jump_s: Option<u64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_params_recorded_before_the_meter_limits_still_read() {
        let old = r#"{"format":"pcap","features":["duration_s"],"flow_idle_timeout_s":120,"flow_active_timeout_s":1800}"#;
        let params: TransformParams = serde_json::from_str(old).unwrap();
        assert_eq!(
            (params.max_open_flows, params.max_clock_jump_s),
            (None, None)
        );
        let new = TransformParams {
            max_open_flows: Some(500),
            max_clock_jump_s: Some(3600),
            ..params
        };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["max_open_flows"], 500);
        assert_eq!(json["max_clock_jump_s"], 3600);
        assert_eq!(
            serde_json::from_value::<TransformParams>(json).unwrap(),
            new
        );
    }
}
