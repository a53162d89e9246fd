//! Isolation Forest (Liu, Ting and Zhou, 2008).
//!
//! Each tree isolates a random sub-sample of `sample_size` rows by random
//! axis-parallel splits, up to a depth of `ceil(log2(sample_size))`. An
//! anomaly is isolated in few splits, so its score `2^(-E[h(x)] / c(ψ))`,
//! with `h` the path length corrected by `c(leaf size)` for the unbuilt
//! subtree, is close to 1; ordinary points score near or below 0.5. This is
//! the paper's definition, which scikit-learn's `score_samples` negates.
//!
//! With `max_features` below 1, each tree splits on a random subset of the
//! features only (scikit-learn's feature sub-sampling).
//!
//! Tree `i` draws from its own generator seeded by `(seed, i)`, so the forest
//! is the same whether trees are built on one thread or many.

use ndarray::{Array1, ArrayView1, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::detector::{Checked, Contribution, Fit, Granularity, Input, ParamGuard, Score};
use crate::{DetectorError, bad_param, check_finite};

/// Parameters of an Isolation Forest ([`ParamGuard::check`] them to fit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    pub trees: usize,
    /// ψ, rows per tree (256 in the paper and scikit-learn).
    pub sample_size: usize,
    /// Share of the features each tree may split on, in (0, 1]: a tree
    /// draws `max(1, floor(share × features))` of them (scikit-learn's
    /// `max_features`).
    pub max_features: f64,
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams {
            trees: 100,
            sample_size: 256,
            max_features: 1.0,
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

/// Rows scored together, tree by tree.
const SCORE_BLOCK: usize = 512;

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

impl ParamGuard for IsolationForestParams {
    fn validate(&self) -> Result<(), DetectorError> {
        if self.trees == 0 {
            return Err(bad_param("trees", "at least 1", self.trees));
        }
        if self.sample_size < 2 {
            return Err(bad_param("sample_size", "at least 2", self.sample_size));
        }
        if !(self.max_features > 0.0 && self.max_features <= 1.0) {
            return Err(bad_param("max_features", "in (0, 1]", self.max_features));
        }
        Ok(())
    }
}

impl Fit for Checked<IsolationForestParams> {
    type Fitted = IsolationForest;

    /// Fits on the input's matrix.
    fn fit(&self, input: &Input<'_>) -> Result<IsolationForest, DetectorError> {
        let x = input.x()?;
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
                let features: Vec<usize> = if self.max_features < 1.0 {
                    let count = ((self.max_features * x.ncols() as f64) as usize).max(1);
                    let mut drawn = rand::seq::index::sample(&mut rng, x.ncols(), count).into_vec();
                    drawn.sort_unstable();
                    drawn
                } else {
                    (0..x.ncols()).collect()
                };
                build_tree(x, &features, sample, max_depth, &mut rng)
            })
            .collect();
        Ok(IsolationForest {
            params: (**self).clone(),
            features: x.ncols(),
            psi,
            trees,
        })
    }
}

/// A tree over the `sample` rows that splits on `features` only.
fn build_tree(
    x: ArrayView2<'_, f64>,
    features: &[usize],
    sample: Vec<usize>,
    max_depth: usize,
    rng: &mut ChaCha8Rng,
) -> Tree {
    let mut nodes = Vec::new();
    let grower = Grower {
        x,
        features,
        max_depth,
    };
    grower.grow(sample, 0, rng, &mut nodes);
    Tree { nodes }
}

struct Grower<'a> {
    x: ArrayView2<'a, f64>,
    features: &'a [usize],
    max_depth: usize,
}

impl Grower<'_> {
    /// Appends the subtree for `rows` and returns its index.
    fn grow(
        &self,
        rows: Vec<usize>,
        depth: usize,
        rng: &mut ChaCha8Rng,
        nodes: &mut Vec<Node>,
    ) -> u32 {
        let (x, max_depth) = (self.x, self.max_depth);
        let at = nodes.len() as u32;
        nodes.push(Node::Leaf {
            size: rows.len() as u32,
        });
        if depth >= max_depth || rows.len() <= 1 {
            return at;
        }
        // A feature drawn uniformly among those on which these rows still
        // differ: the first such feature of a random permutation, drawn lazily.
        let mut order: Vec<usize> = self.features.to_vec();
        let mut split = None;
        for t in 0..order.len() {
            let pick = rng.random_range(t..order.len());
            order.swap(t, pick);
            let f = order[t];
            let (lo, hi) = rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    let v = x[[r, f]];
                    (lo.min(v), hi.max(v))
                });
            if hi > lo {
                split = Some((f, lo, hi));
                break;
            }
        }
        let Some((feature, lo, hi)) = split else {
            return at;
        };
        let threshold = lo + rng.random::<f64>() * (hi - lo);
        let (left_rows, right_rows): (Vec<usize>, Vec<usize>) =
            rows.iter().partition(|&&r| x[[r, feature]] < threshold);
        // A threshold equal to `lo` (probability ~0) would leave one side empty.
        if left_rows.is_empty() || right_rows.is_empty() {
            return at;
        }
        let left = self.grow(left_rows, depth + 1, rng, nodes);
        let right = self.grow(right_rows, depth + 1, rng, nodes);
        nodes[at as usize] = Node::Split {
            feature: feature as u32,
            threshold,
            left,
            right,
        };
        at
    }
}

/// A tree laid out for scoring: breadth first, children side by side
/// (`left` and `left + 1`). A leaf sends every row back to itself
/// (threshold NaN, which no value reaches, and `left` its own index), so
/// every row can take exactly `height` steps with no branch on the node
/// kind, and several rows can walk the tree at once.
struct FlatTree {
    nodes: Vec<FlatNode>,
    /// The largest `column` of any node: a block must hold
    /// `last_column + SCORE_BLOCK` values.
    last_column: usize,
    /// Per node: for a leaf, its depth plus the expected depth still to
    /// go below it (`corrections[size]`).
    lengths: Vec<f64>,
    height: usize,
}

#[derive(Clone, Copy)]
struct FlatNode {
    threshold: f64,
    /// Where the node's feature starts in a column-major block:
    /// `feature * SCORE_BLOCK`.
    column: u32,
    left: u32,
}

/// Rows that walk a tree side by side.
const LANES: usize = 8;

impl Tree {
    fn flatten(&self, corrections: &[f64]) -> FlatTree {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut lengths = Vec::with_capacity(self.nodes.len());
        let mut height = 0;
        let mut queue = std::collections::VecDeque::from([(0usize, 0usize)]);
        while let Some((at, depth)) = queue.pop_front() {
            let here = nodes.len() as u32;
            match &self.nodes[at] {
                Node::Leaf { size } => {
                    nodes.push(FlatNode {
                        threshold: f64::NAN,
                        column: 0,
                        left: here,
                    });
                    lengths.push(depth as f64 + corrections[*size as usize]);
                    height = height.max(depth);
                }
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    let children = here + 1 + queue.len() as u32;
                    queue.push_back((*left as usize, depth + 1));
                    queue.push_back((*right as usize, depth + 1));
                    nodes.push(FlatNode {
                        threshold: *threshold,
                        column: feature * SCORE_BLOCK as u32,
                        left: children,
                    });
                    lengths.push(0.0);
                }
            }
        }
        // What the unchecked reads in `add_path_lengths` rely on.
        // A row moves to `left`, or to `left + 1` past a threshold that is
        // not NaN.
        assert!(
            nodes
                .iter()
                .all(|n| { n.left as usize + usize::from(!n.threshold.is_nan()) < nodes.len() }),
            "every step stays inside the tree"
        );
        FlatTree {
            last_column: nodes.iter().map(|n| n.column as usize).max().unwrap_or(0),
            nodes,
            lengths,
            height,
        }
    }
}

impl FlatTree {
    /// Adds the path length of each row of a block to `sums`. The block is
    /// column-major (`block[feature * SCORE_BLOCK + row]`, see
    /// [`column_major`]), so the rows walking side by side are neighbours
    /// and a lane finds its value at a fixed distance from the node's column.
    ///
    /// This walk is where Isolation Forest spends its scoring time, so it
    /// reads without bounds checks; the two asserts make that sound.
    fn add_path_lengths(&self, block: &[f64], sums: &mut [f64; SCORE_BLOCK]) {
        assert!(block.len() >= self.last_column + SCORE_BLOCK);
        assert_eq!(SCORE_BLOCK % LANES, 0);
        for (group, group_sums) in sums.chunks_exact_mut(LANES).enumerate() {
            let rows = &block[group * LANES..];
            let mut at = [0u32; LANES];
            for _ in 0..self.height {
                for (lane, node) in at.iter_mut().enumerate() {
                    // SAFETY: `*node` starts at the root and every step
                    // stays inside the tree (asserted in `flatten`);
                    // `column + group * LANES + lane` is below
                    // `last_column + SCORE_BLOCK` (asserted above).
                    let n = unsafe { *self.nodes.get_unchecked(*node as usize) };
                    let value = unsafe { *rows.get_unchecked(n.column as usize + lane) };
                    *node = n.left + (value >= n.threshold) as u32;
                }
            }
            for (sum, node) in group_sums.iter_mut().zip(at) {
                *sum += self.lengths[node as usize];
            }
        }
    }
}

/// Copies up to `SCORE_BLOCK` rows (row-major, `d` wide) into `block`,
/// column-major; rows past the end repeat the last row, so every lane of
/// every group walks a real row (their sums are not used).
fn column_major(rows: &[f64], d: usize, block: &mut [f64]) {
    let n = rows.len() / d;
    for (f, column) in block.chunks_exact_mut(SCORE_BLOCK).enumerate() {
        for (r, value) in column.iter_mut().enumerate() {
            *value = rows[r.min(n - 1) * d + f];
        }
    }
}

impl IsolationForest {
    pub fn params(&self) -> &IsolationForestParams {
        &self.params
    }

    /// How much each feature did to isolate `row`: every split on a
    /// feature along the row's path in a tree adds 1 / (that path's
    /// length), so features that isolate the row early weigh most. The
    /// weights sum to 1.
    pub fn path_weights(&self, row: ArrayView1<'_, f64>) -> Vec<f64> {
        let mut weights = vec![0.0; self.features];
        let mut used = Vec::new();
        for tree in &self.trees {
            used.clear();
            let mut at = 0;
            let size = loop {
                match tree.nodes[at] {
                    Node::Leaf { size } => break size,
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        used.push(feature as usize);
                        at = if row[feature as usize] >= threshold {
                            right
                        } else {
                            left
                        } as usize;
                    }
                }
            };
            let length = used.len() as f64 + average_path_length(size as usize);
            for &f in &used {
                weights[f] += 1.0 / length.max(1.0);
            }
        }
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            weights.iter_mut().for_each(|w| *w /= total);
        }
        weights
    }

    pub fn features(&self) -> usize {
        self.features
    }
}

impl Score for IsolationForest {
    fn granularity(&self) -> Granularity {
        Granularity::Flow
    }

    /// Scores the input's matrix.
    fn score(&self, input: &Input<'_>) -> Result<Array1<f64>, DetectorError> {
        let x = input.x()?;
        crate::check_scoring_input(x, self.features)?;
        let c = average_path_length(self.psi).max(f64::MIN_POSITIVE);
        let corrections: Vec<f64> = (0..=self.psi).map(average_path_length).collect();
        let flat: Vec<FlatTree> = self
            .trees
            .par_iter()
            .map(|t| t.flatten(&corrections))
            .collect();
        let x = x.as_standard_layout();
        let d = x.ncols();
        let values = x.as_slice().expect("standard layout");
        if d == 0 {
            let length: f64 = flat.iter().map(|t| t.lengths[0]).sum();
            return Ok(Array1::from_elem(
                x.nrows(),
                2f64.powf(-(length / flat.len() as f64) / c),
            ));
        }
        // Blocks of rows, every tree over the block in turn: a tree stays
        // in cache while it serves the block. Sums run in tree order.
        let scores: Vec<f64> = values
            .par_chunks(SCORE_BLOCK * d)
            .flat_map_iter(|rows| {
                let mut block = vec![0.0; SCORE_BLOCK * d];
                column_major(rows, d, &mut block);
                let mut sums = [0.0; SCORE_BLOCK];
                for tree in &flat {
                    tree.add_path_lengths(&block, &mut sums);
                }
                let n = rows.len() / d;
                sums.into_iter()
                    .take(n)
                    .map(|sum| 2f64.powf(-(sum / self.trees.len() as f64) / c))
            })
            .collect();
        Ok(Array1::from(scores))
    }

    /// The features' shares of each flow's isolation paths
    /// ([`IsolationForest::path_weights`]).
    fn explain(
        &self,
        input: &Input<'_>,
        top: usize,
    ) -> Result<Vec<Vec<Contribution>>, DetectorError> {
        let x = input.x()?;
        Ok(input.contributions(top, |i| self.path_weights(x.row(i))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use crate::on_matrix::{FitMatrix, ScoreMatrix};
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
        let model = IsolationForestParams::default().fit_x(x.view()).unwrap();
        let scores = model.score_x(x.view()).unwrap();
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
        let a = params.fit_x(x.view()).unwrap();
        let b = crate::on_one_thread(|| params.fit_x(x.view()).unwrap());
        assert_eq!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&b).unwrap()
        );
        let other = IsolationForestParams {
            seed: 10,
            ..Default::default()
        }
        .fit_x(x.view())
        .unwrap();
        assert_ne!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&other).unwrap()
        );
    }

    #[test]
    fn a_loaded_model_scores_bit_for_bit_the_same() {
        let (x, _) = clusters(400, 4, 3);
        let model = IsolationForestParams::default().fit_x(x.view()).unwrap();
        let loaded =
            serde_json::from_slice::<IsolationForest>(&serde_json::to_vec(&model).unwrap())
                .unwrap();
        let (a, b) = (
            model.score_x(x.view()).unwrap(),
            loaded.score_x(x.view()).unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    /// The path length of `row` in `tree`, walked the plain way.
    fn path_length(tree: &Tree, row: ndarray::ArrayView1<'_, f64>) -> f64 {
        let (mut at, mut depth) = (0, 0);
        loop {
            match tree.nodes[at] {
                Node::Leaf { size } => {
                    return depth as f64 + average_path_length(size as usize);
                }
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if row[feature as usize] >= threshold {
                        right
                    } else {
                        left
                    } as usize;
                    depth += 1;
                }
            }
        }
    }

    #[test]
    fn blocked_walk_matches_a_plain_walk_of_every_tree() {
        // Not a multiple of the lanes nor of the block: the last block is short.
        let (x, _) = clusters(SCORE_BLOCK * 2 + LANES * 3 + 5, 7, 4);
        let model = IsolationForestParams::default().fit_x(x.view()).unwrap();
        let scores = model.score_x(x.view()).unwrap();
        let c = average_path_length(model.psi);
        for (row, score) in x.rows().into_iter().zip(&scores) {
            let sum: f64 = model.trees.iter().map(|t| path_length(t, row)).sum();
            let expected = 2f64.powf(-(sum / model.trees.len() as f64) / c);
            assert_eq!(expected.to_bits(), score.to_bits());
        }
    }

    #[test]
    fn constant_columns_single_rows_and_duplicates_are_handled() {
        let constant = Array2::from_elem((50, 2), 3.0);
        let model = IsolationForestParams::default()
            .fit_x(constant.view())
            .unwrap();
        let scores = model.score_x(constant.view()).unwrap();
        assert!(scores.iter().all(|s| (s - scores[0]).abs() < 1e-12));
        let one = array![[1.0, 2.0]];
        let model = IsolationForestParams::default().fit_x(one.view()).unwrap();
        assert_eq!(model.score_x(one.view()).unwrap().len(), 1);
    }

    #[test]
    fn bad_input_is_rejected_clearly() {
        let x = array![[1.0, f64::NAN], [2.0, 3.0]];
        let err = IsolationForestParams::default()
            .fit_x(x.view())
            .unwrap_err();
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
                .fit_x(empty.view())
                .unwrap_err(),
            DetectorError::Empty("fit")
        );
        let model = IsolationForestParams::default()
            .fit_x(array![[1.0, 2.0], [3.0, 4.0]].view())
            .unwrap();
        assert!(matches!(
            model.score_x(array![[1.0]].view()),
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
            .fit_x(array![[1.0]].view())
            .is_err()
        );
    }

    #[test]
    fn trees_split_only_on_their_share_of_the_features() {
        let (x, labels) = clusters(1000, 10, 4);
        let params = IsolationForestParams {
            max_features: 0.4,
            ..Default::default()
        };
        let model = params.fit_x(x.view()).unwrap();
        // floor(0.4 × 3) = 1 feature per tree.
        for tree in &model.trees {
            let used: std::collections::BTreeSet<u32> = tree
                .nodes
                .iter()
                .filter_map(|n| match n {
                    Node::Split { feature, .. } => Some(*feature),
                    Node::Leaf { .. } => None,
                })
                .collect();
            assert!(used.len() <= 1, "{used:?}");
        }
        let scores = model.score_x(x.view()).unwrap();
        assert!(roc_auc(scores.as_slice().unwrap(), &labels).unwrap() > 0.99);
        assert!(
            IsolationForestParams {
                max_features: 0.0,
                ..Default::default()
            }
            .fit_x(x.view())
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
