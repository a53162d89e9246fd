//! Unsupervised anomaly detectors over ndarray, and the metrics that
//! compare them. Pure library code: matrices in, scores out, no I/O.
//!
//! Every detector follows one shape, after linfa: a checked parameter type
//! whose `fit` returns a fitted, serializable model whose `score` gives one
//! anomaly score per row, higher meaning more anomalous. Fitting is
//! deterministic given the seed, whatever the number of threads.
//!
//! - [`iforest`]: Isolation Forest (Liu, Ting and Zhou, 2008).
//! - [`lof`]: Local Outlier Factor in novelty mode (Breunig et al., 2000).
//! - [`scale`]: feature scaling fitted on training data.
//! - [`metrics`]: ROC-AUC, average precision, thresholds.

pub mod iforest;
pub mod lof;
pub mod metrics;
pub mod scale;

use ndarray::{Array1, ArrayView2};

pub use iforest::{IsolationForest, IsolationForestParams};
pub use lof::{LocalOutlierFactor, LocalOutlierFactorParams};

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

/// Reads a model file written by `serde_json`, refusing another format
/// version than the one this build writes.
pub(crate) fn decode_model<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    version_of: impl Fn(&T) -> u32,
    expected: u32,
) -> Result<T, DetectorError> {
    let model: T =
        serde_json::from_slice(bytes).map_err(|e| DetectorError::Format(e.to_string()))?;
    let found = version_of(&model);
    if found != expected {
        return Err(DetectorError::Format(format!(
            "{what} format {found} (this build reads {expected})"
        )));
    }
    Ok(model)
}
