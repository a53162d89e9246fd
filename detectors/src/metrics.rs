//! Metrics that compare detectors on labelled data, and operating thresholds.
//!
//! Definitions follow scikit-learn: ROC-AUC with tied scores counted half
//! (the Mann-Whitney statistic), average precision as the step-wise area
//! under the precision-recall curve.

/// ROC-AUC of `scores` (higher = more anomalous) against `positive` labels;
/// `None` when one class is absent.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len());
    let pos = positive.iter().filter(|p| **p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (average, 1-based) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let (pos, neg) = (pos as f64, neg as f64);
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Average precision: Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct score thresholds,
/// highest first; `None` without positives.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len());
    let total = positive.iter().filter(|p| **p).count();
    if total == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        tp += order[i..=j].iter().filter(|&&k| positive[k]).count();
        seen += j - i + 1;
        let recall = tp as f64 / total as f64;
        ap += (recall - last_recall) * (tp as f64 / seen as f64);
        last_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// The score above which a `contamination` share of `scores` lies (the
/// `1 - contamination` quantile, by linear interpolation).
pub fn threshold_for_contamination(scores: &[f64], contamination: f64) -> f64 {
    quantile(scores, 1.0 - contamination)
}

/// The `q` quantile of `values` (linear interpolation, as numpy's default).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted_quantile(&sorted, q)
}

/// The `q` quantile of values already sorted in ascending order.
pub fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// Precision, recall and F1 of flagging `score > threshold`.
pub fn precision_recall_f1(scores: &[f64], positive: &[bool], threshold: f64) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for (s, p) in scores.iter().zip(positive) {
        match (*s > threshold, *p) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    (precision, recall, f1)
}

/// Precision among the `k` highest scores (ties broken by row order);
/// `None` when `k` is 0.
pub fn precision_at_k(scores: &[f64], positive: &[bool], k: usize) -> Option<f64> {
    assert_eq!(scores.len(), positive.len());
    let k = k.min(scores.len());
    if k == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    Some(order[..k].iter().filter(|&&i| positive[i]).count() as f64 / k as f64)
}

/// Recall when the threshold is placed so that at most `fpr` of the
/// negatives score above it; `None` when a class is absent.
pub fn recall_at_fpr(scores: &[f64], positive: &[bool], fpr: f64) -> Option<f64> {
    assert_eq!(scores.len(), positive.len());
    let mut negatives: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    let positives = positive.iter().filter(|p| **p).count();
    if negatives.is_empty() || positives == 0 {
        return None;
    }
    negatives.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr.clamp(0.0, 1.0) * negatives.len() as f64).floor() as usize;
    // Flag scores above the first negative that may not be flagged.
    let threshold = negatives.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let caught = scores
        .iter()
        .zip(positive)
        .filter(|(s, p)| **p && **s > threshold)
        .count();
    Some(caught as f64 / positives as f64)
}

/// Counts of `values` in `bins` equal-width bins over their range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Histogram {
    /// `bins + 1` edges, lowest first.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn of(values: &[f64], bins: usize) -> Histogram {
        let bins = bins.max(1);
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        if values.is_empty() {
            return Histogram {
                edges: Vec::new(),
                counts: Vec::new(),
            };
        }
        let width = (hi - lo) / bins as f64;
        let edges = (0..=bins).map(|i| lo + width * i as f64).collect();
        let mut histogram = Histogram {
            edges,
            counts: vec![0; bins],
        };
        for v in values {
            let at = histogram.bin(*v).unwrap_or(0);
            histogram.counts[at] += 1;
        }
        histogram
    }

    /// The bin `v` falls in, as [`Histogram::of`] counts it; values beyond
    /// the edges fall in the end bins, NaN and an empty histogram in none.
    pub fn bin(&self, v: f64) -> Option<usize> {
        let bins = self.edges.len().checked_sub(1).filter(|b| *b > 0)?;
        if v.is_nan() {
            return None;
        }
        let (lo, hi) = (self.edges[0], self.edges[bins]);
        let width = (hi - lo) / bins as f64;
        Some(if width > 0.0 {
            (((v - lo) / width).max(0.0) as usize).min(bins - 1)
        } else {
            0
        })
    }
}

/// Ranks from 1, ties sharing their average rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            ranks[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of two score lists (how far two detectors
/// agree on what is most unusual); `None` when either is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    assert_eq!(a.len(), b.len());
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean) * (x - mean);
        vb += (y - mean) * (y - mean);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_auc_matches_known_values() {
        // scikit-learn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn average_precision_matches_known_values() {
        // scikit-learn: average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 0.833_333_333).abs() < 1e-6, "{ap}");
        assert_eq!(average_precision(&[1.0, 0.0], &[true, false]), Some(1.0));
        assert_eq!(average_precision(&[1.0], &[false]), None);
    }

    #[test]
    fn thresholds_and_flags() {
        let scores: Vec<f64> = (0..100).map(f64::from).collect();
        assert!((threshold_for_contamination(&scores, 0.05) - 94.05).abs() < 1e-9);
        let positive: Vec<bool> = (0..100).map(|i| i >= 95).collect();
        let (p, r, f1) = precision_recall_f1(&scores, &positive, 94.05);
        assert_eq!((p, r, f1), (1.0, 1.0, 1.0));
    }

    #[test]
    fn ranking_metrics_match_known_values() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let positive = [true, false, true, false, false, false];
        assert_eq!(precision_at_k(&scores, &positive, 2), Some(0.5));
        assert_eq!(precision_at_k(&scores, &positive, 3), Some(2.0 / 3.0));
        assert_eq!(precision_at_k(&scores, &positive, 0), None);
        // No false positive allowed among 4 negatives: above 0.8 only.
        assert_eq!(recall_at_fpr(&scores, &positive, 0.01), Some(0.5));
        // One of four allowed (25 %): above 0.6.
        assert_eq!(recall_at_fpr(&scores, &positive, 0.25), Some(1.0));
        assert_eq!(recall_at_fpr(&scores, &[false; 6], 0.01), None);
    }

    #[test]
    fn spearman_and_histogram() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
        let h = Histogram::of(&[0.0, 0.1, 0.5, 1.0], 2);
        assert_eq!(h.edges, vec![0.0, 0.5, 1.0]);
        assert_eq!(h.counts, vec![2, 2]);
        assert_eq!(Histogram::of(&[3.0, 3.0], 4).counts, vec![2, 0, 0, 0]);
    }
}
