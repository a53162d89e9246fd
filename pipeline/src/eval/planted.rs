//! Choosing a champion without labels: attacks planted among the run's
//! flows.
//!
//! A run with no labelled flow and no analyst verdict still has to say
//! which detector to trust. The attack flows of a small generated capture
//! (every attack kind of `nadir gen-capture`, a fixed seed, through the
//! same flow meter) are scored by every model beside the flows the run
//! evaluates, which count as benign: each detector's detection rate
//! (recall), average precision and ROC-AUC on that mix are then what the
//! selection rule reads. The planted flows live only here, in memory: they
//! never reach SILVER, the scores or the findings. Labels and feedback
//! always win over this estimate. Pure.

use nadir_detectors::Model;
use nadir_flowmeter::MeterConfig;
use nadir_flows::FlowTable;
use nadir_flows::capture::capture_to_silver;
use nadir_flows::labels::{GroundTruth, is_attack};
use nadir_trafficgen::{Attack, Config};

use super::judge::Labelled;
use crate::report::{LabelledMetrics, Planted};

/// The generated capture's seed: the same planted flows in every run.
pub const SEED: u64 = 20_261_202;

const METHOD: &str = "the attack flows of a generated capture (nadir gen-capture: 20 hosts, \
    120 s, every attack kind once) scored beside this run's evaluated flows, which count as \
    benign; recall is the detection rate";

/// The planted attack flows with `features`, and their labels. An error
/// when the run's flows are not capture flows (other features).
pub fn attack_flows(features: &[String]) -> Result<(FlowTable, Vec<String>), String> {
    let config = Config {
        seed: SEED,
        hosts: 20,
        duration_s: 120,
        attacks: Attack::ALL.iter().map(|a| (*a, 1)).collect(),
        ..Config::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut pcap, &mut truth)
        .map_err(|e| format!("generating the planted capture: {e}"))?;
    let truth = GroundTruth::parse(&String::from_utf8_lossy(&truth))
        .map_err(|e| format!("the planted capture's ground truth: {e}"))?;
    let mut parquet = Vec::new();
    capture_to_silver(
        &pcap[..],
        MeterConfig::default(),
        Some(&truth),
        &mut parquet,
        |_| {},
    )
    .map_err(|e| format!("metering the planted capture: {e}"))?;
    let table = FlowTable::from_parquet(&parquet, features)
        .map_err(|e| format!("the run's features are not a capture's: {e}"))?;
    let labels = table.labels().unwrap_or_default();
    let keep: Vec<bool> = labels
        .iter()
        .map(|l| l.as_deref().is_some_and(is_attack))
        .collect();
    let attacks = table.filter(&keep).map_err(|e| e.to_string())?;
    let kinds = labels
        .into_iter()
        .flatten()
        .filter(|l| is_attack(l))
        .collect();
    Ok((attacks, kinds))
}

/// Each model's figures against the planted attacks (`None` for one that
/// could not score them), given its scores of the run's flows
/// (`background`, in `models` order).
pub fn estimate(
    features: &[String],
    models: &[(String, &Model)],
    background: &[Vec<f64>],
) -> Result<(Planted, Vec<Option<LabelledMetrics>>), String> {
    let (attacks, kinds) = attack_flows(features)?;
    let data = attacks.dataset().map_err(|e| e.to_string())?;
    let background_flows = background.first().map_or(0, Vec::len);
    let mut labels: Vec<Option<String>> = vec![Some("benign".into()); background_flows];
    labels.extend(kinds.iter().cloned().map(Some));
    let labelled = Labelled::of(&labels, is_attack);
    let mut not_scored = Vec::new();
    let figures = models
        .iter()
        .zip(background)
        .map(|((name, model), run_scores)| {
            let scored = match model.analyze_hosts(&data) {
                Ok(Some(analysis)) => Ok(analysis.flow_scores.to_vec()),
                Ok(None) => model.score(&data).map(|s| s.to_vec()),
                Err(e) => Err(e),
            };
            match scored {
                Ok(planted) => {
                    let all: Vec<f64> = run_scores.iter().chain(&planted).copied().collect();
                    Some(labelled.metrics(&all, model.threshold()))
                }
                Err(e) => {
                    not_scored.push(format!("{name}: {e}"));
                    None
                }
            }
        })
        .collect();
    let mut distinct: Vec<String> = kinds.clone();
    distinct.sort();
    distinct.dedup();
    Ok((
        Planted {
            method: METHOD.into(),
            seed: SEED,
            flows: kinds.len(),
            kinds: distinct,
            background_flows,
            not_scored,
        },
        figures,
    ))
}
