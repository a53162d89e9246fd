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

use nadir_contract::layout::{self, ArtifactRef, ManifestKind};
use nadir_contract::messages::EvalJob;
use nadir_contract::params::EvalParams;
use nadir_contract::registry::RegistryChange;
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
    pub report: Value,
    pub summary: Value,
    pub rows: u64,
    pub decision: Decision,
}

/// Flow columns copied into `scores.parquet` when the partitions have them.
const IDENTITY: [&str; 14] = [
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
    "tls_sni",
    "http_host",
];

/// Contributions kept per flagged flow and detector.
const EXPLAINED_FEATURES: usize = 3;
/// Bins of the score histograms.
const HISTOGRAM_BINS: usize = 20;
/// Rows the rank agreement is computed on at most (evenly spaced beyond).
const AGREEMENT_ROWS: usize = 100_000;
/// The false-positive rate recall is reported at.
const RECALL_FPR: f64 = 0.01;

/// The champion decision of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    /// `promote`, `keep` or `none`.
    pub action: &'static str,
    /// The champion after this run: (algorithm, version).
    pub champion: Option<(String, String)>,
    pub reason: String,
    /// The champion before this run, when it is replaced.
    pub replaces: Option<(String, String)>,
}

/// The selection rule: with labels, the challenger with the best
/// `metric` (average precision by default; the first in the configured
/// order on a tie) is promoted if there is no champion or it beats the
/// champion's figure on the same flows; a challenger never replaces a
/// better or equal champion. Without labels the champion stays.
pub fn select(
    metric: &str,
    challengers: &[(String, String, Option<f64>)],
    champion: Option<(&str, &str, Option<f64>)>,
) -> Decision {
    let name = metric.replace('_', " ");
    let best = challengers
        .iter()
        .filter_map(|(a, v, m)| m.map(|m| (a, v, m)))
        .fold(None::<(&String, &String, f64)>, |best, c| match best {
            Some(b) if b.2 >= c.2 => Some(b),
            _ => Some(c),
        });
    let current = champion.map(|(a, v, _)| (a.to_string(), v.to_string()));
    let Some((algorithm, version, value)) = best else {
        return Decision {
            action: if current.is_some() { "keep" } else { "none" },
            reason: match &current {
                Some(_) => "no labelled flows in this run: the champion stays".into(),
                None => "no labelled flows in this run and no champion yet: promote one with `nadir promote`".into(),
            },
            champion: current,
            replaces: None,
        };
    };
    match champion {
        Some((a, v, Some(c))) if c >= value => Decision {
            action: "keep",
            champion: current,
            reason: format!(
                "the champion {a} ({v}) has {name} {c:.4} on this run's flows; the best challenger, {algorithm}, has {value:.4}"
            ),
            replaces: None,
        },
        Some((a, v, Some(c))) => Decision {
            action: "promote",
            champion: Some((algorithm.clone(), version.clone())),
            reason: format!(
                "{algorithm} has {name} {value:.4} on this run's flows, above the champion {a} ({v}) at {c:.4}"
            ),
            replaces: current,
        },
        Some((a, v, None)) => Decision {
            action: "keep",
            champion: current,
            reason: format!(
                "the champion {a} ({v}) has no {name} on these flows to compare with; it stays (promote by hand)"
            ),
            replaces: None,
        },
        None => Decision {
            action: "promote",
            champion: Some((algorithm.clone(), version.clone())),
            reason: format!(
                "no champion yet; {algorithm} has the best {name} on this run's flows ({value:.4})"
            ),
            replaces: None,
        },
    }
}

/// A detector's metrics against labels (the labelled rows only).
fn labelled_metrics(scores: &[f64], positive: &[bool], threshold: f64) -> Value {
    let attacks = positive.iter().filter(|p| **p).count();
    let (precision, recall, f1) = metrics::precision_recall_f1(scores, positive, threshold);
    json!({
        "roc_auc": metrics::roc_auc(scores, positive),
        "average_precision": metrics::average_precision(scores, positive),
        "precision_at_k": { "k": attacks, "value": metrics::precision_at_k(scores, positive, attacks) },
        "recall_at_1pct_fpr": metrics::recall_at_fpr(scores, positive, RECALL_FPR),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    })
}

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
    let mut hosts: Vec<Vec<Value>> = Vec::new();
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
                    hosts[i].push(json!({
                        "raw_version": partition.raw_version,
                        "source_hosts": analysis.source_hosts,
                        "buckets": analysis.buckets,
                        "outlying": analysis.hosts,
                        "notes": analysis.notes,
                    }));
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
    let labelled_rows: Vec<usize> = (0..rows).filter(|r| labels[*r].is_some()).collect();
    let positive: Vec<bool> = labelled_rows
        .iter()
        .map(|r| labels[*r].as_deref().is_some_and(is_attack))
        .collect();
    let labelled = !labelled_rows.is_empty();
    let attack_types: std::collections::BTreeSet<&str> = labelled_rows
        .iter()
        .filter_map(|r| labels[*r].as_deref().filter(|l| is_attack(l)))
        .collect();

    let mut columns = vec![
        Column::new("raw_version".into(), &raw_versions),
        Column::new(FLOW_ID.into(), &flow_ids),
    ];
    if let Some(identity) = identity {
        columns.extend(identity.columns().iter().cloned());
    }
    let mut detectors = Vec::new();
    let mut any_flagged = vec![false; rows];
    for ((scorer, s), hosts) in scorers.iter().zip(&scores).zip(&hosts) {
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
        let mut entry = json!({
            "name": scorer.name(),
            "algorithm": model.algorithm(),
            "version": scorer.version,
            "role": if scorer.champion { "champion" } else { "challenger" },
            "threshold": threshold,
            "threshold_rule": model.metadata.threshold_rule,
            "training_scores": model.metadata.training_scores,
            "flagged": flagged.iter().filter(|f| **f).count(),
            "score_quantiles": ScoreSummary::of(&sorted),
            "histogram": metrics::Histogram::of(s, HISTOGRAM_BINS),
        });
        if !hosts.is_empty() {
            entry["hosts"] = json!(hosts);
        }
        if labelled {
            let on_labelled: Vec<f64> = labelled_rows.iter().map(|r| s[*r]).collect();
            let mut m = labelled_metrics(&on_labelled, &positive, threshold);
            // Each attack type against the benign flows.
            let by_type: serde_json::Map<String, Value> = attack_types
                .iter()
                .map(|t| {
                    let (mut sc, mut pos) = (Vec::new(), Vec::new());
                    for (k, r) in labelled_rows.iter().enumerate() {
                        let label = labels[*r].as_deref().unwrap_or_default();
                        if !positive[k] || label == *t {
                            sc.push(s[*r]);
                            pos.push(positive[k]);
                        }
                    }
                    let flows = pos.iter().filter(|p| **p).count();
                    let caught = sc
                        .iter()
                        .zip(&pos)
                        .filter(|(v, p)| **p && **v > threshold)
                        .count();
                    (
                        t.to_string(),
                        json!({
                            "flows": flows,
                            "flagged": caught,
                            "recall": caught as f64 / flows.max(1) as f64,
                            "roc_auc": metrics::roc_auc(&sc, &pos),
                            "average_precision": metrics::average_precision(&sc, &pos),
                        }),
                    )
                })
                .collect();
            m["by_attack_type"] = Value::Object(by_type);
            if let (Value::Object(entry), Value::Object(m)) = (&mut entry, m) {
                entry.extend(m);
            }
        }
        detectors.push(entry);
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

    // How far the detectors agree on what is most unusual.
    let step = rows.div_ceil(AGREEMENT_ROWS).max(1);
    let sampled: Vec<Vec<f64>> = scores
        .iter()
        .map(|s| s.iter().step_by(step).copied().collect())
        .collect();
    let mut agreement = Vec::new();
    for i in 0..scorers.len() {
        for j in i + 1..scorers.len() {
            agreement.push(json!({
                "a": scorers[i].name(),
                "b": scorers[j].name(),
                "spearman": metrics::spearman(&sampled[i], &sampled[j]),
            }));
        }
    }

    // How far the evaluated flows moved from the training flows.
    let mut drift: Vec<Value> = profile
        .map(|profile| {
            profile
                .iter()
                .zip(&drift_counts)
                .filter(|(_, counts)| counts.iter().sum::<usize>() > 0)
                .map(|(p, counts)| {
                    json!({
                        "feature": p.name,
                        "psi": p.stability_index_of(counts),
                        "training_median": p.median,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let psi = |v: &Value| v["psi"].as_f64().unwrap_or(f64::NAN);
    drift.sort_by(|a, b| psi(b).total_cmp(&psi(a)));

    let challengers: Vec<(String, String, Option<f64>)> = scorers
        .iter()
        .zip(&detectors)
        .filter(|(s, _)| !s.champion)
        .map(|(s, d)| {
            (
                s.model.algorithm().to_string(),
                s.version.clone(),
                d.get(selection_metric).and_then(Value::as_f64),
            )
        })
        .collect();
    // An unscored champion has no figure: the rule keeps it.
    let champion = considered.as_ref().map(|(a, v)| {
        let figure = scorers
            .iter()
            .zip(&detectors)
            .find(|(s, _)| s.champion)
            .and_then(|(_, d)| d.get(selection_metric).and_then(Value::as_f64));
        (a.as_str(), v.as_str(), figure)
    });
    let decision = select(selection_metric, &challengers, champion);
    let flagged = any_flagged.iter().filter(|f| **f).count();
    let attacks = positive.iter().filter(|p| **p).count();
    let report = json!({
        "run_id": job.run_id,
        "rows": rows,
        "partitions": job.silver.iter().map(|p| json!({"raw_version": p.raw_version, "flows": p.flows, "rows": p.rows})).collect::<Vec<_>>(),
        "contamination": contamination,
        "selection_metric": selection_metric,
        "feature_set": job.silver.first().map(|p| layout::feature_set(&p.features)),
        "champion": considered,
        "champion_not_scored": champion_not_scored,
        "training_partitions": job.training_silver.iter().map(|p| json!({"raw_version": p.raw_version, "flows": p.flows, "rows": p.rows})).collect::<Vec<_>>(),
        "holdout": job.holdout,
        "labelled": labelled,
        "labelled_rows": labelled_rows.len(),
        "attacks": if labelled { json!(attacks) } else { Value::Null },
        "attack_types": attack_types,
        "flagged": flagged,
        "detectors": detectors,
        "agreement": agreement,
        "drift": drift,
        // What the flows of the training window looked like, per feature
        // (the dashboard sets a flagged flow's values beside it).
        "training_profile": profile,
        "selection": decision,
    });
    let summary = json!({
        "rows": rows,
        "flagged": flagged,
        "champion": decision.champion.as_ref().map(|(a, _)| a.clone()),
        "champion_version": decision.champion.as_ref().map(|(_, v)| v.clone()),
        "decision": decision.action,
        "reason": decision.reason,
        "detectors": report["detectors"].as_array().unwrap().iter().map(|d| json!({
            "name": d["name"],
            "roc_auc": d.get("roc_auc"),
            "average_precision": d.get("average_precision"),
            "flagged": d["flagged"],
        })).collect::<Vec<_>>(),
    });
    Ok(Evaluation {
        scores: scores_frame,
        report,
        summary,
        rows: rows as u64,
        decision,
    })
}

/// The registry change a decision makes, with the report's metrics as evidence.
pub fn promotion(decision: &Decision, report: &Value, feature_set: &str) -> Vec<RegistryChange> {
    match (&decision.action, &decision.champion) {
        (&"promote", Some((algorithm, version))) => vec![RegistryChange::Promote {
            feature_set: feature_set.to_string(),
            algorithm: algorithm.clone(),
            version: version.clone(),
            compared_with: decision.replaces.clone(),
            reason: decision.reason.clone(),
            metrics: json!({
                "report": report["version"],
                "detectors": report["detectors"].as_array().map(|ds| ds.iter().map(|d| json!({
                    "name": d["name"],
                    "version": d["version"],
                    "roc_auc": d.get("roc_auc"),
                    "average_precision": d.get("average_precision"),
                })).collect::<Vec<_>>()),
            }),
        }],
        _ => Vec::new(),
    }
}

/// The evaluation's artifacts as one product: the report (naming the
/// scores beside it) and the scores, with their manifest.
pub struct EvalOf<'a> {
    pub run_id: Uuid,
    pub version: &'a str,
    pub job: &'a EvalJob,
    pub params: &'a EvalParams,
    /// Where the scores will be (`ArtifactSink::reference` of their bytes).
    pub scores: ArtifactRef,
    pub seconds: f64,
}

impl EvalOf<'_> {
    /// The product, and the report as written.
    pub fn product(&self, evaluation: &Evaluation, scores_parquet: Vec<u8>) -> (Product, Value) {
        let mut report = evaluation.report.clone();
        report["version"] = json!(self.version);
        report["scores"] = json!(self.scores);
        report["seconds"] = json!(self.seconds);
        let report_bytes = serde_json::to_vec_pretty(&report).expect("reports serialize");
        let mut inputs: Vec<ArtifactRef> =
            self.job.silver.iter().map(|p| p.flows.clone()).collect();
        inputs.extend(self.job.models.iter().map(|m| m.model.clone()));
        let product = Product {
            kind: ManifestKind::Eval,
            run_id: self.run_id,
            version: self.version.to_string(),
            item: "run".into(),
            audit_inputs: json!(inputs),
            inputs,
            artifacts: vec![
                Artifact::json(layout::eval_report_key(self.version), report_bytes),
                Artifact::parquet(layout::eval_scores_key(self.version), scores_parquet),
            ],
            existing: Vec::new(),
            audit_metrics: None,
            manifest_key: layout::eval_manifest_key(self.version),
            parameters: serde_json::to_value(self.params).expect("parameters serialize"),
            metrics: json!({
                "rows": evaluation.rows,
                "seconds": self.seconds,
                "summary": evaluation.summary,
            }),
        };
        (product, report)
    }
}

#[cfg(test)]
mod selection_tests {
    use super::select;

    fn c(a: &str, m: Option<f64>) -> (String, String, Option<f64>) {
        (a.into(), "v2".into(), m)
    }

    #[test]
    fn a_challenger_must_beat_the_champion_strictly() {
        let challengers = [
            c("isolation_forest", Some(0.8)),
            c("one_class_svm", Some(0.8)),
        ];
        let first = select("average_precision", &challengers, None);
        assert_eq!(first.action, "promote");
        assert_eq!(
            first.champion.unwrap().0,
            "isolation_forest",
            "the first on a tie"
        );
        let tie = select(
            "average_precision",
            &challengers,
            Some(("lof", "v1", Some(0.8))),
        );
        assert_eq!(tie.action, "keep");
        let better = select(
            "average_precision",
            &challengers,
            Some(("lof", "v1", Some(0.7))),
        );
        assert_eq!(
            (better.action, better.replaces),
            ("promote", Some(("lof".into(), "v1".into())))
        );
        let unscored = select("roc_auc", &challengers, Some(("lof", "v1", None)));
        assert_eq!(unscored.action, "keep");
        assert!(unscored.reason.contains("roc auc"), "{}", unscored.reason);
    }

    #[test]
    fn without_labels_the_champion_stays() {
        let unlabelled = [c("isolation_forest", None)];
        assert_eq!(
            select("average_precision", &unlabelled, Some(("lof", "v1", None))).action,
            "keep"
        );
        assert_eq!(
            select("average_precision", &unlabelled, None).action,
            "none"
        );
    }
}
