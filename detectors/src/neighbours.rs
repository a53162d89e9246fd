//! Exact k-nearest-neighbour search, for the Local Outlier Factor.
//!
//! Two searches give the same neighbours (ties broken by the lower row
//! index): a k-d tree for data of up to [`TREE_MAX_FEATURES`] features,
//! where pruning by splitting planes pays, and a blocked search that
//! computes a block of query rows' distances to every training row as one
//! matrix product, for wider data where trees degrade to a scan anyway (the
//! choice scikit-learn's `algorithm="auto"` makes). Queries run in parallel
//! in blocks whose size depends on the data only, so results do not depend
//! on the number of threads.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

/// Widest data searched with the k-d tree.
pub const TREE_MAX_FEATURES: usize = 15;

/// Distances a brute-force block holds at most (32 MiB per thread).
const BLOCK_DISTANCES: usize = 4 << 20;

/// Training rows per k-d tree leaf.
const LEAF_ROWS: usize = 32;

/// Query rows per parallel task of the tree search.
const TREE_QUERY_BLOCK: usize = 256;

/// The k smallest (distance², row) pairs seen so far, in order.
struct Best {
    k: usize,
    items: Vec<(f64, usize)>,
}

impl Best {
    fn new(k: usize) -> Self {
        Best {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    /// The distance² a candidate must not exceed to enter.
    fn bound(&self) -> f64 {
        if self.items.len() < self.k {
            f64::INFINITY
        } else {
            self.items[self.k - 1].0
        }
    }

    fn offer(&mut self, d2: f64, row: usize) {
        if self.items.len() == self.k {
            let worst = self.items[self.k - 1];
            if (d2, row) >= worst {
                return;
            }
        }
        let at = self.items.partition_point(|&b| b < (d2, row));
        self.items.insert(at, (d2, row));
        self.items.truncate(self.k);
    }

    fn finish(self) -> Vec<(usize, f64)> {
        self.items
            .into_iter()
            .map(|(d2, row)| (row, d2.sqrt()))
            .collect()
    }
}

/// The `k` nearest rows of `train` to each row of `queries` (row and
/// distance, nearest first), skipping row `i` of `train` for query `i` when
/// `exclude_self`.
pub fn nearest(
    queries: ArrayView2<'_, f64>,
    train: ArrayView2<'_, f64>,
    k: usize,
    exclude_self: bool,
) -> Vec<Vec<(usize, f64)>> {
    if train.ncols() <= TREE_MAX_FEATURES {
        KdTree::build(train).nearest(queries, k, exclude_self)
    } else {
        brute(queries, train, k, exclude_self)
    }
}

/// Distances of a block of queries to all training rows as one product.
fn brute(
    queries: ArrayView2<'_, f64>,
    train: ArrayView2<'_, f64>,
    k: usize,
    exclude_self: bool,
) -> Vec<Vec<(usize, f64)>> {
    let train_norms: Array1<f64> = train.map_axis(Axis(1), |r| r.dot(&r));
    let block = (BLOCK_DISTANCES / train.nrows().max(1)).clamp(16, 1024);
    let starts: Vec<usize> = (0..queries.nrows()).step_by(block).collect();
    starts
        .into_par_iter()
        .flat_map_iter(|start| {
            let end = (start + block).min(queries.nrows());
            let rows = queries.slice(s![start..end, ..]);
            let products = rows.dot(&train.t());
            let query_norms: Array1<f64> = rows.map_axis(Axis(1), |r| r.dot(&r));
            (0..end - start)
                .map(|i| {
                    let mut best = Best::new(k);
                    for (j, p) in products.row(i).iter().enumerate() {
                        if exclude_self && j == start + i {
                            continue;
                        }
                        let d2 = (query_norms[i] + train_norms[j] - 2.0 * p).max(0.0);
                        if d2 <= best.bound() {
                            best.offer(d2, j);
                        }
                    }
                    best.finish()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

enum Node {
    Leaf {
        start: usize,
        end: usize,
    },
    Split {
        feature: usize,
        value: f64,
        left: usize,
        right: usize,
    },
}

/// A k-d tree over the training rows, split at the median of the widest
/// feature; rows are copied in tree order so a leaf is one contiguous run.
struct KdTree {
    d: usize,
    /// Training rows in tree order, row-major.
    points: Vec<f64>,
    /// Original row index of each point in tree order.
    rows: Vec<usize>,
    nodes: Vec<Node>,
}

impl KdTree {
    fn build(train: ArrayView2<'_, f64>) -> Self {
        let mut rows: Vec<usize> = (0..train.nrows()).collect();
        let mut nodes = Vec::new();
        Self::grow(train, &mut rows, 0, &mut nodes);
        let d = train.ncols();
        let points: Array2<f64> = train.select(Axis(0), &rows);
        KdTree {
            d,
            points: points.into_raw_vec_and_offset().0,
            rows,
            nodes,
        }
    }

    /// Appends the subtree over `rows[..]` (which starts at `offset` in
    /// tree order) and returns its index.
    fn grow(
        train: ArrayView2<'_, f64>,
        rows: &mut [usize],
        offset: usize,
        nodes: &mut Vec<Node>,
    ) -> usize {
        let at = nodes.len();
        nodes.push(Node::Leaf {
            start: offset,
            end: offset + rows.len(),
        });
        if rows.len() <= LEAF_ROWS {
            return at;
        }
        let (mut feature, mut widest) = (0, 0.0);
        for f in 0..train.ncols() {
            let (lo, hi) = rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    (lo.min(train[[r, f]]), hi.max(train[[r, f]]))
                });
            if hi - lo > widest {
                (feature, widest) = (f, hi - lo);
            }
        }
        if widest == 0.0 {
            return at; // all rows equal: one leaf
        }
        let mid = rows.len() / 2;
        rows.select_nth_unstable_by(mid, |&a, &b| {
            train[[a, feature]]
                .total_cmp(&train[[b, feature]])
                .then(a.cmp(&b))
        });
        let value = train[[rows[mid], feature]];
        let (left_rows, right_rows) = rows.split_at_mut(mid);
        let left = Self::grow(train, left_rows, offset, nodes);
        let right = Self::grow(train, right_rows, offset + mid, nodes);
        nodes[at] = Node::Split {
            feature,
            value,
            left,
            right,
        };
        at
    }

    fn nearest(
        &self,
        queries: ArrayView2<'_, f64>,
        k: usize,
        exclude_self: bool,
    ) -> Vec<Vec<(usize, f64)>> {
        let queries = queries.as_standard_layout();
        let starts: Vec<usize> = (0..queries.nrows()).step_by(TREE_QUERY_BLOCK).collect();
        starts
            .into_par_iter()
            .flat_map_iter(|start| {
                let end = (start + TREE_QUERY_BLOCK).min(queries.nrows());
                (start..end)
                    .map(|q| {
                        let query = queries.row(q);
                        let query = query.as_slice().expect("standard layout");
                        let mut best = Best::new(k);
                        let skip = exclude_self.then_some(q);
                        self.search(0, query, skip, &mut best);
                        best.finish()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn search(&self, node: usize, query: &[f64], skip: Option<usize>, best: &mut Best) {
        match self.nodes[node] {
            Node::Leaf { start, end } => {
                for i in start..end {
                    let row = self.rows[i];
                    if skip == Some(row) {
                        continue;
                    }
                    let point = &self.points[i * self.d..(i + 1) * self.d];
                    let d2: f64 = point
                        .iter()
                        .zip(query)
                        .map(|(p, q)| (p - q) * (p - q))
                        .sum();
                    if d2 <= best.bound() {
                        best.offer(d2, row);
                    }
                }
            }
            Node::Split {
                feature,
                value,
                left,
                right,
            } => {
                let gap = query[feature] - value;
                let (near, far) = if gap < 0.0 {
                    (left, right)
                } else {
                    (right, left)
                };
                self.search(near, query, skip, best);
                if gap * gap <= best.bound() {
                    self.search(far, query, skip, best);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn the_tree_finds_the_same_neighbours_as_the_scan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        // Rounded values: many exact ties and duplicates.
        let train = Array2::from_shape_fn((2000, 3), |_| (rng.random::<f64>() * 8.0).round());
        let queries = Array2::from_shape_fn((300, 3), |_| (rng.random::<f64>() * 8.0).round());
        for (q, exclude) in [(&queries, false), (&train, true)] {
            let tree = KdTree::build(train.view()).nearest(q.view(), 7, exclude);
            let scan = brute(q.view(), train.view(), 7, exclude);
            for (a, b) in tree.iter().zip(&scan) {
                let rows = |n: &Vec<(usize, f64)>| n.iter().map(|x| x.0).collect::<Vec<_>>();
                assert_eq!(rows(a), rows(b));
                for (x, y) in a.iter().zip(b) {
                    assert!((x.1 - y.1).abs() < 1e-9);
                }
            }
        }
    }
}
