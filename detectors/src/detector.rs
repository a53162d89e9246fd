//! The traits every detector implements, after linfa's `ParamGuard`, `Fit`
//! and `Predict`.
//!
//! - [`ParamGuard`]: an algorithm's parameters (plain serde structs) check
//!   themselves into [`Checked`] parameters. Only this module can make a
//!   `Checked`, so parameters that were not checked cannot be fitted.
//! - [`Fit`]: checked parameters fit on an [`Input`] into the algorithm's
//!   fitted detector.
//! - [`Score`]: a fitted detector gives one score per flow of an
//!   [`Input`], higher meaning more anomalous, says whether it scores flows
//!   or hosts ([`Granularity`]) and explains its scores.
//!
//! [`Input`] is what both traits read: the flows, and the matrix the fitted
//! preprocessing makes of them (computed on first use, so a detector that
//! reads only the flows' hosts and times never pays for it).

use std::cell::OnceCell;
use std::ops::Deref;

use ndarray::{Array1, ArrayView2, CowArray, Ix2};
use serde::{Deserialize, Serialize};

use crate::DetectorError;
use crate::hosts::{GroupAnalysis, no_activity};
use crate::metrics;
use crate::prep::{Activity, Dataset, Preprocessor};
use crate::profile::FeatureProfile;

/// How the operating threshold is set from the training scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// Flag this share of the training rows.
    Contamination(f64),
    /// Flag scores above this quantile of the training scores.
    Quantile(f64),
}

impl ThresholdRule {
    pub fn check(&self) -> Result<(), DetectorError> {
        let (name, v) = match *self {
            ThresholdRule::Contamination(v) => ("contamination", v),
            ThresholdRule::Quantile(v) => ("quantile", v),
        };
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(DetectorError::Params(format!(
                "{name} must be in [0, 1], not {v}"
            )))
        }
    }

    /// The share of the training rows this rule flags: what it flags of
    /// traffic like the training window's.
    pub fn flag_rate(&self) -> f64 {
        match *self {
            ThresholdRule::Contamination(rate) => rate,
            ThresholdRule::Quantile(q) => 1.0 - q,
        }
    }

    /// The threshold this rule puts on scores sorted in ascending order.
    pub fn threshold(&self, sorted: &[f64]) -> f64 {
        match *self {
            ThresholdRule::Contamination(rate) => metrics::sorted_quantile(sorted, 1.0 - rate),
            ThresholdRule::Quantile(q) => metrics::sorted_quantile(sorted, q),
        }
    }
}

/// Parameters that check themselves before any fit.
pub trait ParamGuard: Clone {
    /// Every parameter's value in its range; the error names the parameter
    /// and the value.
    fn validate(&self) -> Result<(), DetectorError>;

    /// These parameters, checked: what [`Fit`] is implemented for.
    fn check(&self) -> Result<Checked<Self>, DetectorError> {
        self.validate()?;
        Ok(Checked(self.clone()))
    }
}

/// Parameters that passed [`ParamGuard::check`]. Read them through
/// `Deref`; they cannot be changed or made any other way.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<P>(P);

impl<P> Checked<P> {
    /// The parameters, unchecked again (to change and check anew).
    pub fn into_inner(self) -> P {
        self.0
    }
}

impl<P> Deref for Checked<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.0
    }
}

/// Fitting: implemented by every algorithm's checked parameters.
pub trait Fit {
    type Fitted: Score;

    /// The detector fitted on `input`.
    fn fit(&self, input: &Input<'_>) -> Result<Self::Fitted, DetectorError>;

    /// The detector, and the scores of the training flows when the fit
    /// computes them anyway (LOF's factors); a model places its threshold
    /// on those instead of scoring a sample again.
    fn fit_scored(
        &self,
        input: &Input<'_>,
    ) -> Result<(Self::Fitted, Option<Vec<f64>>), DetectorError> {
        Ok((self.fit(input)?, None))
    }
}

/// What a detector judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Each flow on its own.
    Flow,
    /// Each source host against its peers; every flow of a host gets the
    /// host's score (in the time bucket the flow started in).
    Host,
}

/// Scoring: implemented by every fitted detector.
pub trait Score {
    fn granularity(&self) -> Granularity;

    /// One score per flow of `input`; higher is more anomalous.
    fn score(&self, input: &Input<'_>) -> Result<Array1<f64>, DetectorError>;

    /// Per flow of `input`, the numeric features that weighed most in its
    /// score, at most `top`, heaviest first (see [`Input::contributions`]).
    /// By default, how far each value stands from the training profile
    /// ([`Input::deviations`]).
    fn explain(
        &self,
        input: &Input<'_>,
        top: usize,
    ) -> Result<Vec<Vec<Contribution>>, DetectorError> {
        Ok(input.deviations(top))
    }

    /// The operating threshold `rule` puts on the training scores, sorted
    /// in ascending order.
    fn threshold(&self, rule: &ThresholdRule, sorted: &[f64]) -> f64 {
        rule.threshold(sorted)
    }

    /// Facts of the fit for the model's metadata (the solver that ran...).
    fn fit_facts(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    /// Per-host findings, for detectors of [`Granularity::Host`].
    fn analyze_hosts(&self, _input: &Input<'_>) -> Result<Option<GroupAnalysis>, DetectorError> {
        Ok(None)
    }
}

/// One feature's part in a flow's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: String,
    /// The flow's value.
    pub value: f64,
    /// The training data's median.
    pub typical: f64,
    /// Isolation Forest: the feature's share of the isolation paths;
    /// others: the distance from the median in robust standard deviations.
    pub weight: f64,
}

/// The flows a detector fits on or scores, as it sees them.
pub struct Input<'a> {
    /// The flows behind the matrix, if any (activity, raw values).
    flows: Option<&'a Dataset>,
    /// The training data's numeric features, for explanations.
    profile: &'a [FeatureProfile],
    matrix: Matrix<'a>,
}

enum Matrix<'a> {
    Ready(CowArray<'a, f64, Ix2>),
    /// Made from the flows by the fitted preprocessing, when first read.
    Preprocessed {
        data: &'a Dataset,
        prep: &'a Preprocessor,
        made: OnceCell<CowArray<'a, f64, Ix2>>,
    },
}

impl<'a> Input<'a> {
    /// `data` as a model sees it: through its fitted preprocessing, and
    /// explained against the training data's `profile`.
    pub fn new(data: &'a Dataset, prep: &'a Preprocessor, profile: &'a [FeatureProfile]) -> Self {
        Input {
            flows: Some(data),
            profile,
            matrix: Matrix::Preprocessed {
                data,
                prep,
                made: OnceCell::new(),
            },
        }
    }

    /// `data` with its numeric matrix as it is (no preprocessing, no
    /// explanations): to fit or score a detector on its own.
    pub fn dataset(data: &'a Dataset) -> Self {
        Input {
            flows: Some(data),
            profile: &[],
            matrix: Matrix::Ready(CowArray::from(data.numeric.view())),
        }
    }

    /// A matrix alone, one row per flow (no hosts and times, no
    /// explanations).
    pub fn matrix(x: ArrayView2<'a, f64>) -> Self {
        Input {
            flows: None,
            profile: &[],
            matrix: Matrix::Ready(CowArray::from(x)),
        }
    }

    /// Flows (rows).
    pub fn rows(&self) -> usize {
        match &self.matrix {
            Matrix::Ready(x) => x.nrows(),
            Matrix::Preprocessed { data, .. } => data.rows(),
        }
    }

    /// The detector's input matrix: preprocessed numeric features, then
    /// the one-hot columns (made on the first call).
    pub fn x(&self) -> Result<ArrayView2<'_, f64>, DetectorError> {
        match &self.matrix {
            Matrix::Ready(x) => Ok(x.view()),
            Matrix::Preprocessed { data, prep, made } => {
                if let Some(x) = made.get() {
                    return Ok(x.view());
                }
                let x = prep.transform(data)?;
                Ok(made.get_or_init(|| x).view())
            }
        }
    }

    /// Who talked to whom and when; an error naming what is missing when
    /// the flows do not say.
    pub fn activity(&self) -> Result<&'a Activity, DetectorError> {
        self.flows
            .and_then(|data| data.activity.as_ref())
            .ok_or_else(no_activity)
    }

    /// The flows behind the matrix, if any.
    pub fn flows(&self) -> Option<&'a Dataset> {
        self.flows
    }

    /// The training data's numeric features (empty: no explanations).
    pub fn profile(&self) -> &'a [FeatureProfile] {
        self.profile
    }

    /// Per flow, its numeric features weighted by `weights(flow)` (one
    /// weight per profiled feature, in order), those of weight above 0,
    /// at most `top`, heaviest first. Empty lists without a profile.
    pub fn contributions(
        &self,
        top: usize,
        mut weights: impl FnMut(usize) -> Vec<f64>,
    ) -> Vec<Vec<Contribution>> {
        let Some(data) = self.flows.filter(|_| !self.profile.is_empty()) else {
            return vec![Vec::new(); self.rows()];
        };
        (0..data.rows())
            .map(|i| {
                let values = data.numeric.row(i);
                let mut contributions: Vec<Contribution> = self
                    .profile
                    .iter()
                    .zip(values)
                    .zip(weights(i))
                    .filter(|(_, w)| *w > 0.0)
                    .map(|((p, v), weight)| Contribution {
                        feature: p.name.clone(),
                        value: *v,
                        typical: p.median,
                        weight,
                    })
                    .collect();
                contributions.sort_by(|a, b| b.weight.total_cmp(&a.weight));
                contributions.truncate(top);
                contributions
            })
            .collect()
    }

    /// [`Input::contributions`] weighted by how far each value stands from
    /// the training median, in robust standard deviations: the explanation
    /// of detectors with no structure of their own to read.
    pub fn deviations(&self, top: usize) -> Vec<Vec<Contribution>> {
        let (Some(data), profile) = (self.flows, self.profile) else {
            return vec![Vec::new(); self.rows()];
        };
        self.contributions(top, |i| {
            profile
                .iter()
                .zip(data.numeric.row(i))
                .map(|(p, v)| p.deviation(*v))
                .collect()
        })
    }
}
