//! Unsupervised anomaly detectors for network flows, and the metrics that
//! compare them. Pure library code: flows or matrices in, scores out. It is
//! not a pipeline: no I/O, no NATS, S3 or PostgreSQL, no reading of flow
//! files (`nadir-flows` builds the [`Dataset`]), no choice of which
//! detectors to run (the workers' configuration makes it).
//!
//! Every detector has the same shape, after linfa:
//!
//! - parameters, a plain serde struct (`IsolationForestParams`...), that
//!   [`ParamGuard::check`] turns into [`Checked`] parameters, or refuses
//!   naming the bad parameter and value;
//! - [`Fit`], implemented by the checked parameters: fitting on an
//!   [`Input`] gives the fitted, serializable detector
//!   (`IsolationForest`...);
//! - [`Score`], implemented by every fitted detector: one score per flow,
//!   higher meaning more anomalous, whether it judges flows or hosts
//!   ([`Granularity`]), and which features weighed in a flow's score.
//!
//! Fitting is deterministic given the seed, whatever the number of threads.
//! A [`Model`] is a fitted detector with its preprocessing, threshold and
//! metadata: the versioned model file the workers store and load.
//!
//! - [`behaviour`]: behavioural detectors (scans, floods, brute force,
//!   beacons, long connections, exfiltration, DNS tunnels) for findings.
//! - [`detector`]: the traits ([`ParamGuard`], [`Fit`], [`Score`]) and
//!   [`Input`], what they read.
//! - [`registry`]: the one list of detectors: [`Algorithm`] and its names,
//!   [`DetectorParams`], and the enums the model file dispatches through.
//! - [`model`]: [`ModelSpec`] (what to fit) and [`Model`] (the model file;
//!   score, explain, threshold).
//! - [`prep`]: the data detectors see, and scaling and categorical
//!   encoding fitted on training data.
//! - [`iforest`]: Isolation Forest (Liu, Ting and Zhou, 2008).
//! - [`lof`]: Local Outlier Factor in novelty mode (Breunig et al., 2000).
//! - [`neighbours`]: exact k-nearest neighbours (k-d tree or blocked scan).
//! - [`ocsvm`]: One-Class SVM (Schölkopf et al., 2001), exact or Nyström.
//! - [`group`]: per-host group outliers over time (`augurs-outlier`).
//! - [`hosts`]: what a per-host detector finds (host verdicts, flow scores).
//! - [`metrics`]: ROC-AUC, average precision, ranking and agreement
//!   metrics, thresholds.
//! - [`profile`]: the training data per feature, for explanations and drift.

pub mod behaviour;
pub mod detector;
pub mod group;
pub mod hosts;
pub mod iforest;
pub mod lof;
pub mod metrics;
pub mod model;
pub mod neighbours;
pub mod ocsvm;
pub mod prep;
pub mod profile;
pub mod registry;

use ndarray::ArrayView2;

pub use detector::{Checked, Contribution, Fit, Granularity, Input, ParamGuard, Score};
pub use group::{HostGroup, HostGroupParams};
pub use iforest::{IsolationForest, IsolationForestParams};
pub use lof::{LocalOutlierFactor, LocalOutlierFactorParams};
pub use model::{Model, ModelSpec, ThresholdRule};
pub use ocsvm::{OneClassSvm, OneClassSvmParams};
pub use prep::{Activity, Categorical, Dataset, PrepSpec, Scaling};
pub use registry::{Algorithm, CheckedParams, DetectorParams, FittedDetector};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DetectorError {
    #[error("no rows to {0}")]
    Empty(&'static str),
    #[error("feature {feature} of row {row} is {value}; detectors need finite numbers")]
    NonFinite {
        row: usize,
        feature: usize,
        value: f64,
    },
    #[error("the model was fitted on {expected} features, the data has {found}")]
    FeatureCount { expected: usize, found: usize },
    #[error("the model was fitted on features {expected:?}, the data has {found:?}")]
    FeatureNames {
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("the data lacks {0}, which the model needs")]
    MissingField(String),
    #[error("invalid parameter: {0}")]
    Params(String),
    #[error(
        "unknown detector {0:?} (known: {known})",
        known = Algorithm::ALL.map(Algorithm::name).join(", ")
    )]
    UnknownAlgorithm(String),
    #[error("model file: {0}")]
    Format(String),
}

/// Rejects empty or non-finite input with the position of the bad value.
pub fn check_finite(x: ArrayView2<'_, f64>, what: &'static str) -> Result<(), DetectorError> {
    if x.nrows() == 0 {
        return Err(DetectorError::Empty(what));
    }
    // A branch-free pass first (it vectorizes); the place of the first
    // bad value is only looked for when there is one.
    let finite = match x.as_slice_memory_order() {
        Some(values) => values.iter().fold(true, |ok, v| ok & v.is_finite()),
        None => x.iter().all(|v| v.is_finite()),
    };
    if finite {
        return Ok(());
    }
    for ((row, feature), &value) in x.indexed_iter() {
        if !value.is_finite() {
            return Err(DetectorError::NonFinite {
                row,
                feature,
                value,
            });
        }
    }
    Ok(())
}

/// Checks data to score: the fitted number of features, finite values.
pub(crate) fn check_scoring_input(
    x: ArrayView2<'_, f64>,
    expected: usize,
) -> Result<(), DetectorError> {
    if x.ncols() != expected {
        return Err(DetectorError::FeatureCount {
            expected,
            found: x.ncols(),
        });
    }
    check_finite(x, "score")
}

/// Runs `f` on a pool of one thread: tests compare its result with the
/// same work done on many.
#[cfg(test)]
pub(crate) fn on_one_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
        .install(f)
}

/// The error for parameter `name`, whose `value` is not `rule`
/// ("trees must be at least 1, not 0").
pub(crate) fn bad_param(name: &str, rule: &str, value: impl std::fmt::Display) -> DetectorError {
    DetectorError::Params(format!("{name} must be {rule}, not {value}"))
}

/// Fitting and scoring a bare matrix, for the detectors' own tests.
#[cfg(test)]
pub(crate) mod on_matrix {
    use ndarray::{Array1, ArrayView2};

    use crate::{Checked, DetectorError, Fit, Input, ParamGuard, Score};

    pub(crate) trait FitMatrix: ParamGuard {
        fn fit_x(
            &self,
            x: ArrayView2<'_, f64>,
        ) -> Result<<Checked<Self> as Fit>::Fitted, DetectorError>
        where
            Checked<Self>: Fit,
        {
            self.check()?.fit(&Input::matrix(x))
        }
    }

    impl<P: ParamGuard> FitMatrix for P {}

    pub(crate) trait ScoreMatrix: Score {
        fn score_x(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>, DetectorError> {
            self.score(&Input::matrix(x))
        }
    }

    impl<S: Score> ScoreMatrix for S {}
}
