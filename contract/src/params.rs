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
    /// The behavioural detectors' thresholds (docs/findings.md).
    #[serde(default)]
    pub behaviour: BehaviourParams,
    /// The suppression rules in force when it ran. Recorded, not applied:
    /// rules hide findings where they are shown, and never change
    /// `findings.parquet`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppression_rules: Vec<crate::suppression::Rule>,
    /// The training window the behavioural thresholds were raised by, if
    /// any (none where the models were trained on the evaluated traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSummary>,
}

/// The training window a run's behavioural thresholds were learned from
/// (`nadir_detectors::behaviour::Baseline`, kept in the model files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSummary {
    /// The RAW versions of its partitions.
    pub partitions: Vec<String>,
    /// From its first packet to its last, seconds.
    pub window_s: f64,
    pub flows: u64,
    pub hosts: usize,
    pub domains: usize,
}

/// The thresholds of the behavioural detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BehaviourParams {
    /// Scan: distinct ports of one host, or hosts on one port, probed.
    pub scan_min_targets: usize,
    /// Scan: share of the probes refused or unanswered.
    pub scan_min_failed_share: f64,
    /// Flood: half-open TCP connections to one service within `flood_window_s`.
    pub flood_min_half_open: usize,
    pub flood_window_s: f64,
    /// Brute force: sessions from one host to one authentication service.
    pub brute_min_sessions: usize,
    /// Brute force: a session's longest duration, seconds.
    pub brute_max_session_s: f64,
    /// Brute force: the sessions' bytes' coefficient of variation at most.
    pub brute_max_size_cv: f64,
    pub auth_ports: Vec<u16>,
    /// Beacon: connections from one host to one peer or name.
    pub beacon_min_connections: usize,
    /// Beacon: the score (interval and size regularity, count, coverage) from which it is one.
    pub beacon_min_score: f64,
    /// Long connection: seconds open (a connection still open at the end
    /// counts from half of that).
    pub long_min_s: f64,
    /// Exfiltration: bytes out of a host to one peer.
    pub exfil_min_bytes: u64,
    /// Exfiltration: bytes out per byte in, at least.
    pub exfil_min_ratio: f64,
    /// DNS tunnel: distinct names asked under one domain.
    pub dns_min_names: usize,
    /// DNS tunnel: mean length of the labels under the domain, characters.
    pub dns_min_label_len: f64,
    /// DNS tunnel: share of the questions for TXT or NULL records, at which
    /// short names are a tunnel too.
    pub dns_min_txt_share: f64,
    /// A host's threshold is at least this many times its figure in the
    /// training window (docs/findings.md, "Thresholds from the training
    /// window").
    pub baseline_margin: f64,
}

impl Default for BehaviourParams {
    fn default() -> Self {
        BehaviourParams {
            scan_min_targets: 20,
            scan_min_failed_share: 0.5,
            flood_min_half_open: 100,
            flood_window_s: 60.0,
            brute_min_sessions: 20,
            brute_max_session_s: 30.0,
            brute_max_size_cv: 0.5,
            auth_ports: vec![
                21, 22, 23, 25, 110, 143, 389, 445, 587, 993, 995, 1433, 3306, 3389, 5432, 5900,
            ],
            beacon_min_connections: 4,
            beacon_min_score: 0.8,
            long_min_s: 600.0,
            exfil_min_bytes: 5_000_000,
            exfil_min_ratio: 10.0,
            dns_min_names: 20,
            dns_min_label_len: 20.0,
            dns_min_txt_share: 0.5,
            baseline_margin: 2.0,
        }
    }
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
