//! The eval core: SILVER partitions and models in, a report and per-flow
//! scores out, and the champion decision.
//!
//! Every model scores every flow of the run. Each model's operating
//! threshold was placed on its training scores (flagging the
//! `NADIR_CONTAMINATION` share of them); the group detector also names the
//! hosts it singled out. Where the flows carry
//! labels, ROC-AUC, average precision and precision/recall/F1 at the
//! threshold say how well each detector did, and the detector with the best
//! average precision is named champion. Writes `eval/<version>/report.json`,
//! `eval/<version>/scores.parquet` and their manifest.

use std::collections::HashMap;

use nadir_contract::findings::{Finding, FindingsSummary};
use nadir_contract::layout::{self, ArtifactRef, ManifestKind};
use nadir_contract::messages::EvalJob;
use nadir_contract::params::EvalParams;
use nadir_detectors::Granularity;
use nadir_detectors::model::ScoreSummary;
use nadir_detectors::{Model, metrics};
use nadir_flows::FlowTable;
use nadir_flows::labels::{FROM_ANALYST, is_attack};
use nadir_flows::split::held_out;
use nadir_flows::table::{FLOW_ID, LABEL};
use polars::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use nadir_store::sink::{Artifact, Product};

use crate::report::{
    DetectorReport, EvalReport, Evidence, HostsReport, PartitionEntry, Role, RunFigures,
};

pub mod findings;
mod judge;
pub mod planted;
mod select;

pub use select::{promotion, select};

/// What evaluation judges by, from the configuration: the parameters the
/// workers and `nadir analyze` record alike.
pub fn params(analysis: &crate::Analysis) -> EvalParams {
    EvalParams {
        contamination: analysis.contamination,
        selection_metric: analysis.selection_metric.clone(),
        behaviour: Default::default(),
        suppression_rules: Vec::new(),
        baseline: None,
    }
}

/// Loads a model file, checking it holds the algorithm the message names.
pub fn load_model(algorithm: &str, bytes: &[u8]) -> Result<Model, String> {
    let model = Model::from_bytes(bytes).map_err(|e| e.to_string())?;
    if model.algorithm() != algorithm {
        return Err(format!(
            "the message names {algorithm:?} but the file holds {:?}",
            model.algorithm().name()
        ));
    }
    Ok(model)
}

/// A model that scores the run's flows: one of this run's challengers, or
/// the champion they are compared with.
#[derive(Clone)]
pub struct Scorer<'a> {
    pub model: &'a Model,
    /// The registry version (the train job's version).
    pub version: String,
    pub champion: bool,
}

impl Scorer<'_> {
    /// The name of its score column and report entry.
    pub fn name(&self) -> String {
        if self.champion {
            format!("champion_{}", self.model.algorithm())
        } else {
            self.model.algorithm().to_string()
        }
    }
}

/// What evaluation computed: the scores table and the report (pure).
pub struct Evaluation {
    pub scores: DataFrame,
    /// Ranked (`findings.parquet`).
    pub findings: Vec<Finding>,
    /// The report, without the version, scores and seconds of its writing.
    pub report: EvalReport,
    pub summary: RunFigures,
    pub rows: u64,
}

/// Flow columns copied into `scores.parquet` when the partitions have them.
const IDENTITY: [&str; 17] = [
    "first_seen_ns",
    "last_seen_ns",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol",
    "fwd_packets",
    "bwd_packets",
    "fwd_bytes",
    "bwd_bytes",
    "dns_query",
    "dns_qtype",
    "tls_sni",
    "http_host",
    "handshake_completed",
    "end_reason",
];

/// Contributions kept per flagged flow and detector.
const EXPLAINED_FEATURES: usize = 3;
/// Bins of the score histograms.
const HISTOGRAM_BINS: usize = 20;

/// Scores every partition with every model and compares the models.
/// `feedback` holds analysts' verdicts by (RAW version, flow id); they
/// label the flows their partition has no label for.
pub fn evaluate(
    job: &EvalJob,
    partitions: &[bytes::Bytes],
    scorers: &[Scorer<'_>],
    feedback: &HashMap<(String, u64), bool>,
    params: &EvalParams,
) -> Result<Evaluation, String> {
    let (contamination, selection_metric) =
        (params.contamination, params.selection_metric.as_str());
    let mut raw_versions: Vec<String> = Vec::new();
    let mut flow_ids: Vec<u64> = Vec::new();
    let mut labels: Vec<Option<String>> = Vec::new();
    let mut explanations: Vec<Option<String>> = Vec::new();
    let mut identity: Option<DataFrame> = None;
    // The champion the challengers are held against, scored or not.
    let considered = scorers
        .iter()
        .find(|s| s.champion)
        .map(|s| (s.model.algorithm().to_string(), s.version.clone()));
    let mut champion_not_scored: Option<String> = None;
    let mut scorers: Vec<Scorer> = scorers.to_vec();
    let mut scores: Vec<Vec<f64>> = Vec::new();
    let mut hosts: Vec<Vec<HostsReport>> = Vec::new();
    // Drift: the evaluated flows counted into the training profile's bins.
    let profile = scorers
        .iter()
        .find(|s| !s.champion && !s.model.metadata.profile.is_empty())
        .map(|s| &s.model.metadata.profile);
    let mut drift_counts: Vec<Vec<usize>> = profile
        .map(|p| p.iter().map(|f| vec![0; f.edges.len() + 1]).collect())
        .unwrap_or_default();
    for (index, (partition, bytes)) in job.silver.iter().zip(partitions).enumerate() {
        let mut table = FlowTable::from_parquet(bytes, &partition.features)
            .map_err(|e| format!("{}: {e}", partition.flows.uri()))?;
        if let Some(share) = job.holdout {
            let keep: Vec<bool> = table
                .flow_ids()
                .iter()
                .map(|id| held_out(&partition.raw_version, *id, share))
                .collect();
            table = table.filter(&keep).map_err(|e| e.to_string())?;
        }
        let data = table.dataset().map_err(|e| e.to_string())?;
        if index == 0 {
            // A champion that cannot score these flows at all (fitted on
            // other columns, or needing hosts they lack) is left out, and
            // the report says why; a failure after this one is an error.
            if table.rows() > 0 {
                let probe = data.select(&[0]);
                scorers.retain(|s| match s.champion.then(|| s.model.score(&probe)) {
                    Some(Err(e)) => {
                        champion_not_scored = Some(format!("{}: {e}", s.name()));
                        false
                    }
                    _ => true,
                });
            }
            scores = vec![Vec::new(); scorers.len()];
            hosts = vec![Vec::new(); scorers.len()];
        }
        if let Some(profile) = profile {
            for (feature, counts) in profile.iter().zip(&mut drift_counts) {
                if let Some(j) = data.names.iter().position(|n| *n == feature.name) {
                    feature.count_into(data.numeric.column(j), counts);
                }
            }
        }
        let mut flagged_by: Vec<Vec<usize>> = vec![Vec::new(); table.rows()];
        for (i, scorer) in scorers.iter().enumerate() {
            let model = scorer.model;
            let failed = |e| format!("{}: {e}", scorer.name());
            let partition_scores = match model.analyze_hosts(&data).map_err(failed)? {
                Some(analysis) => {
                    hosts[i].push(HostsReport {
                        raw_version: partition.raw_version.clone(),
                        source_hosts: analysis.source_hosts,
                        buckets: analysis.buckets,
                        outlying: analysis.hosts,
                        notes: analysis.notes,
                    });
                    analysis.flow_scores
                }
                None => model.score(&data).map_err(failed)?,
            };
            for (row, s) in partition_scores.iter().enumerate() {
                if *s > model.threshold() {
                    flagged_by[row].push(i);
                }
            }
            scores[i].extend(partition_scores.iter());
        }
        // Why each flagged flow was flagged, by every model that flagged it.
        let mut why: Vec<serde_json::Map<String, Value>> =
            vec![serde_json::Map::new(); table.rows()];
        for (i, scorer) in scorers.iter().enumerate() {
            let rows: Vec<usize> = (0..table.rows())
                .filter(|r| flagged_by[*r].contains(&i))
                .collect();
            let explained = scorer
                .model
                .explain(&data, &rows, EXPLAINED_FEATURES)
                .map_err(|e| format!("{}: {e}", scorer.name()))?;
            for (row, contributions) in rows.into_iter().zip(explained) {
                if !contributions.is_empty() {
                    why[row].insert(scorer.name(), json!(contributions));
                }
            }
        }
        explanations.extend(
            why.into_iter()
                .map(|w| (!w.is_empty()).then(|| Value::Object(w).to_string())),
        );
        let present: Vec<&str> = IDENTITY
            .iter()
            .copied()
            .filter(|c| table.frame.column(c).is_ok())
            .collect();
        let part = table.frame.select(present).map_err(|e| e.to_string())?;
        identity = Some(match identity {
            None => part,
            Some(mut all) => {
                // Keep the columns every partition has.
                let shared: Vec<String> = all
                    .get_column_names()
                    .into_iter()
                    .filter(|c| part.column(c).is_ok())
                    .map(|c| c.to_string())
                    .collect();
                all = all.select(shared.clone()).map_err(|e| e.to_string())?;
                all.vstack_mut(&part.select(shared).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                all
            }
        });
        let ids = table.flow_ids();
        let partition_labels = table.labels();
        for (row, id) in ids.iter().enumerate() {
            let label = partition_labels
                .as_ref()
                .and_then(|l| l[row].clone())
                .or_else(|| {
                    feedback
                        .get(&(partition.raw_version.clone(), *id))
                        .map(|attack| {
                            let verdict = if *attack { "attack" } else { "benign" };
                            format!("{verdict}{FROM_ANALYST}")
                        })
                });
            labels.push(label);
        }
        raw_versions.extend(std::iter::repeat_n(
            partition.raw_version.clone(),
            table.rows(),
        ));
        flow_ids.extend(ids);
    }
    let rows = flow_ids.len();
    let labelled = judge::Labelled::of(&labels, is_attack);

    let mut columns = vec![
        Column::new("raw_version".into(), &raw_versions),
        Column::new(FLOW_ID.into(), &flow_ids),
    ];
    if let Some(identity) = identity {
        columns.extend(identity.columns().iter().cloned());
    }
    let mut detectors = Vec::new();
    let mut any_flagged = vec![false; rows];
    for ((scorer, s), hosts) in scorers.iter().zip(&scores).zip(hosts) {
        let model = scorer.model;
        let threshold = model.threshold();
        let mut sorted = s.clone();
        sorted.sort_by(f64::total_cmp);
        let flagged: Vec<bool> = s.iter().map(|v| *v > threshold).collect();
        if !scorer.champion {
            for (any, f) in any_flagged.iter_mut().zip(&flagged) {
                *any |= *f;
            }
        }
        detectors.push(DetectorReport {
            name: scorer.name(),
            algorithm: model.algorithm(),
            version: scorer.version.clone(),
            role: if scorer.champion {
                Role::Champion
            } else {
                Role::Challenger
            },
            threshold,
            threshold_rule: model.metadata.threshold_rule,
            training_scores: model.metadata.training_scores.clone(),
            flagged: flagged.iter().filter(|f| **f).count(),
            score_quantiles: ScoreSummary::of(&sorted),
            histogram: metrics::Histogram::of(s, HISTOGRAM_BINS),
            hosts,
            labelled: labelled.any().then(|| labelled.metrics(s, threshold)),
            planted: None,
        });
        columns.push(Column::new(format!("score_{}", scorer.name()).into(), s));
        columns.push(Column::new(
            format!("flagged_{}", scorer.name()).into(),
            &flagged,
        ));
    }
    columns.push(Column::new("flagged".into(), &any_flagged));
    columns.push(Column::new(LABEL.into(), &labels));
    columns.push(Column::new("explanation".into(), &explanations));
    let scores_frame = DataFrame::new(rows, columns).map_err(|e| e.to_string())?;
    let flaggers: Vec<findings::Flagger> = scorers
        .iter()
        .filter(|s| !s.champion)
        .map(|s| findings::Flagger {
            name: s.name(),
            host_level: s.model.detector().granularity() == Granularity::Host,
            training_rate: s.model.metadata.threshold_rule.flag_rate(),
        })
        .collect();
    // The training window's baseline, measured by train where the window
    // reaches beyond the evaluated partitions.
    let baseline = scorers
        .iter()
        .filter(|s| !s.champion)
        .find_map(|s| s.model.metadata.baseline.as_ref());
    let found = findings::find(
        &scores_frame,
        &flaggers,
        job.run_id,
        &params.behaviour,
        baseline,
    )?;
    let in_findings = {
        let evidence: std::collections::HashSet<u64> = found
            .iter()
            .flat_map(|f| f.evidence_flow_ids.iter().copied())
            .collect();
        flow_ids
            .iter()
            .zip(&any_flagged)
            .filter(|(id, flagged)| **flagged && evidence.contains(id))
            .count()
    };

    let names: Vec<String> = scorers.iter().map(Scorer::name).collect();
    let agreement = judge::agreement(&names, &scores);
    let drift = profile
        .map(|p| judge::drift(p, &drift_counts))
        .unwrap_or_default();

    // Without labels, attacks planted among the flows judge the detectors.
    let mut planted = None;
    if !labelled.any()
        && let Some(first) = job.silver.first()
    {
        let models: Vec<(String, &Model)> = scorers.iter().map(|s| (s.name(), s.model)).collect();
        if let Ok((estimate, figures)) = planted::estimate(&first.features, &models, &scores) {
            for (d, f) in detectors.iter_mut().zip(figures) {
                d.planted = f;
            }
            planted = Some(estimate);
        }
    }
    let evidence = if labelled.any() {
        let from_analyst = labelled.rows.iter().all(|r| {
            labels[*r]
                .as_deref()
                .is_some_and(|l| l.ends_with(FROM_ANALYST))
        });
        if from_analyst {
            Evidence::AnalystFeedback
        } else {
            Evidence::GroundTruth
        }
    } else if planted.is_some() {
        Evidence::PlantedAttacks
    } else {
        Evidence::Nothing
    };
    let figure = |d: &DetectorReport| match evidence {
        Evidence::PlantedAttacks => d.planted_metric(selection_metric),
        _ => d.metric(selection_metric),
    };
    let challengers: Vec<(String, String, Option<f64>)> = detectors
        .iter()
        .filter(|d| !d.is_champion())
        .map(|d| (d.algorithm.name().to_string(), d.version.clone(), figure(d)))
        .collect();
    // An unscored champion has no figure: the rule keeps it.
    let champion = considered.as_ref().map(|(a, v)| {
        let figure = detectors.iter().find(|d| d.is_champion()).and_then(figure);
        (a.as_str(), v.as_str(), figure)
    });
    let basis = match evidence {
        Evidence::PlantedAttacks => "on this run's flows with attacks planted among them",
        _ => "on this run's flows",
    };
    let decision = select(selection_metric, basis, &challengers, champion);
    let entry = |p: &nadir_contract::messages::SilverPartition| PartitionEntry {
        raw_version: p.raw_version.clone(),
        flows: p.flows.clone(),
        rows: p.rows,
    };
    let report = EvalReport {
        run_id: job.run_id,
        rows,
        partitions: job.silver.iter().map(entry).collect(),
        contamination,
        selection_metric: selection_metric.to_string(),
        feature_set: job.silver.first().map(|p| layout::feature_set(&p.features)),
        champion: considered,
        champion_not_scored,
        training_partitions: job.training_silver.iter().map(entry).collect(),
        holdout: job.holdout,
        labelled: labelled.any(),
        labelled_rows: labelled.rows.len(),
        attacks: labelled.any().then(|| labelled.attacks()),
        attack_types: labelled
            .attack_types
            .iter()
            .map(|t| t.to_string())
            .collect(),
        flagged: any_flagged.iter().filter(|f| **f).count(),
        detectors,
        agreement,
        drift,
        training_profile: profile.cloned(),
        selection: decision,
        findings_summary: Some(FindingsSummary::of(&found, in_findings)),
        version: None,
        scores: None,
        findings: None,
        seconds: None,
        planted,
        selection_evidence: Some(evidence),
        baseline: baseline.map(|b| b.summary()),
    };
    Ok(Evaluation {
        scores: scores_frame,
        findings: found,
        summary: RunFigures::of(&report),
        report,
        rows: rows as u64,
    })
}

impl Evaluation {
    /// `scores.parquet` and `findings.parquet`, as bytes.
    pub fn parquet(&mut self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let scores =
            nadir_flows::table::write_parquet(&mut self.scores).map_err(|e| e.to_string())?;
        let mut found = findings::findings_frame(&self.findings)?;
        let findings = nadir_flows::table::write_parquet(&mut found).map_err(|e| e.to_string())?;
        Ok((scores, findings))
    }
}

/// The evaluation's artifacts as one product: the report (naming the
/// scores beside it) and the scores, with their manifest.
pub struct EvalOf<'a> {
    pub run_id: Uuid,
    pub version: &'a str,
    pub job: &'a EvalJob,
    pub params: &'a EvalParams,
    /// Where the scores and the findings will be (`ArtifactSink::reference`
    /// of their bytes).
    pub scores: ArtifactRef,
    pub findings: ArtifactRef,
    pub seconds: f64,
}

impl EvalOf<'_> {
    /// The product, and the report as written.
    pub fn product(
        &self,
        evaluation: &Evaluation,
        scores_parquet: Vec<u8>,
        findings_parquet: Vec<u8>,
    ) -> (Product, EvalReport) {
        let mut report = evaluation.report.clone();
        report.version = Some(self.version.to_string());
        report.scores = Some(self.scores.clone());
        report.findings = Some(self.findings.clone());
        report.seconds = Some(self.seconds);
        let report_bytes = serde_json::to_vec_pretty(&report).expect("reports serialize");
        let mut inputs: Vec<ArtifactRef> =
            self.job.silver.iter().map(|p| p.flows.clone()).collect();
        inputs.extend(self.job.models.iter().map(|m| m.model.clone()));
        let product = Product {
            kind: ManifestKind::Eval,
            run_id: self.run_id,
            version: self.version.to_string(),
            item: "run".into(),
            audit_inputs: None,
            inputs,
            artifacts: vec![
                Artifact::json(layout::eval_report_key(self.version), report_bytes),
                Artifact::parquet(layout::eval_scores_key(self.version), scores_parquet),
                Artifact::parquet(layout::eval_findings_key(self.version), findings_parquet),
            ],
            existing: Vec::new(),
            audit_metrics: None,
            manifest_key: layout::eval_manifest_key(self.version),
            parameters: serde_json::to_value(EvalParams {
                baseline: report.baseline.clone(),
                ..self.params.clone()
            })
            .expect("parameters serialize"),
            metrics: json!({
                "rows": evaluation.rows,
                "seconds": self.seconds,
                "summary": evaluation.summary,
            }),
        };
        (product, report)
    }
}
