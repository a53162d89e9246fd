//! Isolation Forest (Liu, Ting and Zhou, 2008).
//!
//! Each tree isolates a random sub-sample of `sample_size` rows by random
//! axis-parallel splits, up to a depth of `ceil(log2(sample_size))`. An
//! anomaly is isolated in few splits, so its score `2^(-E[h(x)] / c(ψ))`,
//! with `h` the path length corrected by `c(leaf size)` for the unbuilt
//! subtree, is close to 1; ordinary points score near or below 0.5. This is
//! the paper's definition, which scikit-learn's `score_samples` negates.
//!
//! Tree `i` draws from its own generator seeded by `(seed, i)`, so the forest
//! is the same whether trees are built on one thread or many.

use ndarray::{Array1, ArrayView1, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Detector, DetectorError, check_finite};

/// Checked parameters of an Isolation Forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    pub trees: usize,
    /// ψ, rows per tree (256 in the paper and scikit-learn).
    pub sample_size: usize,
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams {
            trees: 100,
            sample_size: 256,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Node {
    Split {
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
    },
    Leaf {
        size: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tree {
    nodes: Vec<Node>,
}

/// A fitted Isolation Forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    params: IsolationForestParams,
    features: usize,
    /// ψ actually used (at most the number of training rows).
    psi: usize,
    trees: Vec<Tree>,
}

/// Average path length of an unsuccessful search in a binary search tree of
/// `n` nodes: the expected depth still to go below a leaf holding `n` rows.
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl IsolationForestParams {
    pub fn check(&self) -> Result<(), DetectorError> {
        if self.trees == 0 {
            return Err(DetectorError::Params("trees must be at least 1".into()));
        }
        if self.sample_size < 2 {
            return Err(DetectorError::Params(
                "sample_size must be at least 2".into(),
            ));
        }
        Ok(())
    }

    pub fn fit(&self, x: ArrayView2<'_, f64>) -> Result<IsolationForest, DetectorError> {
        self.check()?;
        check_finite(x, "fit")?;
        let psi = self.sample_size.min(x.nrows());
        let max_depth = (psi as f64).log2().ceil() as usize;
        let trees = (0..self.trees)
            .into_par_iter()
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                let sample = rand::seq::index::sample(&mut rng, x.nrows(), psi).into_vec();
                build_tree(x, sample, max_depth, &mut rng)
            })
            .collect();
        Ok(IsolationForest {
            params: self.clone(),
            features: x.ncols(),
            psi,
            trees,
        })
    }
}

fn build_tree(
    x: ArrayView2<'_, f64>,
    sample: Vec<usize>,
    max_depth: usize,
    rng: &mut ChaCha8Rng,
) -> Tree {
    let mut nodes = Vec::new();
    grow(x, sample, 0, max_depth, rng, &mut nodes);
    Tree { nodes }
}

/// Appends the subtree for `rows` and returns its index.
fn grow(
    x: ArrayView2<'_, f64>,
    rows: Vec<usize>,
    depth: usize,
    max_depth: usize,
    rng: &mut ChaCha8Rng,
    nodes: &mut Vec<Node>,
) -> u32 {
    let at = nodes.len() as u32;
    nodes.push(Node::Leaf {
        size: rows.len() as u32,
    });
    if depth >= max_depth || rows.len() <= 1 {
        return at;
    }
    // Features on which these rows still differ, with their ranges.
    let ranges: Vec<(usize, f64, f64)> = (0..x.ncols())
        .filter_map(|f| {
            let (lo, hi) = rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    let v = x[[r, f]];
                    (lo.min(v), hi.max(v))
                });
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if ranges.is_empty() {
        return at;
    }
    let (feature, lo, hi) = ranges[rng.random_range(0..ranges.len())];
    let threshold = lo + rng.random::<f64>() * (hi - lo);
    let (left_rows, right_rows): (Vec<usize>, Vec<usize>) =
        rows.iter().partition(|&&r| x[[r, feature]] < threshold);
    // A threshold equal to `lo` (probability ~0) would leave one side empty.
    if left_rows.is_empty() || right_rows.is_empty() {
        return at;
    }
    let left = grow(x, left_rows, depth + 1, max_depth, rng, nodes);
    let right = grow(x, right_rows, depth + 1, max_depth, rng, nodes);
    nodes[at as usize] = Node::Split {
        feature: feature as u32,
        threshold,
        left,
        right,
    };
    at
}

impl Tree {
    fn path_length(&self, row: ArrayView1<'_, f64>) -> f64 {
        let mut at = 0usize;
        let mut depth = 0.0;
        loop {
            match &self.nodes[at] {
                Node::Leaf { size } => return depth + average_path_length(*size as usize),
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if row[*feature as usize] < *threshold {
                        *left
                    } else {
                        *right
                    } as usize;
                    depth += 1.0;
                }
            }
        }
    }
}

impl IsolationForest {
    pub fn params(&self) -> &IsolationForestParams {
        &self.params
    }

    pub fn features(&self) -> usize {
        self.features
    }
}

impl Detector for IsolationForest {
    fn algorithm(&self) -> &'static str {
        "isolation_forest"
    }

    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>, DetectorError> {
        crate::check_scoring_input(x, self.features)?;
        let c = average_path_length(self.psi).max(f64::MIN_POSITIVE);
        let scores: Vec<f64> = (0..x.nrows())
            .into_par_iter()
            .map(|i| {
                let row = x.row(i);
                let mean = self.trees.iter().map(|t| t.path_length(row)).sum::<f64>()
                    / self.trees.len() as f64;
                2f64.powf(-mean / c)
            })
            .collect();
        Ok(Array1::from(scores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use ndarray::{Array2, array};

    /// Two tight clusters and `planted` far-away points, labelled.
    fn clusters(n: usize, planted: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((n + planted, 3));
        let mut labels = vec![false; n + planted];
        for i in 0..n {
            let centre = if i % 2 == 0 { 0.0 } else { 10.0 };
            for f in 0..3 {
                x[[i, f]] = centre + rng.random::<f64>() - 0.5;
            }
        }
        for i in n..n + planted {
            for f in 0..3 {
                x[[i, f]] = 30.0 + 20.0 * rng.random::<f64>();
            }
            labels[i] = true;
        }
        (x, labels)
    }

    #[test]
    fn planted_outliers_score_highest() {
        let (x, labels) = clusters(1000, 10, 1);
        let model = IsolationForestParams::default().fit(x.view()).unwrap();
        let scores = model.score(x.view()).unwrap();
        assert!(roc_auc(scores.as_slice().unwrap(), &labels).unwrap() > 0.99);
        let worst_inlier = scores
            .iter()
            .zip(&labels)
            .filter(|(_, l)| !**l)
            .map(|(s, _)| *s)
            .fold(0.0, f64::max);
        let best_outlier = scores
            .iter()
            .zip(&labels)
            .filter(|(_, l)| **l)
            .map(|(s, _)| *s)
            .fold(1.0, f64::min);
        assert!(
            best_outlier > worst_inlier,
            "{best_outlier} <= {worst_inlier}"
        );
        assert!(best_outlier > 0.6);
    }

    #[test]
    fn same_seed_same_model_whatever_the_threads() {
        let (x, _) = clusters(600, 5, 2);
        let params = IsolationForestParams {
            seed: 9,
            ..Default::default()
        };
        let a = params.fit(x.view()).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| params.fit(x.view()).unwrap());
        assert_eq!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&b).unwrap()
        );
        let other = IsolationForestParams {
            seed: 10,
            ..Default::default()
        }
        .fit(x.view())
        .unwrap();
        assert_ne!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&other).unwrap()
        );
    }

    #[test]
    fn a_loaded_model_scores_bit_for_bit_the_same() {
        let (x, _) = clusters(400, 4, 3);
        let model = IsolationForestParams::default().fit(x.view()).unwrap();
        let loaded =
            serde_json::from_slice::<IsolationForest>(&serde_json::to_vec(&model).unwrap())
                .unwrap();
        let (a, b) = (
            model.score(x.view()).unwrap(),
            loaded.score(x.view()).unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn constant_columns_single_rows_and_duplicates_are_handled() {
        let constant = Array2::from_elem((50, 2), 3.0);
        let model = IsolationForestParams::default()
            .fit(constant.view())
            .unwrap();
        let scores = model.score(constant.view()).unwrap();
        assert!(scores.iter().all(|s| (s - scores[0]).abs() < 1e-12));
        let one = array![[1.0, 2.0]];
        let model = IsolationForestParams::default().fit(one.view()).unwrap();
        assert_eq!(model.score(one.view()).unwrap().len(), 1);
    }

    #[test]
    fn bad_input_is_rejected_clearly() {
        let x = array![[1.0, f64::NAN], [2.0, 3.0]];
        let err = IsolationForestParams::default().fit(x.view()).unwrap_err();
        assert!(matches!(
            err,
            DetectorError::NonFinite {
                row: 0,
                feature: 1,
                ..
            }
        ));
        let empty = Array2::<f64>::zeros((0, 2));
        assert_eq!(
            IsolationForestParams::default()
                .fit(empty.view())
                .unwrap_err(),
            DetectorError::Empty("fit")
        );
        let model = IsolationForestParams::default()
            .fit(array![[1.0, 2.0], [3.0, 4.0]].view())
            .unwrap();
        assert!(matches!(
            model.score(array![[1.0]].view()),
            Err(DetectorError::FeatureCount {
                expected: 2,
                found: 1
            })
        ));
        assert!(
            IsolationForestParams {
                trees: 0,
                ..Default::default()
            }
            .fit(array![[1.0]].view())
            .is_err()
        );
    }

    #[test]
    fn path_length_correction_matches_the_paper() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // c(256) ≈ 10.2448 (2·H(255) − 2·255/256).
        assert!((average_path_length(256) - 10.2448).abs() < 1e-3);
    }
}
