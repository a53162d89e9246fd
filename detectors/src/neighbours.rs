//! Exact k-nearest-neighbour search, for the Local Outlier Factor.
//!
//! Two searches give the same neighbours (ties broken by the lower row
//! index):
//!
//! - a k-d tree for data of up to [`TREE_MAX_FEATURES`] features, where
//!   pruning by the nodes' bounding boxes pays;
//! - for wider data, where a tree degrades to a scan (scikit-learn's
//!   `algorithm="auto"` scans there), a search that splits the squared
//!   distance in two. The columns that take two values (one-hot
//!   categories, flags: most of a wide matrix) group the training rows, and
//!   between a query and a group they add a constant known before any row
//!   is looked at; a query meets the groups nearest first and stops when
//!   that constant alone is beyond its k-th neighbour. The other columns are
//!   multiplied out, a block of queries by a group's rows as one matrix
//!   product. On NSL-KDD's 118 columns that leaves 30 to multiply, and a
//!   query meets about a tenth of the training rows.
//!
//! Queries run in parallel in blocks whose size depends on the data only,
//! so results do not depend on the number of threads.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

/// Widest data searched with the k-d tree.
pub const TREE_MAX_FEATURES: usize = 15;

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

    /// Offers the training rows whose inner products with the query are
    /// `products`: row `rows[t]` at distance² `apart + |query|² - 2
    /// products[t] + norms[t]`, where `apart` is what the columns left out
    /// of the product add; `skip` is never taken.
    fn offer_products(
        &mut self,
        apart: f64,
        query_norm: f64,
        products: &[f64],
        norms: &[f64],
        rows: &[usize],
        skip: Option<usize>,
    ) {
        const LANES: usize = 8;
        let mut at = 0;
        let offer_from = |best: &mut Best, at: usize, lanes: usize| {
            for t in at..at + lanes {
                let d2 = apart + (query_norm + norms[t] - 2.0 * products[t]).max(0.0);
                if d2 <= best.bound() && skip != Some(rows[t]) {
                    best.offer(d2, rows[t]);
                }
            }
        };
        // Most rows are too far: find that out a chunk at a time, from
        // the part of the distance that differs between rows.
        let limit = |best: &Best| best.bound() - apart - query_norm;
        let mut within = limit(self);
        if within + query_norm < 0.0 {
            return; // this group is too far
        }
        for (p, n) in products.chunks_exact(LANES).zip(norms.chunks_exact(LANES)) {
            let near = (0..LANES).fold(false, |near, l| near | (n[l] - 2.0 * p[l] <= within));
            if near {
                offer_from(self, at, LANES);
                within = limit(self);
            }
            at += LANES;
        }
        offer_from(self, at, products.len() - at);
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
        Groups::build(train).nearest(queries, k, exclude_self)
    }
}

/// Neighbours found in the order `queries` gives, put back in the queries'
/// own order.
fn in_query_order(
    queries: impl ExactSizeIterator<Item = usize>,
    found: impl IntoIterator<Item = Vec<(usize, f64)>>,
) -> Vec<Vec<(usize, f64)>> {
    let mut out = vec![Vec::new(); queries.len()];
    for (query, neighbours) in queries.zip(found) {
        out[query] = neighbours;
    }
    out
}

/// The training rows grouped by their values in the columns that take two
/// values (see the module's docs).
struct Groups {
    /// The columns that take at most two values in the training rows.
    two_valued: Vec<usize>,
    /// The rest.
    other: Vec<usize>,
    /// Each group's values in the two-valued columns (groups × two-valued).
    patterns: Array2<f64>,
    /// Each group's rows, as a range of `rows` and `points`.
    ranges: Vec<(usize, usize)>,
    /// Original row index of each training row, in group order.
    rows: Vec<usize>,
    /// The other columns of the training rows, in group order.
    points: Array2<f64>,
    /// Squared norm of each row of `points`.
    norms: Array1<f64>,
}

/// Query rows per task of the grouped search.
const QUERY_BLOCK: usize = 128;

/// Training rows multiplied with a block of queries at a time.
const TRAIN_CHUNK: usize = 2048;

/// Training rows a group has on average at least, or the rows are not
/// grouped (64 groups are always allowed).
const MIN_GROUP_ROWS: usize = 16;

/// The rows of `x` in the order of their values in `columns`, and the
/// range of each run of equal values, cut after `longest` rows.
fn group_rows(
    x: ArrayView2<'_, f64>,
    columns: &[usize],
    longest: usize,
) -> (Vec<usize>, Vec<(usize, usize)>) {
    let keys: Vec<Vec<u64>> = x
        .outer_iter()
        .map(|row| {
            columns
                .iter()
                // -0.0 and 0.0 are one value.
                .map(|&j| if row[j] == 0.0 { 0 } else { row[j].to_bits() })
                .collect()
        })
        .collect();
    let mut rows: Vec<usize> = (0..x.nrows()).collect();
    rows.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 1..=rows.len() {
        if i == rows.len() || keys[rows[i]] != keys[rows[start]] || i - start == longest {
            ranges.push((start, i));
            start = i;
        }
    }
    (rows, ranges)
}

impl Groups {
    fn build(train: ArrayView2<'_, f64>) -> Self {
        let (two_valued, other): (Vec<usize>, Vec<usize>) = (0..train.ncols()).partition(|&j| {
            let column = train.column(j);
            let Some(&first) = column.first() else {
                return true;
            };
            let second = column.iter().find(|&&v| v != first).copied();
            second.is_none_or(|second| column.iter().all(|&v| v == first || v == second))
        });
        let (mut two_valued, mut other) = (two_valued, other);
        let (mut rows, mut ranges) = group_rows(train, &two_valued, usize::MAX);
        if ranges.len() > (train.nrows() / MIN_GROUP_ROWS).max(64) {
            // Groups this small would cost a product each: one group.
            other = (0..train.ncols()).collect();
            two_valued.clear();
            (rows, ranges) = group_rows(train, &two_valued, usize::MAX);
        }
        let patterns = Array2::from_shape_fn((ranges.len(), two_valued.len()), |(g, j)| {
            train[[rows[ranges[g].0], two_valued[j]]]
        });
        let points = train.select(Axis(0), &rows).select(Axis(1), &other);
        let norms = points.map_axis(Axis(1), |r| r.dot(&r));
        Groups {
            two_valued,
            other,
            patterns,
            ranges,
            rows,
            points,
            norms,
        }
    }

    fn nearest(
        &self,
        queries: ArrayView2<'_, f64>,
        k: usize,
        exclude_self: bool,
    ) -> Vec<Vec<(usize, f64)>> {
        // Queries with the same two-valued part share the order of groups.
        let (order, blocks) = group_rows(queries, &self.two_valued, QUERY_BLOCK);
        let tasks: Vec<&[usize]> = blocks.iter().map(|&(a, b)| &order[a..b]).collect();
        let found: Vec<Vec<Vec<(usize, f64)>>> = tasks
            .into_par_iter()
            .map_init(
                || Array2::zeros((QUERY_BLOCK, TRAIN_CHUNK.min(self.rows.len()))),
                |products, block| self.search(queries, block, k, exclude_self, products),
            )
            .collect();
        in_query_order(order.iter().copied(), found.into_iter().flatten())
    }

    /// The neighbours of a block of queries that share their two-valued
    /// part, multiplied out in `products` (a buffer of the task's).
    fn search(
        &self,
        queries: ArrayView2<'_, f64>,
        block: &[usize],
        k: usize,
        exclude_self: bool,
        products: &mut Array2<f64>,
    ) -> Vec<Vec<(usize, f64)>> {
        let first = queries.row(block[0]);
        let mut between: Vec<(f64, usize)> = self
            .patterns
            .outer_iter()
            .enumerate()
            .map(|(g, pattern)| {
                let d2 = self
                    .two_valued
                    .iter()
                    .zip(pattern)
                    .map(|(&j, p)| (first[j] - p) * (first[j] - p))
                    .sum::<f64>();
                (d2, g)
            })
            .collect();
        between.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mine = queries.select(Axis(0), block).select(Axis(1), &self.other);
        let mine_norms = mine.map_axis(Axis(1), |r| r.dot(&r));
        let mut best: Vec<Best> = block.iter().map(|_| Best::new(k)).collect();
        for (apart, g) in between {
            let bound = best.iter().map(Best::bound).fold(0.0, f64::max);
            if apart > bound {
                break; // every later group is at least as far
            }
            let (group_start, group_end) = self.ranges[g];
            for start in (group_start..group_end).step_by(TRAIN_CHUNK) {
                let end = (start + TRAIN_CHUNK).min(group_end);
                let mut products = products.slice_mut(s![..block.len(), ..end - start]);
                ndarray::linalg::general_mat_mul(
                    1.0,
                    &mine,
                    &self.points.slice(s![start..end, ..]).t(),
                    0.0,
                    &mut products,
                );
                let norms = &self.norms.as_slice().expect("owned")[start..end];
                let rows = &self.rows[start..end];
                for (i, best) in best.iter_mut().enumerate() {
                    let skip = exclude_self.then_some(block[i]);
                    let products = products.row(i);
                    let products = products.as_slice().expect("rows are contiguous");
                    best.offer_products(apart, mine_norms[i], products, norms, rows, skip);
                }
            }
        }
        best.into_iter().map(Best::finish).collect()
    }
}

enum Node {
    Leaf {
        start: usize,
        end: usize,
    },
    Split {
        start: usize,
        end: usize,
        feature: usize,
        value: f64,
        left: usize,
        right: usize,
    },
}

/// A k-d tree over the training rows, split at the median of the widest
/// feature. Rows are copied in tree order, a leaf's rows feature by
/// feature (its distances to a query are computed side by side).
struct KdTree {
    d: usize,
    /// Each leaf's points, feature-major: the leaf `start..end` holds
    /// feature `f` of its point `p` at `start * d + f * (end - start) + p`.
    points: Vec<f64>,
    /// Original row index of each point in tree order.
    rows: Vec<usize>,
    nodes: Vec<Node>,
    /// Each node's bounding box of its points: lows then highs, `2 d`
    /// values a node.
    boxes: Vec<f64>,
}

impl KdTree {
    fn build(train: ArrayView2<'_, f64>) -> Self {
        let mut rows: Vec<usize> = (0..train.nrows()).collect();
        let mut nodes = Vec::new();
        Self::grow(train, &mut rows, 0, &mut nodes);
        let d = train.ncols();
        let mut points = vec![0.0; rows.len() * d];
        let mut boxes = vec![0.0; nodes.len() * 2 * d];
        for (node, bounds) in nodes.iter().zip(boxes.chunks_mut(2 * d)) {
            let (start, end) = match *node {
                Node::Leaf { start, end } | Node::Split { start, end, .. } => (start, end),
            };
            let (lows, highs) = bounds.split_at_mut(d);
            for f in 0..d {
                let values = rows[start..end].iter().map(|&r| train[[r, f]]);
                lows[f] = values.clone().fold(f64::INFINITY, f64::min);
                highs[f] = values.fold(f64::NEG_INFINITY, f64::max);
            }
            if let Node::Leaf { start, end } = *node {
                let leaf = &mut points[start * d..end * d];
                for (p, &row) in rows[start..end].iter().enumerate() {
                    for f in 0..d {
                        leaf[f * (end - start) + p] = train[[row, f]];
                    }
                }
            }
        }
        KdTree {
            d,
            points,
            rows,
            nodes,
            boxes,
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
        let right_len = right_rows.len();
        let left = Self::grow(train, left_rows, offset, nodes);
        let right = Self::grow(train, right_rows, offset + mid, nodes);
        nodes[at] = Node::Split {
            start: offset,
            end: offset + mid + right_len,
            feature,
            value,
            left,
            right,
        };
        at
    }

    /// The leaf a point falls in.
    fn leaf_of(&self, query: &[f64]) -> usize {
        let mut node = 0;
        while let Node::Split {
            feature,
            value,
            left,
            right,
            ..
        } = self.nodes[node]
        {
            node = if query[feature] < value { left } else { right };
        }
        node
    }

    fn nearest(
        &self,
        queries: ArrayView2<'_, f64>,
        k: usize,
        exclude_self: bool,
    ) -> Vec<Vec<(usize, f64)>> {
        let queries = queries.as_standard_layout();
        let query = |q: usize| queries.row(q).to_slice().expect("standard layout");
        // Queries in tree order: neighbouring queries share the nodes and
        // points they visit.
        let mut order: Vec<(usize, usize)> = (0..queries.nrows())
            .map(|q| (self.leaf_of(query(q)), q))
            .collect();
        order.sort_unstable();
        let found: Vec<Vec<(usize, f64)>> = order
            .par_chunks(TREE_QUERY_BLOCK)
            .flat_map_iter(|block| {
                block.iter().map(|&(_, q)| {
                    let mut best = Best::new(k);
                    let skip = exclude_self.then_some(q);
                    self.search(0, query(q), skip, &mut best);
                    best.finish()
                })
            })
            .collect();
        in_query_order(order.iter().map(|&(_, q)| q), found)
    }

    /// Squared distance from a query to a node's bounding box.
    fn reach(&self, node: usize, query: &[f64]) -> f64 {
        let (lows, highs) = self.boxes[node * 2 * self.d..(node + 1) * 2 * self.d].split_at(self.d);
        query
            .iter()
            .zip(lows.iter().zip(highs))
            .map(|(&q, (&lo, &hi))| {
                // Comparisons rather than f64::max: no NaN here, and this
                // is the tree's innermost loop.
                let out = if q < lo {
                    lo - q
                } else if q > hi {
                    q - hi
                } else {
                    0.0
                };
                out * out
            })
            .sum()
    }

    /// Visits `node` and its subtree, nearer child first, leaving out
    /// what lies beyond the k-th neighbour found.
    fn search(&self, node: usize, query: &[f64], skip: Option<usize>, best: &mut Best) {
        match self.nodes[node] {
            Node::Leaf { start, end } => self.scan_leaf(start, end, query, skip, best),
            Node::Split { left, right, .. } => {
                let (to_left, to_right) = (self.reach(left, query), self.reach(right, query));
                let ((near, near_reach), (far, far_reach)) = if to_left <= to_right {
                    ((left, to_left), (right, to_right))
                } else {
                    ((right, to_right), (left, to_left))
                };
                if near_reach <= best.bound() {
                    self.search(near, query, skip, best);
                }
                if far_reach <= best.bound() {
                    self.search(far, query, skip, best);
                }
            }
        }
    }

    fn scan_leaf(
        &self,
        start: usize,
        end: usize,
        query: &[f64],
        skip: Option<usize>,
        best: &mut Best,
    ) {
        let n = end - start;
        let leaf = &self.points[start * self.d..end * self.d];
        // A leaf of equal rows may hold more than LEAF_ROWS.
        for from in (0..n).step_by(LEAF_ROWS) {
            let to = (from + LEAF_ROWS).min(n);
            let mut d2 = [0.0; LEAF_ROWS];
            let d2 = &mut d2[..to - from];
            for (f, &q) in query.iter().enumerate() {
                for (d2, &p) in d2.iter_mut().zip(&leaf[f * n + from..f * n + to]) {
                    *d2 += (p - q) * (p - q);
                }
            }
            let bound = best.bound();
            if d2.iter().all(|&d| d > bound) {
                continue;
            }
            for (&d, &row) in d2.iter().zip(&self.rows[start + from..start + to]) {
                if d <= best.bound() && skip != Some(row) {
                    best.offer(d, row);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Every distance computed directly, sorted: what both searches
    /// must find.
    fn scan(
        queries: ArrayView2<'_, f64>,
        train: ArrayView2<'_, f64>,
        k: usize,
        exclude_self: bool,
    ) -> Vec<Vec<(usize, f64)>> {
        (0..queries.nrows())
            .map(|q| {
                let mut all: Vec<(f64, usize)> = (0..train.nrows())
                    .filter(|&t| !(exclude_self && t == q))
                    .map(|t| {
                        let d = &queries.row(q) - &train.row(t);
                        (d.dot(&d), t)
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all.truncate(k);
                all.into_iter().map(|(d2, t)| (t, d2.sqrt())).collect()
            })
            .collect()
    }

    fn assert_same(found: &[Vec<(usize, f64)>], expected: &[Vec<(usize, f64)>]) {
        assert_eq!(found.len(), expected.len());
        for (q, (a, b)) in found.iter().zip(expected).enumerate() {
            let rows = |n: &Vec<(usize, f64)>| n.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(rows(a), rows(b), "query {q}");
            for (x, y) in a.iter().zip(b) {
                assert!((x.1 - y.1).abs() < 1e-9, "query {q}: {} vs {}", x.1, y.1);
            }
        }
    }

    /// Rounded values (exact in floating point, many ties and duplicates):
    /// `continuous` columns of 0..8, then one-hot groups of three
    /// categories and a 0/1 flag as a scaler leaves them.
    fn mixed(rng: &mut impl RngExt, rows: usize, continuous: usize) -> Array2<f64> {
        let mut x = Array2::zeros((rows, continuous + 7));
        for mut row in x.outer_iter_mut() {
            for j in 0..continuous {
                row[j] = (rng.random::<f64>() * 8.0).round();
            }
            for group in 0..2 {
                let on = rng.random_range(0..3);
                for c in 0..3 {
                    row[continuous + 3 * group + c] = if c == on { 1.5 } else { -0.25 };
                }
            }
            row[continuous + 6] = if rng.random::<f64>() < 0.1 { 3.0 } else { -0.5 };
        }
        x
    }

    #[test]
    fn both_searches_find_the_neighbours_a_scan_finds() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for continuous in [0, 1, 3, 20] {
            let train = mixed(&mut rng, 1500, continuous);
            let mut queries = mixed(&mut rng, 300, continuous);
            // Values the training rows never took, in a two-valued column too.
            queries[[0, continuous]] = 0.75;
            queries[[1, continuous + 6]] = 9.0;
            for (q, exclude) in [(&queries, false), (&train, true)] {
                let expected = scan(q.view(), train.view(), 7, exclude);
                let grouped = Groups::build(train.view()).nearest(q.view(), 7, exclude);
                assert_same(&grouped, &expected);
                let tree = KdTree::build(train.view()).nearest(q.view(), 7, exclude);
                assert_same(&tree, &expected);
            }
        }
    }

    #[test]
    fn the_groups_are_the_rows_two_valued_columns() {
        let train = ndarray::array![
            [0.0, 5.0, 1.0],
            [1.0, 6.0, 1.0],
            [0.0, 7.0, 1.0],
            [1.0, 5.0, 1.0],
        ];
        let groups = Groups::build(train.view());
        // Column 1 takes three values; column 2, one.
        assert_eq!(groups.two_valued, vec![0, 2]);
        assert_eq!(groups.other, vec![1]);
        assert_eq!(groups.ranges, vec![(0, 2), (2, 4)]);
        assert_eq!(groups.rows, vec![0, 2, 1, 3]);
        // k larger than the rows there are: every row, nearest first.
        let all = Groups::build(train.view()).nearest(train.view(), 10, true);
        assert_eq!(
            all[0].iter().map(|n| n.0).collect::<Vec<_>>(),
            vec![3, 1, 2]
        );
    }

    #[test]
    fn rows_that_would_make_small_groups_are_not_grouped() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // 20 random flags: about as many patterns as rows.
        let train = Array2::from_shape_fn((600, 21), |(_, j)| {
            if j == 0 {
                rng.random::<f64>().round()
            } else {
                f64::from(rng.random::<bool>())
            }
        });
        let groups = Groups::build(train.view());
        assert_eq!(groups.ranges, vec![(0, 600)]);
        assert!(groups.two_valued.is_empty());
        let expected = scan(train.view(), train.view(), 5, true);
        assert_same(&groups.nearest(train.view(), 5, true), &expected);
    }
}
