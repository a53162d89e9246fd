//! The common interface over every detector, and the model file.
//!
//! A [`ModelSpec`] (which detector with which parameters, how to
//! preprocess, how to set the threshold) is fitted on a [`Dataset`] into a
//! [`Model`]: the fitted preprocessing, the fitted detector, the operating
//! threshold and metadata. `Model::score` preprocesses and scores new flows
//! exactly as training did. Fitting and scoring go through the [`Fit`] and
//! [`Score`] traits; the detector enums of [`crate::registry`] serve only
//! the recorded spec and the model file.
//!
//! The model file is JSON (`to_bytes`/`from_bytes`), documented in
//! `docs/models.md`: `format` ("nadir-model"), `format_version`,
//! `metadata`, `preprocessing` and `detector` (tagged by `algorithm`).
//! Numbers round-trip exactly, so a loaded model scores bit for bit as the
//! one that was saved; equal inputs give equal bytes.

use ndarray::Array1;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::detector::{Fit, Granularity, Input, Score};
use crate::hosts::GroupAnalysis;
use crate::prep::{Dataset, PrepSpec, Preprocessor};
use crate::profile::FeatureProfile;
use crate::registry::FittedDetector;
use crate::{DetectorError, metrics};

pub use crate::detector::Contribution;
pub use crate::registry::{Algorithm, DetectorParams};

pub const FORMAT: &str = "nadir-model";
pub const FORMAT_VERSION: u32 = 1;

/// Training rows scored to place the threshold, at most (a seeded sample;
/// LOF uses the factors of the rows it kept, which its fit computes).
pub const CALIBRATION_ROWS: usize = 20_000;

pub use crate::detector::ThresholdRule;

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
    pub algorithm: Algorithm,
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
    /// What the hosts of the training window did, for the behavioural
    /// detectors' thresholds; none where the window is the evaluated
    /// traffic itself (set by the train stage, not by the fit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::behaviour::Baseline>,
}

/// A fitted model: preprocessing, detector, threshold, metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    format: String,
    format_version: u32,
    pub metadata: Metadata,
    pub preprocessing: Preprocessor,
    detector: FittedDetector,
}

impl ModelSpec {
    /// Checks the parameters and the threshold rule, fits the
    /// preprocessing and the detector on `data`, and places the threshold
    /// on the training scores: those the fit computed (LOF), else the
    /// scores of a seeded sample of at most [`CALIBRATION_ROWS`] training
    /// flows (all of them for a detector of [`Granularity::Host`], which
    /// compares hosts within the window).
    pub fn fit(&self, data: &Dataset) -> Result<Model, DetectorError> {
        self.threshold.check()?;
        let params = self.detector.check()?;
        let preprocessing = Preprocessor::fit(&self.prep, data)?;
        let profile = crate::profile::profile(&data.names, data.numeric.view());
        let (detector, training_scores) =
            params.fit_scored(&Input::new(data, &preprocessing, &profile))?;
        let fit = detector.as_score().fit_facts();
        let mut model = Model {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            metadata: Metadata {
                algorithm: self.detector.algorithm(),
                params: self.detector.clone(),
                prep: self.prep,
                training_rows: data.rows(),
                features: preprocessing.output_names(),
                threshold_rule: self.threshold,
                threshold: f64::NAN,
                calibration_rows: 0,
                training_scores: ScoreSummary::of(&[]),
                fit,
                profile,
                baseline: None,
            },
            preprocessing,
            detector,
        };
        let mut scores = match training_scores {
            Some(scores) => scores,
            None => {
                let sample = match model.detector().granularity() {
                    Granularity::Flow if data.rows() > CALIBRATION_ROWS => {
                        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.detector.seed());
                        let mut rows =
                            rand::seq::index::sample(&mut rng, data.rows(), CALIBRATION_ROWS)
                                .into_vec();
                        rows.sort_unstable();
                        Some(data.select(&rows))
                    }
                    Granularity::Flow | Granularity::Host => None,
                };
                model.score(sample.as_ref().unwrap_or(data))?.to_vec()
            }
        };
        scores.sort_by(f64::total_cmp);
        model.metadata.calibration_rows = scores.len();
        model.metadata.training_scores = ScoreSummary::of(&scores);
        model.metadata.threshold = model.detector().threshold(&self.threshold, &scores);
        Ok(model)
    }
}

impl Model {
    pub fn algorithm(&self) -> Algorithm {
        self.metadata.algorithm
    }

    /// Scores above this are flagged.
    pub fn threshold(&self) -> f64 {
        self.metadata.threshold
    }

    /// The fitted detector, through its trait.
    pub fn detector(&self) -> &dyn Score {
        self.detector.as_score()
    }

    /// `data` as the detector sees it: through the fitted preprocessing,
    /// explained against the training profile.
    pub fn input<'a>(&'a self, data: &'a Dataset) -> Input<'a> {
        Input::new(data, &self.preprocessing, &self.metadata.profile)
    }

    /// One score per flow, higher meaning more anomalous.
    pub fn score(&self, data: &Dataset) -> Result<Array1<f64>, DetectorError> {
        self.detector().score(&self.input(data))
    }

    /// The features that weighed most in the scores of `rows` of `data`,
    /// at most `top` each, heaviest first (numeric features; none for the
    /// group detector, whose findings are per host, nor for a model file
    /// without a training profile). Isolation Forest reads its isolation
    /// paths; the other detectors rank how far each value stands from the
    /// training median.
    pub fn explain(
        &self,
        data: &Dataset,
        rows: &[usize],
        top: usize,
    ) -> Result<Vec<Vec<Contribution>>, DetectorError> {
        if self.metadata.profile.is_empty() {
            return Ok(vec![Vec::new(); rows.len()]);
        }
        // A partition the model flagged nothing in has nothing to explain
        // (and no rows to score).
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let picked = data.select(rows);
        self.detector().explain(&self.input(&picked), top)
    }

    /// The group detector's per-host findings; `None` for other detectors.
    pub fn analyze_hosts(&self, data: &Dataset) -> Result<Option<GroupAnalysis>, DetectorError> {
        self.detector().analyze_hosts(&self.input(data))
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

    fn spec(algorithm: Algorithm, seed: u64, threshold: ThresholdRule) -> ModelSpec {
        ModelSpec {
            detector: DetectorParams::defaults(algorithm, seed),
            prep: PrepSpec {
                scaling: Scaling::Robust,
                ..Default::default()
            },
            threshold,
        }
    }

    #[test]
    fn every_detector_fits_saves_and_reloads_bit_for_bit() {
        let data = flows(600, 1);
        for algorithm in Algorithm::ALL {
            let spec = spec(algorithm, 7, ThresholdRule::Contamination(0.05));
            let model = spec.fit(&data).unwrap();
            assert_eq!(model.algorithm(), algorithm);
            assert!(model.threshold().is_finite(), "{algorithm}");
            let bytes = model.to_bytes();
            assert_eq!(bytes, spec.fit(&data).unwrap().to_bytes(), "{algorithm}");
            let loaded = Model::from_bytes(&bytes).unwrap();
            let (a, b) = (model.score(&data).unwrap(), loaded.score(&data).unwrap());
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{algorithm}"
            );
            if model.detector().granularity() == Granularity::Flow {
                assert!(
                    model
                        .metadata
                        .features
                        .contains(&"protocol=udp".to_string())
                );
                let flagged = a.iter().filter(|s| **s > model.threshold()).count();
                assert!((20..=45).contains(&flagged), "{algorithm}: {flagged}");
            }
        }
    }

    #[test]
    fn thresholds_follow_their_rule() {
        let data = flows(1000, 2);
        let spec = |rule| ModelSpec {
            detector: DetectorParams::defaults(Algorithm::IsolationForest, 1),
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
        let spec = spec(
            Algorithm::IsolationForest,
            1,
            ThresholdRule::Contamination(0.1),
        );
        let text = String::from_utf8(spec.fit(&data).unwrap().to_bytes()).unwrap();
        assert!(text.contains("\"metadata\":{\"algorithm\":\"isolation_forest\""));
        let future = text.replace("\"format_version\":1", "\"format_version\":2");
        let err = Model::from_bytes(future.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        assert!(Model::from_bytes(b"{}").is_err());
    }

    #[test]
    fn unknown_algorithm_names_are_refused_listing_the_known_ones() {
        let err = "knn".parse::<Algorithm>().unwrap_err();
        assert_eq!(err, DetectorError::UnknownAlgorithm("knn".into()));
        assert_eq!(
            err.to_string(),
            "unknown detector \"knn\" (known: isolation_forest, local_outlier_factor, \
             one_class_svm, host_group)"
        );
        // Names are exact: no other case, no padding.
        assert!("Isolation_Forest".parse::<Algorithm>().is_err());
        assert!(" host_group".parse::<Algorithm>().is_err());
        // Nor does a recorded spec or a model file name an unknown detector.
        let recorded = r#"{"algorithm":"knn","params":{}}"#;
        let err = serde_json::from_str::<DetectorParams>(recorded).unwrap_err();
        assert!(err.to_string().contains("knn"), "{err}");
        assert!(serde_json::from_str::<Algorithm>("\"knn\"").is_err());
    }

    #[test]
    fn algorithms_round_trip_through_their_names() {
        let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            [
                "isolation_forest",
                "local_outlier_factor",
                "one_class_svm",
                "host_group"
            ]
        );
        for algorithm in Algorithm::ALL {
            let name = algorithm.name();
            assert_eq!(algorithm.to_string(), name);
            assert_eq!(name.parse::<Algorithm>(), Ok(algorithm));
            assert_eq!(algorithm, name);
            let json = serde_json::to_string(&algorithm).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), algorithm);
            let params = DetectorParams::defaults(algorithm, 5);
            assert_eq!(params.algorithm(), algorithm);
            // The recorded spec names the algorithm the same way.
            let recorded = serde_json::to_value(&params).unwrap();
            assert_eq!(recorded["algorithm"], name);
            let read: DetectorParams = serde_json::from_value(recorded).unwrap();
            assert_eq!(read, params);
        }
    }

    #[test]
    fn bad_parameters_are_refused_by_name_before_any_fit() {
        use crate::HostGroupParams;
        use crate::iforest::IsolationForestParams;
        use crate::lof::LocalOutlierFactorParams;
        use crate::ocsvm::{Gamma, OneClassSvmParams};
        let bad: Vec<(DetectorParams, &str, &str)> = vec![
            (
                DetectorParams::IsolationForest(IsolationForestParams {
                    trees: 0,
                    ..Default::default()
                }),
                "trees",
                "0",
            ),
            (
                DetectorParams::IsolationForest(IsolationForestParams {
                    sample_size: 1,
                    ..Default::default()
                }),
                "sample_size",
                "1",
            ),
            (
                DetectorParams::IsolationForest(IsolationForestParams {
                    max_features: 1.5,
                    ..Default::default()
                }),
                "max_features",
                "1.5",
            ),
            (
                DetectorParams::LocalOutlierFactor(LocalOutlierFactorParams {
                    neighbours: 0,
                    ..Default::default()
                }),
                "neighbours",
                "0",
            ),
            (
                DetectorParams::LocalOutlierFactor(LocalOutlierFactorParams {
                    max_train: 0,
                    ..Default::default()
                }),
                "max_train",
                "0",
            ),
            (
                DetectorParams::OneClassSvm(OneClassSvmParams {
                    nu: 0.0,
                    ..Default::default()
                }),
                "nu",
                "0",
            ),
            (
                DetectorParams::OneClassSvm(OneClassSvmParams {
                    gamma: Gamma::Value(-2.0),
                    ..Default::default()
                }),
                "gamma",
                "-2",
            ),
            (
                DetectorParams::OneClassSvm(OneClassSvmParams {
                    tolerance: f64::NAN,
                    ..Default::default()
                }),
                "tolerance",
                "NaN",
            ),
            (
                DetectorParams::OneClassSvm(OneClassSvmParams {
                    components: 0,
                    ..Default::default()
                }),
                "components",
                "0",
            ),
            (
                DetectorParams::OneClassSvm(OneClassSvmParams {
                    epochs: 0,
                    ..Default::default()
                }),
                "epochs",
                "0",
            ),
            (
                DetectorParams::HostGroup(HostGroupParams {
                    bucket_secs: 0,
                    ..Default::default()
                }),
                "bucket_secs",
                "0",
            ),
            (
                DetectorParams::HostGroup(HostGroupParams {
                    mad_threshold: -1.0,
                    ..Default::default()
                }),
                "mad_threshold",
                "-1",
            ),
            (
                DetectorParams::HostGroup(HostGroupParams {
                    dbscan_sensitivity: 1.0,
                    ..Default::default()
                }),
                "dbscan_sensitivity",
                "1",
            ),
        ];
        // No rows at all: any fit would fail on them, so the error says
        // the parameters were checked first.
        let nothing = Dataset::numeric(vec!["a".into()], Array2::zeros((0, 1)));
        for (params, name, value) in bad {
            let Err(DetectorError::Params(message)) = params.check() else {
                panic!("{params:?} passed its check");
            };
            assert!(
                message.starts_with(&format!("{name} must be ")),
                "{message}"
            );
            assert!(message.ends_with(&format!("not {value}")), "{message}");
            let spec = ModelSpec {
                detector: params,
                prep: PrepSpec::default(),
                threshold: ThresholdRule::Contamination(0.1),
            };
            assert_eq!(spec.fit(&nothing), Err(DetectorError::Params(message)));
        }
        for algorithm in Algorithm::ALL {
            assert!(DetectorParams::defaults(algorithm, 1).check().is_ok());
        }
    }

    /// Every algorithm through the traits alone: the loop knows no detector.
    #[test]
    fn every_algorithm_fits_scores_and_explains_through_the_traits() {
        let (data, test) = (flows(800, 4), flows(300, 5));
        let prep = Preprocessor::fit(&PrepSpec::default(), &data).unwrap();
        let profile = crate::profile::profile(&data.names, data.numeric.view());
        let (train_input, test_input) = (
            Input::new(&data, &prep, &profile),
            Input::new(&test, &prep, &profile),
        );
        for algorithm in Algorithm::ALL {
            let params = DetectorParams::defaults(algorithm, 3).check().unwrap();
            let fitted = params.fit(&train_input).unwrap();
            let detector: &dyn Score = fitted.as_score();
            let scores = detector.score(&test_input).unwrap();
            assert_eq!(scores.len(), test.rows(), "{algorithm}");
            assert!(scores.iter().all(|s| s.is_finite()), "{algorithm}");
            let explained = detector.explain(&test_input, 2).unwrap();
            assert_eq!(explained.len(), test.rows(), "{algorithm}");
            assert!(explained.iter().all(|e| e.len() <= 2), "{algorithm}");
            let hosts = detector.analyze_hosts(&test_input).unwrap();
            match detector.granularity() {
                Granularity::Flow => {
                    assert!(hosts.is_none(), "{algorithm}");
                    // The planted rows are explained by their features.
                    assert!(!explained[49].is_empty(), "{algorithm}");
                }
                Granularity::Host => {
                    assert_eq!(hosts.unwrap().flow_scores, scores, "{algorithm}");
                    assert!(explained.iter().all(Vec::is_empty), "{algorithm}");
                }
            }
            // A model scores through the same traits.
            let spec = ModelSpec {
                detector: DetectorParams::defaults(algorithm, 3),
                prep: PrepSpec::default(),
                threshold: ThresholdRule::Contamination(0.05),
            };
            let model = spec.fit(&data).unwrap();
            assert_eq!(model.detector().granularity(), detector.granularity());
            // Nothing flagged in a partition: nothing to explain, no error.
            assert!(
                model.explain(&test, &[], 2).unwrap().is_empty(),
                "{algorithm}"
            );
            let again = model.score(&test).unwrap();
            assert!(
                again
                    .iter()
                    .zip(&scores)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "{algorithm}"
            );
            let rows = [3, 49, 99];
            let picked = model.explain(&test, &rows, 2).unwrap();
            for (row, contributions) in rows.iter().zip(&picked) {
                assert_eq!(contributions, &explained[*row], "{algorithm} row {row}");
            }
        }
    }

    #[test]
    fn the_host_group_gives_every_flow_its_source_hosts_score() {
        // 8 hosts, 20 flows a minute each to 2 peers for 5 minutes; host 3
        // reaches 100 peers in minute 2.
        let (mut src, mut dst, mut start_ns) = (vec![], vec![], vec![]);
        for minute in 0..5i64 {
            for h in 0..8u32 {
                let (flows, peers) = if h == 3 && minute == 2 {
                    (100, 100)
                } else {
                    (20, 2)
                };
                for f in 0..flows {
                    src.push(h);
                    dst.push(8 + f % peers);
                    start_ns.push(minute * 60_000_000_000 + i64::from(f) * 1_000_000);
                }
            }
        }
        let n = src.len();
        let data = Dataset {
            activity: Some(Activity {
                hosts: (0..108).map(|h| format!("10.0.0.{h}")).collect(),
                src,
                dst,
                start_ns,
                bytes: vec![500.0; n],
            }),
            ..Dataset::numeric(Vec::new(), Array2::zeros((n, 0)))
        };
        let model = spec(Algorithm::HostGroup, 1, ThresholdRule::Contamination(0.3))
            .fit(&data)
            .unwrap();
        assert_eq!(model.detector().granularity(), Granularity::Host);
        // The rule does not move the group detector's threshold.
        assert_eq!(model.threshold(), crate::group::THRESHOLD);
        let scores = model.score(&data).unwrap();
        let a = data.activity.as_ref().unwrap();
        let bucket = |i: usize| a.start_ns[i] / 60_000_000_000;
        let mut by_host_and_minute = std::collections::BTreeMap::new();
        for (i, s) in scores.iter().enumerate() {
            let first = *by_host_and_minute
                .entry((a.src[i], bucket(i)))
                .or_insert(*s);
            assert_eq!(first.to_bits(), s.to_bits(), "flow {i}");
            let odd = a.src[i] == 3 && bucket(i) == 2;
            assert_eq!(*s > model.threshold(), odd, "flow {i}: {s}");
        }
        let found = model.analyze_hosts(&data).unwrap().unwrap();
        assert_eq!(found.hosts.len(), 1);
        assert_eq!(found.hosts[0].host, "10.0.0.3");
        assert_eq!(found.hosts[0].score, by_host_and_minute[&(3, 2)]);
        assert!(
            model
                .explain(&data, &[0, 1], 3)
                .unwrap()
                .iter()
                .all(Vec::is_empty)
        );
    }
}
