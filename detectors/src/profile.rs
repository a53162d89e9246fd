//! What the training data looked like, feature by feature. Kept in the
//! model file so that evaluation can say, from the model alone, how far a
//! flow stands from what the model learned (explanations) and how far a
//! whole window of flows has moved (drift, as a population stability index).

use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::metrics::sorted_quantile;

/// Rows a profile is computed from at most (evenly spaced beyond).
const PROFILE_ROWS: usize = 100_000;

/// Shares below this count as this in the stability index (an empty bin
/// would otherwise make it infinite).
const MIN_SHARE: f64 = 1e-4;

/// One numeric feature of the training data, in its own units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    pub name: String,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub mean: f64,
    pub std: f64,
    /// Inner edges of the drift bins: the training deciles, duplicates
    /// removed. Bin `i` holds values in `(edges[i-1], edges[i]]`.
    pub edges: Vec<f64>,
    /// Share of training rows in each of the `edges.len() + 1` bins.
    pub shares: Vec<f64>,
}

/// Profiles every column of `x` (named by `names`).
pub fn profile(names: &[String], x: ArrayView2<'_, f64>) -> Vec<FeatureProfile> {
    let step = x.nrows().div_ceil(PROFILE_ROWS).max(1);
    names
        .iter()
        .zip(x.columns())
        .map(|(name, column)| {
            let mut sorted: Vec<f64> = column.iter().step_by(step).copied().collect();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len().max(1) as f64;
            let mean = sorted.iter().sum::<f64>() / n;
            let std = (sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
            let mut edges: Vec<f64> = (1..10)
                .map(|i| sorted_quantile(&sorted, i as f64 / 10.0))
                .collect();
            edges.dedup();
            let mut profile = FeatureProfile {
                name: name.clone(),
                median: sorted_quantile(&sorted, 0.5),
                p25: sorted_quantile(&sorted, 0.25),
                p75: sorted_quantile(&sorted, 0.75),
                mean,
                std,
                shares: Vec::new(),
                edges,
            };
            let mut counts = vec![0; profile.edges.len() + 1];
            profile.count_into(ArrayView1::from(&sorted), &mut counts);
            let total = sorted.len().max(1) as f64;
            profile.shares = counts.iter().map(|c| *c as f64 / total).collect();
            profile
        })
        .collect()
}

impl FeatureProfile {
    /// How unusual `value` is: its distance from the training median in
    /// robust standard deviations (the interquartile range / 1.349, or the
    /// standard deviation where half the rows share one value).
    pub fn deviation(&self, value: f64) -> f64 {
        let spread = (self.p75 - self.p25) / 1.349;
        let spread = if spread > 0.0 { spread } else { self.std };
        let distance = (value - self.median).abs();
        if spread > 0.0 {
            distance / spread
        } else if distance > 0.0 {
            // Training never moved from one value; any change is unusual.
            f64::from(u16::MAX)
        } else {
            0.0
        }
    }

    /// Adds `values` to per-bin `counts` (`edges.len() + 1` of them), so
    /// that data arriving in parts can be compared as a whole.
    pub fn count_into(&self, values: ArrayView1<'_, f64>, counts: &mut [usize]) {
        for v in values {
            counts[self.edges.partition_point(|e| e < v)] += 1;
        }
    }

    /// Population stability index of `values` against the training data:
    /// Σ (actual − expected) · ln(actual / expected) over the bins. Below
    /// 0.1 is usually read as stable, above 0.25 as a real shift.
    pub fn stability_index(&self, values: ArrayView1<'_, f64>) -> f64 {
        let mut counts = vec![0; self.edges.len() + 1];
        self.count_into(values, &mut counts);
        self.stability_index_of(&counts)
    }

    /// The stability index of values already counted into the bins.
    pub fn stability_index_of(&self, counts: &[usize]) -> f64 {
        let total = counts.iter().sum::<usize>().max(1) as f64;
        counts
            .iter()
            .zip(&self.shares)
            .map(|(c, e)| {
                let (a, e) = ((*c as f64 / total).max(MIN_SHARE), e.max(MIN_SHARE));
                (a - e) * (a / e).ln()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    #[test]
    fn same_data_is_stable_and_shifted_data_is_not() {
        let x = Array2::from_shape_fn((1000, 1), |(i, _)| (i % 100) as f64);
        let p = &profile(&["bytes".into()], x.view())[0];
        assert_eq!(p.median, 49.5);
        assert_eq!(p.edges.len(), 9);
        assert!(p.stability_index(x.column(0)) < 1e-9);
        let shifted = Array1::from_iter((0..1000).map(|i| (i % 100) as f64 + 60.0));
        assert!(p.stability_index(shifted.view()) > 0.25);
    }

    #[test]
    fn deviation_is_in_robust_units_and_handles_constant_columns() {
        let x = Array2::from_shape_fn((101, 2), |(i, j)| if j == 0 { i as f64 } else { 3.0 });
        let ps = profile(&["a".into(), "b".into()], x.view());
        assert!((ps[0].deviation(50.0 + 50.0 / 1.349) - 1.0).abs() < 1e-9);
        assert_eq!(ps[1].deviation(3.0), 0.0);
        assert!(ps[1].deviation(4.0) > 1000.0);
        assert_eq!(ps[1].edges, vec![3.0]);
    }
}
