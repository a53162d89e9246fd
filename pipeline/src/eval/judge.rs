//! How a detector's scores are judged: against labels (overall and per
//! attack type), against each other (rank agreement), and how far the
//! evaluated flows moved from the training flows (drift). Pure functions
//! over score vectors.

use std::collections::BTreeMap;

use nadir_detectors::metrics;
use nadir_detectors::profile::FeatureProfile;

use crate::report::{Agreement, AttackTypeMetrics, Drift, LabelledMetrics, PrecisionAtK};

/// The false-positive rate recall is reported at.
const RECALL_FPR: f64 = 0.01;
/// Rows the rank agreement is computed on at most (evenly spaced beyond).
const AGREEMENT_ROWS: usize = 100_000;

/// The labelled flows of an evaluation.
pub struct Labelled<'a> {
    /// Rows that carry a label.
    pub rows: Vec<usize>,
    /// Whether each of those rows is an attack.
    pub positive: Vec<bool>,
    /// Every row's label.
    pub labels: &'a [Option<String>],
    /// The attack types among them, sorted.
    pub attack_types: Vec<&'a str>,
}

impl<'a> Labelled<'a> {
    pub fn of(labels: &'a [Option<String>], is_attack: impl Fn(&str) -> bool) -> Self {
        let rows: Vec<usize> = (0..labels.len()).filter(|r| labels[*r].is_some()).collect();
        let positive: Vec<bool> = rows
            .iter()
            .map(|r| labels[*r].as_deref().is_some_and(&is_attack))
            .collect();
        let types: std::collections::BTreeSet<&str> = rows
            .iter()
            .filter_map(|r| labels[*r].as_deref().filter(|l| is_attack(l)))
            .collect();
        Labelled {
            rows,
            positive,
            labels,
            attack_types: types.into_iter().collect(),
        }
    }

    pub fn any(&self) -> bool {
        !self.rows.is_empty()
    }

    pub fn attacks(&self) -> usize {
        self.positive.iter().filter(|p| **p).count()
    }

    /// One detector's figures against these labels.
    pub fn metrics(&self, scores: &[f64], threshold: f64) -> LabelledMetrics {
        let on_labelled: Vec<f64> = self.rows.iter().map(|r| scores[*r]).collect();
        let positive = &self.positive;
        let attacks = self.attacks();
        let (precision, recall, f1) =
            metrics::precision_recall_f1(&on_labelled, positive, threshold);
        LabelledMetrics {
            roc_auc: metrics::roc_auc(&on_labelled, positive),
            average_precision: metrics::average_precision(&on_labelled, positive),
            precision_at_k: PrecisionAtK {
                k: attacks,
                value: metrics::precision_at_k(&on_labelled, positive, attacks),
            },
            recall_at_1pct_fpr: metrics::recall_at_fpr(&on_labelled, positive, RECALL_FPR),
            precision,
            recall,
            f1,
            by_attack_type: self.by_attack_type(scores, threshold),
        }
    }

    /// Each attack type against the benign flows.
    fn by_attack_type(
        &self,
        scores: &[f64],
        threshold: f64,
    ) -> BTreeMap<String, AttackTypeMetrics> {
        self.attack_types
            .iter()
            .map(|t| {
                let (mut sc, mut pos) = (Vec::new(), Vec::new());
                for (k, r) in self.rows.iter().enumerate() {
                    let label = self.labels[*r].as_deref().unwrap_or_default();
                    if !self.positive[k] || label == *t {
                        sc.push(scores[*r]);
                        pos.push(self.positive[k]);
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
                    AttackTypeMetrics {
                        flows,
                        flagged: caught,
                        recall: caught as f64 / flows.max(1) as f64,
                        roc_auc: metrics::roc_auc(&sc, &pos),
                        average_precision: metrics::average_precision(&sc, &pos),
                    },
                )
            })
            .collect()
    }
}

/// How far each pair of scorers agrees on what is most unusual (Spearman
/// on at most [`AGREEMENT_ROWS`] evenly spaced rows).
pub fn agreement(names: &[String], scores: &[Vec<f64>]) -> Vec<Agreement> {
    let rows = scores.first().map_or(0, Vec::len);
    let step = rows.div_ceil(AGREEMENT_ROWS).max(1);
    let sampled: Vec<Vec<f64>> = scores
        .iter()
        .map(|s| s.iter().step_by(step).copied().collect())
        .collect();
    let mut out = Vec::new();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            out.push(Agreement {
                a: names[i].clone(),
                b: names[j].clone(),
                spearman: metrics::spearman(&sampled[i], &sampled[j]),
            });
        }
    }
    out
}

/// The features whose evaluated flows were counted into the training
/// profile's bins, by population stability index, most moved first.
pub fn drift(profile: &[FeatureProfile], counts: &[Vec<usize>]) -> Vec<Drift> {
    let mut drift: Vec<Drift> = profile
        .iter()
        .zip(counts)
        .filter(|(_, counts)| counts.iter().sum::<usize>() > 0)
        .map(|(p, counts)| Drift {
            feature: p.name.clone(),
            psi: p.stability_index_of(counts),
            training_median: p.median,
        })
        .collect();
    drift.sort_by(|a, b| b.psi.total_cmp(&a.psi));
    drift
}
