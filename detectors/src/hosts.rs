//! What a per-host detector finds: one verdict per outlying host and a
//! score for every flow. Shared by the `Score` trait (its `analyze_hosts`)
//! and the host-group detector that produces it.

use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::DetectorError;

/// One host's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostVerdict {
    pub host: String,
    /// Highest bucket score.
    pub score: f64,
    /// Buckets with a score above the threshold.
    pub outlying_buckets: usize,
    /// Which method flagged which series, e.g. `mad:peers`, `dbscan:flows`.
    pub flagged_by: Vec<String>,
}

/// What the group detector found in a window of flows.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAnalysis {
    pub flow_scores: Array1<f64>,
    /// Outlying hosts, highest score first.
    pub hosts: Vec<HostVerdict>,
    pub source_hosts: usize,
    pub buckets: usize,
    /// Why a method could not run (too few hosts, no spread).
    pub notes: Vec<String>,
}

/// The error for flows without hosts and times.
pub fn no_activity() -> DetectorError {
    DetectorError::MissingField("source/destination hosts and flow start times".into())
}
