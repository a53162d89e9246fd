//! The one place that lists the detectors: their names, their parameters,
//! their checked parameters and their fitted form in the model file. Every
//! `match` over the algorithms is here; the rest of the crate goes through
//! the [`Fit`] and [`Score`] traits. `docs/models.md` ("Adding a
//! detector") says what to add.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DetectorError;
use crate::detector::{Checked, Fit, Input, ParamGuard, Score};
use crate::group::{HostGroup, HostGroupParams};
use crate::iforest::{IsolationForest, IsolationForestParams};
use crate::lof::{LocalOutlierFactor, LocalOutlierFactorParams};
use crate::ocsvm::{OneClassSvm, OneClassSvmParams};

/// A detector algorithm. Serializes, displays and parses as its
/// [`name`](Algorithm::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    IsolationForest,
    LocalOutlierFactor,
    OneClassSvm,
    HostGroup,
}

impl Algorithm {
    /// Every algorithm, in the order reports list them.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::IsolationForest,
        Algorithm::LocalOutlierFactor,
        Algorithm::OneClassSvm,
        Algorithm::HostGroup,
    ];

    /// The name in artifact keys, model files and reports (`isolation_forest`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::IsolationForest => "isolation_forest",
            Algorithm::LocalOutlierFactor => "local_outlier_factor",
            Algorithm::OneClassSvm => "one_class_svm",
            Algorithm::HostGroup => "host_group",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = DetectorError;

    /// The algorithm of that [`name`](Algorithm::name); the error names
    /// the unknown name and lists the known ones.
    fn from_str(name: &str) -> Result<Self, DetectorError> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| DetectorError::UnknownAlgorithm(name.to_string()))
    }
}

impl PartialEq<str> for Algorithm {
    fn eq(&self, name: &str) -> bool {
        self.name() == name
    }
}

impl PartialEq<&str> for Algorithm {
    fn eq(&self, name: &&str) -> bool {
        self.name() == *name
    }
}

impl PartialEq<String> for Algorithm {
    fn eq(&self, name: &String) -> bool {
        self.name() == name
    }
}

/// Which detector, with its parameters (unchecked): what a model
/// specification records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", content = "params", rename_all = "snake_case")]
pub enum DetectorParams {
    IsolationForest(IsolationForestParams),
    LocalOutlierFactor(LocalOutlierFactorParams),
    OneClassSvm(OneClassSvmParams),
    HostGroup(HostGroupParams),
}

impl DetectorParams {
    /// The default parameters of `algorithm`, with `seed` where it draws
    /// random numbers.
    pub fn defaults(algorithm: Algorithm, seed: u64) -> Self {
        match algorithm {
            Algorithm::IsolationForest => DetectorParams::IsolationForest(IsolationForestParams {
                seed,
                ..Default::default()
            }),
            Algorithm::LocalOutlierFactor => {
                DetectorParams::LocalOutlierFactor(LocalOutlierFactorParams {
                    seed,
                    ..Default::default()
                })
            }
            Algorithm::OneClassSvm => DetectorParams::OneClassSvm(OneClassSvmParams {
                seed,
                ..Default::default()
            }),
            Algorithm::HostGroup => DetectorParams::HostGroup(HostGroupParams::default()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            DetectorParams::IsolationForest(_) => Algorithm::IsolationForest,
            DetectorParams::LocalOutlierFactor(_) => Algorithm::LocalOutlierFactor,
            DetectorParams::OneClassSvm(_) => Algorithm::OneClassSvm,
            DetectorParams::HostGroup(_) => Algorithm::HostGroup,
        }
    }

    /// The seed of the detector's random draws, which also seeds the
    /// sample of training flows its threshold is placed on (0 for a
    /// detector without random draws).
    pub fn seed(&self) -> u64 {
        match self {
            DetectorParams::IsolationForest(p) => p.seed,
            DetectorParams::LocalOutlierFactor(p) => p.seed,
            DetectorParams::OneClassSvm(p) => p.seed,
            DetectorParams::HostGroup(_) => 0,
        }
    }

    /// The parameters, checked: the only way to fit them.
    pub fn check(&self) -> Result<CheckedParams, DetectorError> {
        Ok(match self {
            DetectorParams::IsolationForest(p) => CheckedParams::IsolationForest(p.check()?),
            DetectorParams::LocalOutlierFactor(p) => CheckedParams::LocalOutlierFactor(p.check()?),
            DetectorParams::OneClassSvm(p) => CheckedParams::OneClassSvm(p.check()?),
            DetectorParams::HostGroup(p) => CheckedParams::HostGroup(p.check()?),
        })
    }
}

/// Checked parameters of any detector ([`DetectorParams::check`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckedParams {
    IsolationForest(Checked<IsolationForestParams>),
    LocalOutlierFactor(Checked<LocalOutlierFactorParams>),
    OneClassSvm(Checked<OneClassSvmParams>),
    HostGroup(Checked<HostGroupParams>),
}

impl Fit for CheckedParams {
    type Fitted = FittedDetector;

    fn fit(&self, input: &Input<'_>) -> Result<FittedDetector, DetectorError> {
        self.fit_scored(input).map(|(fitted, _)| fitted)
    }

    fn fit_scored(
        &self,
        input: &Input<'_>,
    ) -> Result<(FittedDetector, Option<Vec<f64>>), DetectorError> {
        fn wrap<M>(
            fitted: Result<(M, Option<Vec<f64>>), DetectorError>,
            variant: impl FnOnce(M) -> FittedDetector,
        ) -> Result<(FittedDetector, Option<Vec<f64>>), DetectorError> {
            fitted.map(|(m, scores)| (variant(m), scores))
        }
        match self {
            CheckedParams::IsolationForest(p) => {
                wrap(p.fit_scored(input), FittedDetector::IsolationForest)
            }
            CheckedParams::LocalOutlierFactor(p) => {
                wrap(p.fit_scored(input), FittedDetector::LocalOutlierFactor)
            }
            CheckedParams::OneClassSvm(p) => wrap(p.fit_scored(input), FittedDetector::OneClassSvm),
            CheckedParams::HostGroup(p) => wrap(p.fit_scored(input), FittedDetector::HostGroup),
        }
    }
}

/// Any fitted detector, as the model file holds it (`detector`, tagged by
/// `algorithm`). Scored through [`FittedDetector::as_score`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum FittedDetector {
    IsolationForest(IsolationForest),
    LocalOutlierFactor(LocalOutlierFactor),
    OneClassSvm(OneClassSvm),
    HostGroup(HostGroup),
}

impl FittedDetector {
    pub fn as_score(&self) -> &dyn Score {
        match self {
            FittedDetector::IsolationForest(m) => m,
            FittedDetector::LocalOutlierFactor(m) => m,
            FittedDetector::OneClassSvm(m) => m,
            FittedDetector::HostGroup(m) => m,
        }
    }
}

/// Scores through the detector it holds, so that `Fit for CheckedParams`
/// can return it.
impl Score for FittedDetector {
    fn granularity(&self) -> crate::Granularity {
        self.as_score().granularity()
    }
    fn score(&self, input: &Input<'_>) -> Result<ndarray::Array1<f64>, DetectorError> {
        self.as_score().score(input)
    }
    fn explain(
        &self,
        input: &Input<'_>,
        top: usize,
    ) -> Result<Vec<Vec<crate::Contribution>>, DetectorError> {
        self.as_score().explain(input, top)
    }
    fn threshold(&self, rule: &crate::ThresholdRule, sorted: &[f64]) -> f64 {
        self.as_score().threshold(rule, sorted)
    }
    fn fit_facts(&self) -> serde_json::Value {
        self.as_score().fit_facts()
    }
    fn analyze_hosts(
        &self,
        input: &Input<'_>,
    ) -> Result<Option<crate::hosts::GroupAnalysis>, DetectorError> {
        self.as_score().analyze_hosts(input)
    }
}
