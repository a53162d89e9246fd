//! The analysis settings: how flows are made and detectors fitted and
//! judged. The workers read them from `NADIR_*` variables and `nadir
//! analyze` takes the same ones; no service is needed to read them.

use std::time::Duration;

use nadir_config::{ConfigError, DASHBOARD_VARIABLES, Env, ProcessEnv, REQUIRED, VARIABLES};
use nadir_config::{optional, parsed, seconds};
use nadir_contract::messages::TrainingWindow;
use nadir_detectors::Algorithm;

/// How flows are made and detectors fitted and judged: the settings the
/// workers and `nadir analyze` share (no service is needed to read them).
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Seed of every random choice a stage makes (model fitting).
    pub seed: u64,
    /// Share of flows the operating threshold flags as anomalous.
    pub contamination: f64,
    /// Detectors the train stage fits, in this order.
    pub detectors: Vec<Algorithm>,
    /// Scaling of numeric features before fitting.
    pub scaling: nadir_detectors::Scaling,
    /// Flow meter: time without a packet that ends a flow.
    pub flow_idle_timeout: Duration,
    /// Flow meter: time after its first packet that cuts a long flow.
    pub flow_active_timeout: Duration,
    /// The default training window and hold-out (`pipeline.start` may
    /// override each field).
    pub window: TrainingWindow,
    /// The labelled metric the champion is chosen by.
    pub selection_metric: String,
    /// Flow meter: flows open at once before the oldest is evicted.
    pub max_open_flows: usize,
    /// Flow meter: how far after the clock a packet's timestamp may be.
    pub max_clock_jump: Duration,
    /// What an object read whole may take.
    pub limits: crate::transform::Limits,
    /// Train: flows the training window may hold (before any hold-out);
    /// a larger window is refused before its partitions are fetched.
    pub max_training_rows: u64,
}

/// Every variable [`Analysis`] reads.
pub const ANALYSIS_VARIABLES: &[&str] = &[
    "NADIR_SEED",
    "NADIR_CONTAMINATION",
    "NADIR_DETECTORS",
    "NADIR_SCALING",
    "NADIR_FLOW_IDLE_TIMEOUT_SECS",
    "NADIR_FLOW_ACTIVE_TIMEOUT_SECS",
    "NADIR_TRAIN_PARTITIONS",
    "NADIR_TRAIN_SPAN_HOURS",
    "NADIR_HOLDOUT",
    "NADIR_SELECTION_METRIC",
    "NADIR_MAX_OPEN_FLOWS",
    "NADIR_MAX_CLOCK_JUMP_SECS",
    "NADIR_MAX_TABLE_BYTES",
    "NADIR_MAX_GZIP_RATIO",
    "NADIR_MAX_COLUMNS",
    "NADIR_MAX_LINE_BYTES",
    "NADIR_MAX_TRAINING_ROWS",
];

/// What a nadir binary reads from its environment: every variable, and
/// whether it is required. For the deployment checks (`nadir variables`).
pub fn variables_of(binary: &str) -> Option<Vec<(&'static str, bool)>> {
    let shared_with_dashboard = |v: &str| {
        v.starts_with("NADIR_S3_") || v.starts_with("NADIR_BUCKET_") || v == "NADIR_DATABASE_URL"
    };
    match binary {
        "nadir" | "nadir-ingest" | "nadir-transform" | "nadir-train" | "nadir-eval" => Some(
            VARIABLES
                .iter()
                .map(|v| (*v, REQUIRED.contains(v)))
                .chain(ANALYSIS_VARIABLES.iter().map(|v| (*v, false)))
                .collect(),
        ),
        "nadir-dashboard" => Some(
            VARIABLES
                .iter()
                .copied()
                .filter(|v| shared_with_dashboard(v))
                .map(|v| (v, REQUIRED.contains(&v)))
                .chain(DASHBOARD_VARIABLES.iter().map(|v| (*v, false)))
                .collect(),
        ),
        _ => None,
    }
}

/// The metrics the champion can be chosen by (the eval report's names).
pub const SELECTION_METRICS: [&str; 4] =
    ["average_precision", "roc_auc", "recall_at_1pct_fpr", "f1"];

/// A count setting that must be positive.
fn at_least_one<T>(env: &dyn Env, var: &'static str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + From<u8> + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let value: T = parsed(env, var, default)?;
    if value < T::from(1) {
        return Err(ConfigError::Invalid {
            var,
            value: value.to_string(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(value)
}

impl Analysis {
    /// Reads the analysis settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&ProcessEnv)
    }

    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let contamination: f64 = parsed(env, "NADIR_CONTAMINATION", 0.02)?;
        if !(contamination > 0.0 && contamination < 0.5) {
            return Err(ConfigError::Invalid {
                var: "NADIR_CONTAMINATION",
                value: contamination.to_string(),
                reason: "must be a share between 0 and 0.5, e.g. 0.02".into(),
            });
        }
        let detectors = detectors(env)?;
        let scaling = parsed(env, "NADIR_SCALING", nadir_detectors::Scaling::Standard)?;
        let flow_idle_timeout = seconds(env, "NADIR_FLOW_IDLE_TIMEOUT_SECS", 120)?;
        let flow_active_timeout = seconds(env, "NADIR_FLOW_ACTIVE_TIMEOUT_SECS", 1800)?;
        if flow_idle_timeout.is_zero() || flow_active_timeout < flow_idle_timeout {
            return Err(ConfigError::Invalid {
                var: "NADIR_FLOW_ACTIVE_TIMEOUT_SECS",
                value: flow_active_timeout.as_secs().to_string(),
                reason: format!(
                    "the active timeout must be at least the idle timeout ({} s), and both above 0",
                    flow_idle_timeout.as_secs()
                ),
            });
        }
        let window = TrainingWindow {
            partitions: optional(env, "NADIR_TRAIN_PARTITIONS")?,
            span_hours: optional(env, "NADIR_TRAIN_SPAN_HOURS")?,
            holdout: optional(env, "NADIR_HOLDOUT")?,
        };
        if let Err(e) = window.check() {
            return Err(ConfigError::Invalid {
                var: "NADIR_TRAIN_PARTITIONS / NADIR_TRAIN_SPAN_HOURS / NADIR_HOLDOUT",
                value: format!("{window:?}"),
                reason: e.to_string(),
            });
        }
        let selection_metric = env
            .get("NADIR_SELECTION_METRIC")
            .unwrap_or_else(|| "average_precision".into());
        if !SELECTION_METRICS.contains(&selection_metric.as_str()) {
            return Err(ConfigError::Invalid {
                var: "NADIR_SELECTION_METRIC",
                value: selection_metric,
                reason: format!("expected one of {}", SELECTION_METRICS.join(", ")),
            });
        }
        Ok(Analysis {
            window,
            selection_metric,
            seed: parsed(env, "NADIR_SEED", 42)?,
            contamination,
            detectors,
            scaling,
            flow_idle_timeout,
            flow_active_timeout,
            max_open_flows: at_least_one(
                env,
                "NADIR_MAX_OPEN_FLOWS",
                nadir_flowmeter::MeterConfig::default().max_open_flows,
            )?,
            max_clock_jump: seconds(env, "NADIR_MAX_CLOCK_JUMP_SECS", 30 * 24 * 3600)?,
            limits: crate::transform::Limits {
                table_bytes: at_least_one(env, "NADIR_MAX_TABLE_BYTES", 2 << 30)?,
                gzip_ratio: at_least_one(env, "NADIR_MAX_GZIP_RATIO", 1000)?,
                columns: at_least_one(env, "NADIR_MAX_COLUMNS", 10_000)?,
                line_bytes: at_least_one(env, "NADIR_MAX_LINE_BYTES", 1 << 20)?,
            },
            max_training_rows: at_least_one(env, "NADIR_MAX_TRAINING_ROWS", 5_000_000)?,
        })
    }
}

/// `NADIR_DETECTORS`: a comma-separated list of algorithm names; every
/// registered detector when unset.
fn detectors(env: &dyn Env) -> Result<Vec<Algorithm>, ConfigError> {
    let Some(list) = env.get("NADIR_DETECTORS") else {
        return Ok(Algorithm::ALL.to_vec());
    };
    let invalid = |value: &str| ConfigError::Invalid {
        var: "NADIR_DETECTORS",
        value: value.to_string(),
        reason: format!(
            "expected a comma-separated list of {}",
            Algorithm::ALL.map(Algorithm::name).join(", ")
        ),
    };
    let detectors = list
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<Algorithm>().map_err(|_| invalid(d)))
        .collect::<Result<Vec<_>, _>>()?;
    if detectors.is_empty() {
        return Err(invalid(""));
    }
    Ok(detectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_variable_read_here_is_listed() {
        let source = include_str!("settings.rs");
        let named = nadir_config::variables_named_in(source);
        for name in &named {
            assert!(
                ANALYSIS_VARIABLES.contains(&name.as_str()) || VARIABLES.contains(&name.as_str()),
                "{name} is read but not listed"
            );
        }
        let seen = named.len();
        assert!(seen >= 10, "{seen}");
        let dashboard = variables_of("nadir-dashboard").unwrap();
        assert!(dashboard.contains(&("NADIR_DATABASE_URL", true)));
        assert!(!dashboard.iter().any(|(v, _)| *v == "NADIR_NATS_URL"));
        assert!(!dashboard.iter().any(|(v, _)| *v == "NADIR_DETECTORS"));
        let train = variables_of("nadir-train").unwrap();
        assert!(train.contains(&("NADIR_DETECTORS", false)));
        assert!(train.contains(&("NADIR_NATS_URL", true)));
    }

    #[test]
    fn a_malformed_analysis_setting_names_the_variable() {
        let complete: HashMap<String, String> = HashMap::new();
        let mut e = complete.clone();
        e.insert("NADIR_DETECTORS".into(), "isolation_forest,knn".into());
        let err = Analysis::from(&e).unwrap_err().to_string();
        assert!(err.contains("NADIR_DETECTORS=\"knn\""), "{err}");
        assert!(err.contains("one_class_svm"), "{err}");

        let mut e = complete.clone();
        e.insert("NADIR_SCALING".into(), "minmax".into());
        let err = Analysis::from(&e).unwrap_err().to_string();
        assert!(err.contains("NADIR_SCALING"), "{err}");
    }

    #[test]
    fn the_input_limits_have_defaults_and_must_be_positive() {
        let none: HashMap<String, String> = HashMap::new();
        let analysis = Analysis::from(&none).unwrap();
        assert_eq!(analysis.limits, crate::transform::Limits::default());
        assert_eq!(
            (analysis.limits.columns, analysis.limits.line_bytes),
            (10_000, 1 << 20)
        );
        assert_eq!(analysis.max_training_rows, 5_000_000);
        for var in [
            "NADIR_MAX_COLUMNS",
            "NADIR_MAX_LINE_BYTES",
            "NADIR_MAX_TRAINING_ROWS",
        ] {
            let mut e = none.clone();
            e.insert(var.into(), "0".into());
            let err = Analysis::from(&e).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains("at least 1"), "{err}");
        }
        let mut e = none.clone();
        e.insert("NADIR_MAX_COLUMNS".into(), "200000".into());
        e.insert("NADIR_MAX_TRAINING_ROWS".into(), "100".into());
        let analysis = Analysis::from(&e).unwrap();
        assert_eq!(analysis.limits.columns, 200_000);
        assert_eq!(analysis.max_training_rows, 100);
    }

    #[test]
    fn detectors_default_to_all_four_and_can_be_chosen() {
        let complete: HashMap<String, String> = HashMap::new();
        let analysis = Analysis::from(&complete).unwrap();
        assert_eq!(analysis.detectors, Algorithm::ALL);
        assert_eq!(analysis.scaling, nadir_detectors::Scaling::Standard);
        let mut e = complete.clone();
        e.insert(
            "NADIR_DETECTORS".into(),
            " isolation_forest , host_group".into(),
        );
        e.insert("NADIR_SCALING".into(), "robust".into());
        let analysis = Analysis::from(&e).unwrap();
        assert_eq!(
            analysis.detectors,
            [Algorithm::IsolationForest, Algorithm::HostGroup]
        );
        assert_eq!(analysis.scaling, nadir_detectors::Scaling::Robust);
    }
}
