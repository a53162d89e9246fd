//! The evaluation report (`eval/<version>/report.json`) and the run's
//! headline figures, as types. Eval writes them, the eval worker's
//! promotion, `nadir status`, `nadir reproduce` and the dashboard read them:
//! one definition instead of string keys in every reader.
//!
//! The report lives here rather than in `nadir-contract` because its
//! entries are the detectors' own types (score quantiles, histograms,
//! threshold rules, the training profile, host verdicts): a report reader
//! links `nadir-detectors` either way.

use nadir_contract::findings::FindingsSummary;
use std::collections::BTreeMap;

use nadir_contract::layout::ArtifactRef;
use nadir_detectors::group::HostVerdict;
use nadir_detectors::metrics::Histogram;
use nadir_detectors::model::ScoreSummary;
use nadir_detectors::profile::FeatureProfile;
use nadir_detectors::{Algorithm, ThresholdRule};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A run's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub run_id: Uuid,
    /// Flows evaluated (the held-out ones when there is a hold-out).
    pub rows: usize,
    /// The run's partitions: what was evaluated.
    pub partitions: Vec<PartitionEntry>,
    pub contamination: f64,
    pub selection_metric: String,
    pub feature_set: Option<String>,
    /// The champion the challengers were held against: (algorithm, version).
    pub champion: Option<(String, String)>,
    /// Why that champion could not score these flows, when it could not.
    pub champion_not_scored: Option<String>,
    /// The partitions the models were fitted on.
    pub training_partitions: Vec<PartitionEntry>,
    pub holdout: Option<f64>,
    pub labelled: bool,
    pub labelled_rows: usize,
    /// Labelled attack flows; `None` without labels.
    pub attacks: Option<usize>,
    pub attack_types: Vec<String>,
    /// Flows flagged by at least one challenger.
    pub flagged: usize,
    pub detectors: Vec<DetectorReport>,
    pub agreement: Vec<Agreement>,
    /// Features by how far the evaluated flows moved from training, most first.
    pub drift: Vec<Drift>,
    /// The training flows per feature (the dashboard sets a flagged flow's
    /// values beside it).
    pub training_profile: Option<Vec<FeatureProfile>>,
    pub selection: Decision,
    /// The findings in brief (counts, the first ten); the rows are in
    /// `findings.parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings_summary: Option<FindingsSummary>,
    /// The version, the scores and findings beside the report, and the
    /// seconds the evaluation took: set when the report is written.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub scores: Option<ArtifactRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<ArtifactRef>,
    #[serde(default)]
    pub seconds: Option<f64>,
    /// How the detectors were judged when the flows had no label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted: Option<Planted>,
    /// What the champion decision rests on (`None` in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_evidence: Option<Evidence>,
    /// The training window the behavioural thresholds were raised by, if
    /// any (none where the models were trained on the evaluated traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<nadir_contract::params::BaselineSummary>,
}

/// A partition as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub raw_version: String,
    pub flows: ArtifactRef,
    pub rows: u64,
}

/// Whether a scorer is one of the run's new models or the champion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Challenger,
    Champion,
}

/// One scorer's figures on the run's flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorReport {
    /// The score column's name: the algorithm, `champion_<algorithm>` for
    /// the champion.
    pub name: String,
    pub algorithm: Algorithm,
    pub version: String,
    pub role: Role,
    pub threshold: f64,
    pub threshold_rule: ThresholdRule,
    pub training_scores: ScoreSummary,
    pub flagged: usize,
    pub score_quantiles: ScoreSummary,
    pub histogram: Histogram,
    /// The group detector's outlying hosts, per partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostsReport>,
    /// Against the labels, when the flows have some.
    #[serde(flatten)]
    pub labelled: Option<LabelledMetrics>,
    /// Against attacks planted among the run's flows, when the run has no
    /// labels ([`Planted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted: Option<LabelledMetrics>,
}

impl DetectorReport {
    /// The figure a selection metric names (`average_precision`,
    /// `roc_auc`, `recall_at_1pct_fpr`, `f1`); `None` without labels or
    /// when the figure is undefined.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.labelled.as_ref()?.metric(name)
    }

    /// The same figure against the planted attacks.
    pub fn planted_metric(&self, name: &str) -> Option<f64> {
        self.planted.as_ref()?.metric(name)
    }

    pub fn is_champion(&self) -> bool {
        self.role == Role::Champion
    }
}

/// A detector's figures against the labelled flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledMetrics {
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub precision_at_k: PrecisionAtK,
    pub recall_at_1pct_fpr: Option<f64>,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Each attack type against the benign flows.
    pub by_attack_type: BTreeMap<String, AttackTypeMetrics>,
}

impl LabelledMetrics {
    /// The figure a selection metric names; `None` when undefined.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "average_precision" => self.average_precision,
            "roc_auc" => self.roc_auc,
            "recall_at_1pct_fpr" => self.recall_at_1pct_fpr,
            "f1" => Some(self.f1),
            _ => None,
        }
        .filter(|v| v.is_finite())
    }
}

/// What the champion decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The capture's ground truth (with any analyst verdicts).
    GroundTruth,
    /// Analysts' verdicts alone.
    AnalystFeedback,
    /// Attacks planted among the run's flows ([`Planted`]).
    PlantedAttacks,
    /// Nothing to judge the detectors by.
    Nothing,
}

/// How the detectors were judged without labels: the attack flows of a
/// generated capture (`nadir gen-capture`'s attacks, a fixed seed) scored
/// beside the run's evaluated flows, which count as benign. The planted
/// flows are never written anywhere. Each detector's figures are its
/// `planted` metrics; recall is its detection rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planted {
    pub method: String,
    pub seed: u64,
    /// Attack flows planted, and of which kinds.
    pub flows: usize,
    pub kinds: Vec<String>,
    /// The run's flows they were mixed with.
    pub background_flows: usize,
    /// Detectors that could not score them, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_scored: Vec<String>,
}

/// Precision among the `k` highest scores, `k` the number of attacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionAtK {
    pub k: usize,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackTypeMetrics {
    pub flows: usize,
    pub flagged: usize,
    pub recall: f64,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
}

/// What the group detector found in one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostsReport {
    pub raw_version: String,
    pub source_hosts: usize,
    pub buckets: usize,
    pub outlying: Vec<HostVerdict>,
    pub notes: Vec<String>,
}

/// Rank agreement of two scorers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub a: String,
    pub b: String,
    pub spearman: Option<f64>,
}

/// How far one feature moved from the training flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub feature: String,
    /// Population stability index over the training deciles.
    pub psi: f64,
    pub training_median: f64,
}

/// What the selection rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A challenger becomes champion.
    Promote,
    /// The champion stays.
    Keep,
    /// There is no champion and none was chosen.
    #[serde(rename = "none")]
    NoChampion,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Keep => "keep",
            Action::NoChampion => "none",
        }
    }
}

/// The champion decision of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    /// The champion after this run: (algorithm, version).
    pub champion: Option<(String, String)>,
    pub reason: String,
    /// The champion before this run, when it is replaced.
    pub replaces: Option<(String, String)>,
}

/// The run's headline figures (`pipeline.done`'s summary, the evaluation
/// row's metrics, `pipeline_runs.report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    pub rows: usize,
    pub flagged: usize,
    pub champion: Option<String>,
    pub champion_version: Option<String>,
    pub decision: Action,
    pub reason: String,
    pub detectors: Vec<DetectorFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorFigures {
    pub name: String,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub flagged: usize,
}

impl RunFigures {
    pub fn of(report: &EvalReport) -> Self {
        let decision = &report.selection;
        RunFigures {
            rows: report.rows,
            flagged: report.flagged,
            champion: decision.champion.as_ref().map(|(a, _)| a.clone()),
            champion_version: decision.champion.as_ref().map(|(_, v)| v.clone()),
            decision: decision.action,
            reason: decision.reason.clone(),
            detectors: report
                .detectors
                .iter()
                .map(|d| DetectorFigures {
                    name: d.name.clone(),
                    roc_auc: d.labelled.as_ref().and_then(|m| m.roc_auc),
                    average_precision: d.labelled.as_ref().and_then(|m| m.average_precision),
                    flagged: d.flagged,
                })
                .collect(),
        }
    }
}
