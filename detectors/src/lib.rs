//! Unsupervised anomaly detectors over ndarray, and the metrics that
//! compare them. Pure library code: matrices in, scores out, no I/O.
//!
//! Every detector follows one shape, after linfa: a checked parameter type
//! whose `fit` returns a fitted, serializable model whose `score` gives one
//! anomaly score per row, higher meaning more anomalous. Fitting is
//! deterministic given the seed, whatever the number of threads.
//!
//! - [`model`]: the common interface (fit, score, threshold) over every
//!   detector with its preprocessing, and the versioned model file.
//! - [`prep`]: the data detectors see, and scaling and categorical
//!   encoding fitted on training data.
//! - [`iforest`]: Isolation Forest (Liu, Ting and Zhou, 2008).
//! - [`lof`]: Local Outlier Factor in novelty mode (Breunig et al., 2000).
//! - [`neighbours`]: exact k-nearest neighbours (k-d tree or blocked scan).
//! - [`ocsvm`]: One-Class SVM (Schölkopf et al., 2001), exact or Nyström.
//! - [`group`]: per-host group outliers over time (`augurs-outlier`).
//! - [`metrics`]: ROC-AUC, average precision, ranking and agreement
//!   metrics, thresholds.
//! - [`profile`]: the training data per feature, for explanations and drift.

pub mod group;
pub mod iforest;
pub mod lof;
pub mod metrics;
pub mod model;
pub mod neighbours;
pub mod ocsvm;
pub mod prep;
pub mod profile;

use ndarray::{Array1, ArrayView2};

pub use group::{HostGroup, HostGroupParams};
pub use iforest::{IsolationForest, IsolationForestParams};
pub use lof::{LocalOutlierFactor, LocalOutlierFactorParams};
pub use model::{DetectorParams, Model, ModelSpec, ThresholdRule};
pub use ocsvm::{OneClassSvm, OneClassSvmParams};
pub use prep::{Activity, Categorical, Dataset, PrepSpec, Scaling};

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
    #[error("model file: {0}")]
    Format(String),
}

/// A fitted detector.
pub trait Detector {
    /// The algorithm's name in artifact keys and reports (`isolation_forest`).
    fn algorithm(&self) -> &'static str;
    /// One score per row of `x`; higher is more anomalous.
    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>, DetectorError>;
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
