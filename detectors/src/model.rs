//! The common interface over every detector, and the model file.
//!
//! A [`ModelSpec`] (which detector with which parameters, how to
//! preprocess, how to set the threshold) is fitted on a [`Dataset`] into a
//! [`Model`]: the fitted preprocessing, the fitted detector, the operating
//! threshold and metadata. `Model::score` preprocesses and scores new flows
//! exactly as training did.
//!
//! The model file is JSON (`to_bytes`/`from_bytes`), documented in
//! `docs/models.md`: `format` ("nadir-model"), `format_version`,
//! `metadata`, `preprocessing` and `detector` (tagged by `algorithm`).
//! Numbers round-trip exactly, so a loaded model scores bit for bit as the
//! one that was saved; equal inputs give equal bytes.

use ndarray::Array1;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::group::{GroupAnalysis, HostGroup, HostGroupParams};
use crate::iforest::{IsolationForest, IsolationForestParams};
use crate::lof::{LocalOutlierFactor, LocalOutlierFactorParams};
use crate::ocsvm::{OneClassSvm, OneClassSvmParams};
use crate::prep::{Dataset, PrepSpec, Preprocessor};
use crate::profile::FeatureProfile;
use crate::{Detector, DetectorError, metrics};

pub const FORMAT: &str = "nadir-model";
pub const FORMAT_VERSION: u32 = 1;

/// Training rows scored to place the threshold, at most (a seeded sample;
/// LOF uses the factors of the rows it kept, which its fit computes).
pub const CALIBRATION_ROWS: usize = 20_000;

/// Which detector, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", content = "params", rename_all = "snake_case")]
pub enum DetectorParams {
    IsolationForest(IsolationForestParams),
    LocalOutlierFactor(LocalOutlierFactorParams),
    OneClassSvm(OneClassSvmParams),
    HostGroup(HostGroupParams),
}

/// Every algorithm name, in the order reports list them.
pub const ALGORITHMS: [&str; 4] = [
    "isolation_forest",
    "local_outlier_factor",
    "one_class_svm",
    "host_group",
];

impl DetectorParams {
    /// The default parameters of the algorithm called `name`, with `seed`.
    pub fn named(name: &str, seed: u64) -> Result<Self, DetectorError> {
        Ok(match name {
            "isolation_forest" => DetectorParams::IsolationForest(IsolationForestParams {
                seed,
                ..Default::default()
            }),
            "local_outlier_factor" => {
                DetectorParams::LocalOutlierFactor(LocalOutlierFactorParams {
                    seed,
                    ..Default::default()
                })
            }
            "one_class_svm" => DetectorParams::OneClassSvm(OneClassSvmParams {
                seed,
                ..Default::default()
            }),
            "host_group" => DetectorParams::HostGroup(HostGroupParams::default()),
            other => {
                return Err(DetectorError::Params(format!(
                    "unknown detector {other:?} (known: {})",
                    ALGORITHMS.join(", ")
                )));
            }
        })
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            DetectorParams::IsolationForest(_) => "isolation_forest",
            DetectorParams::LocalOutlierFactor(_) => "local_outlier_factor",
            DetectorParams::OneClassSvm(_) => "one_class_svm",
            DetectorParams::HostGroup(_) => "host_group",
        }
    }
}

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

    /// The threshold this rule puts on scores sorted in ascending order.
    pub fn threshold(&self, sorted: &[f64]) -> f64 {
        match *self {
            ThresholdRule::Contamination(rate) => metrics::sorted_quantile(sorted, 1.0 - rate),
            ThresholdRule::Quantile(q) => metrics::sorted_quantile(sorted, q),
        }
    }
}

/// What to fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub detector: DetectorParams,
    pub prep: PrepSpec,
    pub threshold: ThresholdRule,
}

/// Quantiles of a set of scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl ScoreSummary {
    /// The summary of scores sorted in ascending order.
    pub fn of(sorted: &[f64]) -> Self {
        ScoreSummary {
            p50: metrics::sorted_quantile(sorted, 0.5),
            p90: metrics::sorted_quantile(sorted, 0.9),
            p99: metrics::sorted_quantile(sorted, 0.99),
            max: metrics::sorted_quantile(sorted, 1.0),
        }
    }
}

/// What a model file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub algorithm: String,
    pub params: DetectorParams,
    pub prep: PrepSpec,
    pub training_rows: usize,
    /// The detector's input columns, after preprocessing.
    pub features: Vec<String>,
    pub threshold_rule: ThresholdRule,
    /// Scores above this are flagged.
    pub threshold: f64,
    /// Training rows scored to place the threshold.
    pub calibration_rows: usize,
    pub training_scores: ScoreSummary,
    /// Detector-specific facts of the fit (the One-Class SVM's solver...).
    pub fit: serde_json::Value,
    /// The training data's numeric features, for explanations and drift.
    #[serde(default)]
    pub profile: Vec<FeatureProfile>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
enum Fitted {
    IsolationForest(IsolationForest),
    LocalOutlierFactor(LocalOutlierFactor),
    OneClassSvm(OneClassSvm),
    HostGroup(HostGroup),
}

/// A fitted model: preprocessing, detector, threshold, metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    format: String,
    format_version: u32,
    pub metadata: Metadata,
    pub preprocessing: Preprocessor,
    detector: Fitted,
}

impl ModelSpec {
    pub fn fit(&self, data: &Dataset) -> Result<Model, DetectorError> {
        self.threshold.check()?;
        let preprocessing = Preprocessor::fit(&self.prep, data)?;
        // Scores of training rows the fit computed anyway (LOF's).
        let mut training_scores: Option<Vec<f64>> = None;
        let (detector, fit) = match &self.detector {
            DetectorParams::HostGroup(p) => (
                Fitted::HostGroup(p.fit(data.activity.as_ref())?),
                serde_json::json!({ "threshold": crate::group::THRESHOLD }),
            ),
            params => {
                let x = preprocessing.transform(data)?;
                match params {
                    DetectorParams::IsolationForest(p) => (
                        Fitted::IsolationForest(p.fit(x.view())?),
                        serde_json::json!({}),
                    ),
                    DetectorParams::LocalOutlierFactor(p) => {
                        let (m, factors) = p.fit_scored(x.view())?;
                        training_scores = Some(factors);
                        let fit = serde_json::json!({ "training_rows_kept": m.training_rows() });
                        (Fitted::LocalOutlierFactor(m), fit)
                    }
                    DetectorParams::OneClassSvm(p) => {
                        let m = p.fit(x.view())?;
                        let fit = serde_json::to_value(m.summary()).expect("summaries serialize");
                        (Fitted::OneClassSvm(m), fit)
                    }
                    DetectorParams::HostGroup(_) => unreachable!("matched above"),
                }
            }
        };
        let mut model = Model {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            metadata: Metadata {
                algorithm: self.detector.algorithm().into(),
                params: self.detector.clone(),
                prep: self.prep,
                training_rows: data.rows(),
                features: preprocessing.output_names(),
                threshold_rule: self.threshold,
                threshold: f64::NAN,
                calibration_rows: 0,
                training_scores: ScoreSummary::of(&[]),
                fit,
                profile: crate::profile::profile(&data.names, data.numeric.view()),
            },
            preprocessing,
            detector,
        };
        // Place the threshold on (a seeded sample of) the training scores.
        let scores = match training_scores {
            Some(scores) => scores,
            None => {
                let calibration = match &self.detector {
                    // The group detector compares hosts within a window: keep it whole.
                    DetectorParams::HostGroup(_) => None,
                    _ if data.rows() > CALIBRATION_ROWS => {
                        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed());
                        let mut rows =
                            rand::seq::index::sample(&mut rng, data.rows(), CALIBRATION_ROWS)
                                .into_vec();
                        rows.sort_unstable();
                        Some(data.select(&rows))
                    }
                    _ => None,
                };
                model.score(calibration.as_ref().unwrap_or(data))?.to_vec()
            }
        };
        let mut scores = scores;
        scores.sort_by(f64::total_cmp);
        model.metadata.calibration_rows = scores.len();
        model.metadata.training_scores = ScoreSummary::of(&scores);
        model.metadata.threshold = match self.detector {
            DetectorParams::HostGroup(_) => crate::group::THRESHOLD,
            _ => self.threshold.threshold(&scores),
        };
        Ok(model)
    }
}

impl ModelSpec {
    fn seed(&self) -> u64 {
        match &self.detector {
            DetectorParams::IsolationForest(p) => p.seed,
            DetectorParams::LocalOutlierFactor(p) => p.seed,
            DetectorParams::OneClassSvm(p) => p.seed,
            DetectorParams::HostGroup(_) => 0,
        }
    }
}

impl Model {
    pub fn algorithm(&self) -> &str {
        &self.metadata.algorithm
    }

    pub fn threshold(&self) -> f64 {
        self.metadata.threshold
    }

    /// One score per flow, higher meaning more anomalous.
    pub fn score(&self, data: &Dataset) -> Result<Array1<f64>, DetectorError> {
        let x = match &self.detector {
            Fitted::HostGroup(g) => return Ok(g.analyze(activity(data)?).flow_scores),
            _ => self.preprocessing.transform(data)?,
        };
        match &self.detector {
            Fitted::IsolationForest(m) => m.score(x.view()),
            Fitted::LocalOutlierFactor(m) => m.score(x.view()),
            Fitted::OneClassSvm(m) => m.score(x.view()),
            Fitted::HostGroup(_) => unreachable!("returned above"),
        }
    }

    /// The features that weighed most in the scores of `rows` of `data`,
    /// at most `top` each, heaviest first (numeric features; none for the
    /// group detector, whose findings are per host). Isolation Forest
    /// reads its isolation paths; the other detectors rank how far each
    /// value stands from the training median.
    pub fn explain(
        &self,
        data: &Dataset,
        rows: &[usize],
        top: usize,
    ) -> Result<Vec<Vec<Contribution>>, DetectorError> {
        if matches!(self.detector, Fitted::HostGroup(_)) || self.metadata.profile.is_empty() {
            return Ok(vec![Vec::new(); rows.len()]);
        }
        let picked = data.select(rows);
        let x = self.preprocessing.transform(&picked)?;
        let profile = &self.metadata.profile;
        Ok((0..rows.len())
            .map(|i| {
                let values = picked.numeric.row(i);
                let weights: Vec<f64> = match &self.detector {
                    Fitted::IsolationForest(m) => m.path_weights(x.row(i)),
                    _ => profile
                        .iter()
                        .zip(values)
                        .map(|(p, v)| p.deviation(*v))
                        .collect(),
                };
                let mut contributions: Vec<Contribution> = profile
                    .iter()
                    .zip(values)
                    .zip(weights)
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
            .collect())
    }

    /// The group detector's per-host findings; `None` for other detectors.
    pub fn analyze_hosts(&self, data: &Dataset) -> Result<Option<GroupAnalysis>, DetectorError> {
        match &self.detector {
            Fitted::HostGroup(g) => Ok(Some(g.analyze(activity(data)?))),
            _ => Ok(None),
        }
    }

    /// The model file.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a fitted model always serializes")
    }

    /// Reads a model file, refusing other formats and versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DetectorError> {
        #[derive(Deserialize)]
        struct Head {
            format: String,
            format_version: u32,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| DetectorError::Format(format!("not a nadir model file: {e}")))?;
        if head.format != FORMAT {
            return Err(DetectorError::Format(format!(
                "format {:?}, expected {FORMAT:?}",
                head.format
            )));
        }
        if head.format_version != FORMAT_VERSION {
            return Err(DetectorError::Format(format!(
                "model format version {} (this build reads {FORMAT_VERSION})",
                head.format_version
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| DetectorError::Format(e.to_string()))
    }
}

fn activity(data: &Dataset) -> Result<&crate::prep::Activity, DetectorError> {
    data.activity.as_ref().ok_or_else(crate::group::no_activity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prep::{Activity, Categorical, Scaling};
    use ndarray::Array2;
    use rand::RngExt;

    fn flows(n: usize, seed: u64) -> Dataset {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let numeric = Array2::from_shape_fn((n, 3), |(i, j)| {
            if i % 50 == 49 {
                20.0 + j as f64
            } else {
                rng.random::<f64>() * (j + 1) as f64
            }
        });
        let protocols: Vec<&str> = (0..n)
            .map(|i| if i % 3 == 0 { "udp" } else { "tcp" })
            .collect();
        let hosts: Vec<String> = (0..10).map(|h| format!("10.0.0.{h}")).collect();
        Dataset {
            names: vec!["a".into(), "b".into(), "c".into()],
            numeric,
            categorical: vec![Categorical::from_values("protocol", protocols)],
            activity: Some(Activity {
                hosts,
                src: (0..n).map(|i| (i % 5) as u32).collect(),
                dst: (0..n).map(|i| (5 + i % 5) as u32).collect(),
                start_ns: (0..n).map(|i| i as i64 * 1_000_000_000).collect(),
                bytes: vec![100.0; n],
            }),
        }
    }

    #[test]
    fn every_detector_fits_saves_and_reloads_bit_for_bit() {
        let data = flows(600, 1);
        for name in ALGORITHMS {
            let spec = ModelSpec {
                detector: DetectorParams::named(name, 7).unwrap(),
                prep: PrepSpec {
                    scaling: Scaling::Robust,
                    ..Default::default()
                },
                threshold: ThresholdRule::Contamination(0.05),
            };
            let model = spec.fit(&data).unwrap();
            assert_eq!(model.algorithm(), name);
            assert!(model.threshold().is_finite(), "{name}");
            let bytes = model.to_bytes();
            assert_eq!(bytes, spec.fit(&data).unwrap().to_bytes(), "{name}");
            let loaded = Model::from_bytes(&bytes).unwrap();
            let (a, b) = (model.score(&data).unwrap(), loaded.score(&data).unwrap());
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{name}"
            );
            if name != "host_group" {
                assert!(
                    model
                        .metadata
                        .features
                        .contains(&"protocol=udp".to_string())
                );
                let flagged = a.iter().filter(|s| **s > model.threshold()).count();
                assert!((20..=45).contains(&flagged), "{name}: {flagged}");
            }
        }
    }

    #[test]
    fn thresholds_follow_their_rule() {
        let data = flows(1000, 2);
        let spec = |rule| ModelSpec {
            detector: DetectorParams::named("isolation_forest", 1).unwrap(),
            prep: PrepSpec::default(),
            threshold: rule,
        };
        let by_rate = spec(ThresholdRule::Contamination(0.1)).fit(&data).unwrap();
        let by_quantile = spec(ThresholdRule::Quantile(0.9)).fit(&data).unwrap();
        assert_eq!(by_rate.threshold(), by_quantile.threshold());
        assert_eq!(by_rate.metadata.calibration_rows, 1000);
        assert!(spec(ThresholdRule::Quantile(1.5)).fit(&data).is_err());
    }

    #[test]
    fn foreign_or_future_files_are_refused_by_name() {
        let data = flows(100, 3);
        let spec = ModelSpec {
            detector: DetectorParams::named("isolation_forest", 1).unwrap(),
            prep: PrepSpec::default(),
            threshold: ThresholdRule::Contamination(0.1),
        };
        let text = String::from_utf8(spec.fit(&data).unwrap().to_bytes()).unwrap();
        let future = text.replace("\"format_version\":1", "\"format_version\":2");
        let err = Model::from_bytes(future.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        assert!(Model::from_bytes(b"{}").is_err());
        assert!(DetectorParams::named("knn", 1).is_err());
    }
}
