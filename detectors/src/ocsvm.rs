//! One-Class SVM (Schölkopf et al., 2001) with an RBF kernel.
//!
//! The one-class SVM finds the smallest region of kernel space that holds
//! all but a `nu` share of the training data; points outside it are
//! anomalies. Two solvers, chosen by the size of the training set:
//!
//! - **exact**: the dual problem solved by SMO with second-order working-set
//!   selection, as libsvm (and so scikit-learn's `OneClassSVM`) does, with
//!   kernel columns computed on demand and kept in a bounded LRU cache. Cost
//!   grows at least with the square of the rows.
//! - **nystroem**: the kernel approximated by Nyström features on a seeded
//!   sample of landmark rows, and a linear one-class SVM fitted on them by
//!   averaged mini-batch stochastic gradient descent. Cost grows linearly
//!   with the rows: this is what finishes a million flows.
//!
//! `solver: auto` uses the exact solver up to `exact_max_rows` training rows
//! and Nyström beyond; the fitted model records which one ran. The score is
//! `rho - f(x)`, the negative of scikit-learn's `decision_function`: above
//! 0 outside the learned region, higher meaning more anomalous.

use std::collections::HashMap;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::detector::{Checked, Fit, Granularity, Input, ParamGuard, Score};
use crate::{DetectorError, bad_param, check_finite};

/// The RBF kernel's width: `exp(-gamma * |x - y|²)`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gamma {
    /// `1 / (features * variance of all training values)`, scikit-learn's default.
    #[default]
    Scale,
    /// `1 / features`.
    Auto,
    Value(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    #[default]
    Auto,
    Exact,
    Nystroem,
}

/// Parameters of a One-Class SVM ([`ParamGuard::check`] them to fit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneClassSvmParams {
    /// Upper bound on the share of training rows outside the region, and
    /// lower bound on the share of support vectors; in (0, 1].
    pub nu: f64,
    pub gamma: Gamma,
    pub solver: Solver,
    /// Largest training set `auto` solves exactly.
    pub exact_max_rows: usize,
    /// SMO stops when the KKT violation falls below this (libsvm's `eps`).
    pub tolerance: f64,
    /// Memory for cached kernel columns of the exact solver, in MiB.
    pub cache_mib: usize,
    /// Landmark rows of the Nyström approximation.
    pub components: usize,
    /// Passes over the training rows of the Nyström solver's SGD.
    pub epochs: usize,
    pub seed: u64,
}

impl Default for OneClassSvmParams {
    fn default() -> Self {
        OneClassSvmParams {
            nu: 0.1,
            gamma: Gamma::Scale,
            solver: Solver::Auto,
            exact_max_rows: 20_000,
            tolerance: 1e-3,
            cache_mib: 256,
            components: 256,
            epochs: 10,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "solver", rename_all = "snake_case")]
enum Fitted {
    Exact {
        support: Array2<f64>,
        coef: Array1<f64>,
        rho: f64,
        iterations: u64,
    },
    Nystroem {
        landmarks: Array2<f64>,
        /// The linear model's weights mapped back onto kernel values
        /// against the landmarks: f(x) = K(x, landmarks) · coef.
        coef: Array1<f64>,
        rho: f64,
    },
}

/// A fitted One-Class SVM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneClassSvm {
    params: OneClassSvmParams,
    features: usize,
    gamma: f64,
    fitted: Fitted,
}

/// What the fit did, for the model's metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitSummary {
    pub solver: &'static str,
    pub gamma: f64,
    pub reason: String,
    pub support_vectors: Option<usize>,
    pub iterations: Option<u64>,
}

/// Squared norms of the rows.
fn row_norms(x: ArrayView2<'_, f64>) -> Array1<f64> {
    x.map_axis(Axis(1), |r| r.dot(&r))
}

/// RBF kernel between every row of `a` and every row of `b`.
fn kernel_block(
    a: ArrayView2<'_, f64>,
    a_sq: ArrayView1<'_, f64>,
    b: ArrayView2<'_, f64>,
    b_sq: ArrayView1<'_, f64>,
    gamma: f64,
) -> Array2<f64> {
    let mut k = a.dot(&b.t());
    for (i, mut row) in k.outer_iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (-gamma * (a_sq[i] + b_sq[j] - 2.0 * *v).max(0.0)).exp();
        }
    }
    k
}

/// Rows per block of a blocked kernel product: fixed, so results do not
/// depend on the number of threads.
const BLOCK: usize = 512;

/// `K(x, b) · w` for every row of `x`, in parallel blocks.
fn kernel_times(
    x: ArrayView2<'_, f64>,
    b: ArrayView2<'_, f64>,
    b_sq: ArrayView1<'_, f64>,
    w: ArrayView2<'_, f64>,
    gamma: f64,
) -> Array2<f64> {
    let starts: Vec<usize> = (0..x.nrows()).step_by(BLOCK).collect();
    let blocks: Vec<Array2<f64>> = starts
        .into_par_iter()
        .map(|start| {
            let end = (start + BLOCK).min(x.nrows());
            let rows = x.slice(s![start..end, ..]);
            let sq = row_norms(rows);
            kernel_block(rows, sq.view(), b, b_sq, gamma).dot(&w)
        })
        .collect();
    let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
    if views.is_empty() {
        return Array2::zeros((0, w.ncols()));
    }
    ndarray::concatenate(Axis(0), &views).expect("blocks share their width")
}

impl ParamGuard for OneClassSvmParams {
    fn validate(&self) -> Result<(), DetectorError> {
        if !(self.nu > 0.0 && self.nu <= 1.0) {
            return Err(bad_param("nu", "in (0, 1]", self.nu));
        }
        if let Gamma::Value(g) = self.gamma
            && !(g > 0.0 && g.is_finite())
        {
            return Err(bad_param("gamma", "positive and finite", g));
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(bad_param(
                "tolerance",
                "positive and finite",
                self.tolerance,
            ));
        }
        if self.components == 0 {
            return Err(bad_param("components", "at least 1", self.components));
        }
        if self.epochs == 0 {
            return Err(bad_param("epochs", "at least 1", self.epochs));
        }
        Ok(())
    }
}

impl OneClassSvmParams {
    fn resolve_gamma(&self, x: ArrayView2<'_, f64>) -> f64 {
        let d = x.ncols() as f64;
        match self.gamma {
            Gamma::Value(g) => g,
            Gamma::Auto => 1.0 / d,
            Gamma::Scale => {
                let n = x.len() as f64;
                let mean = x.sum() / n;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                if var > 0.0 { 1.0 / (d * var) } else { 1.0 }
            }
        }
    }
}

impl Fit for Checked<OneClassSvmParams> {
    type Fitted = OneClassSvm;

    /// Fits on the input's matrix.
    fn fit(&self, input: &Input<'_>) -> Result<OneClassSvm, DetectorError> {
        let x = input.x()?;
        check_finite(x, "fit")?;
        let gamma = self.resolve_gamma(x);
        let exact = match self.solver {
            Solver::Exact => true,
            Solver::Nystroem => false,
            Solver::Auto => x.nrows() <= self.exact_max_rows,
        };
        let fitted = if exact {
            smo(x, self.nu, gamma, self.tolerance, self.cache_mib)
        } else {
            nystroem(x, self, gamma)
        };
        Ok(OneClassSvm {
            params: (**self).clone(),
            features: x.ncols(),
            gamma,
            fitted,
        })
    }
}

/// Kernel columns of the training set, computed on demand and kept in a
/// least-recently-used cache of bounded size.
struct KernelColumns<'a> {
    x: ArrayView2<'a, f64>,
    sq: Array1<f64>,
    gamma: f64,
    capacity: usize,
    clock: u64,
    cache: HashMap<usize, (std::sync::Arc<Vec<f64>>, u64)>,
}

impl<'a> KernelColumns<'a> {
    fn new(x: ArrayView2<'a, f64>, gamma: f64, cache_mib: usize) -> Self {
        let column_bytes = 8 * x.nrows().max(1);
        KernelColumns {
            sq: row_norms(x),
            x,
            gamma,
            capacity: (cache_mib * 1024 * 1024 / column_bytes).max(2),
            clock: 0,
            cache: HashMap::new(),
        }
    }

    fn column(&mut self, i: usize) -> std::sync::Arc<Vec<f64>> {
        self.clock += 1;
        if let Some((column, used)) = self.cache.get_mut(&i) {
            *used = self.clock;
            return column.clone();
        }
        let (x, sq, gamma) = (self.x, &self.sq, self.gamma);
        let xi = x.row(i);
        let column: Vec<f64> = (0..x.nrows())
            .into_par_iter()
            .with_min_len(1024)
            .map(|k| (-gamma * (sq[i] + sq[k] - 2.0 * x.row(k).dot(&xi)).max(0.0)).exp())
            .collect();
        let column = std::sync::Arc::new(column);
        if self.cache.len() >= self.capacity {
            let oldest = self
                .cache
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
                .expect("a full cache has entries");
            self.cache.remove(&oldest);
        }
        self.cache.insert(i, (column.clone(), self.clock));
        column
    }
}

/// libsvm's one-class dual: min ½αᵀQα with 0 ≤ α ≤ 1 and Σα = ν·l, by SMO
/// with second-order working-set selection (Fan, Chen and Lin, 2005).
fn smo(x: ArrayView2<'_, f64>, nu: f64, gamma: f64, eps: f64, cache_mib: usize) -> Fitted {
    const TAU: f64 = 1e-12;
    let l = x.nrows();
    let total = nu * l as f64;
    let full = (total.floor() as usize).min(l);
    let mut alpha = vec![0.0; l];
    alpha[..full].iter_mut().for_each(|a| *a = 1.0);
    if full < l {
        alpha[full] = total - full as f64;
    }
    // Gradient G = Qα, from the rows with α > 0.
    let active: Vec<usize> = (0..l).filter(|&i| alpha[i] > 0.0).collect();
    let sq = row_norms(x);
    let xa = x.select(Axis(0), &active);
    let sq_a: Array1<f64> = active.iter().map(|&i| sq[i]).collect();
    let alpha_a: Array2<f64> = Array2::from_shape_fn((active.len(), 1), |(k, _)| alpha[active[k]]);
    let mut grad: Vec<f64> = kernel_times(x, xa.view(), sq_a.view(), alpha_a.view(), gamma)
        .column(0)
        .to_vec();
    let mut columns = KernelColumns::new(x, gamma, cache_mib);
    let max_iterations = (100 * l as u64).max(10_000_000);
    let mut iterations = 0u64;
    while iterations < max_iterations {
        // i: the most violating row that can still grow.
        let mut gmax = f64::NEG_INFINITY;
        let mut i = usize::MAX;
        for t in 0..l {
            if alpha[t] < 1.0 && -grad[t] >= gmax {
                gmax = -grad[t];
                i = t;
            }
        }
        if i == usize::MAX {
            break;
        }
        let qi = columns.column(i);
        // j: the row that can shrink and most decreases the objective with i.
        let mut gmax2 = f64::NEG_INFINITY;
        let mut j = usize::MAX;
        let mut best = f64::INFINITY;
        for t in 0..l {
            if alpha[t] > 0.0 {
                let diff = gmax + grad[t];
                if grad[t] >= gmax2 {
                    gmax2 = grad[t];
                }
                if diff > 0.0 {
                    let quad = 2.0 - 2.0 * qi[t];
                    let objective = -(diff * diff) / if quad > 0.0 { quad } else { TAU };
                    if objective <= best {
                        best = objective;
                        j = t;
                    }
                }
            }
        }
        if gmax + gmax2 < eps || j == usize::MAX {
            break;
        }
        iterations += 1;
        let qj = columns.column(j);
        let quad = (2.0 - 2.0 * qi[j]).max(TAU);
        let (old_i, old_j) = (alpha[i], alpha[j]);
        let delta = (grad[i] - grad[j]) / quad;
        let sum = old_i + old_j;
        let (mut ai, mut aj) = (old_i - delta, old_j + delta);
        if sum > 1.0 {
            if ai > 1.0 {
                ai = 1.0;
                aj = sum - 1.0;
            }
        } else if aj < 0.0 {
            aj = 0.0;
            ai = sum;
        }
        if sum > 1.0 {
            if aj > 1.0 {
                aj = 1.0;
                ai = sum - 1.0;
            }
        } else if ai < 0.0 {
            ai = 0.0;
            aj = sum;
        }
        alpha[i] = ai;
        alpha[j] = aj;
        let (di, dj) = (ai - old_i, aj - old_j);
        grad.par_iter_mut()
            .with_min_len(4096)
            .enumerate()
            .for_each(|(k, g)| *g += qi[k] * di + qj[k] * dj);
    }
    // rho: the mean gradient of the free rows, else the middle of the bounds.
    let (mut upper, mut lower, mut free_sum, mut free) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for t in 0..l {
        if alpha[t] >= 1.0 {
            lower = lower.max(grad[t]);
        } else if alpha[t] <= 0.0 {
            upper = upper.min(grad[t]);
        } else {
            free += 1;
            free_sum += grad[t];
        }
    }
    let rho = if free > 0 {
        free_sum / free as f64
    } else {
        (upper + lower) / 2.0
    };
    let support: Vec<usize> = (0..l).filter(|&t| alpha[t] > 0.0).collect();
    Fitted::Exact {
        support: x.select(Axis(0), &support),
        coef: support.iter().map(|&t| alpha[t]).collect(),
        rho,
        iterations,
    }
}

/// Nyström features on seeded landmarks, then a linear one-class SVM,
/// min ½|w|² − ρ + 1/(ν·n) Σ max(0, ρ − w·φᵢ), by averaged mini-batch SGD.
fn nystroem(x: ArrayView2<'_, f64>, params: &OneClassSvmParams, gamma: f64) -> Fitted {
    let n = x.nrows();
    let m = params.components.min(n);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut picked = rand::seq::index::sample(&mut rng, n, m).into_vec();
    picked.sort_unstable();
    let landmarks = x.select(Axis(0), &picked);
    let l_sq = row_norms(landmarks.view());
    let k_mm = kernel_block(
        landmarks.view(),
        l_sq.view(),
        landmarks.view(),
        l_sq.view(),
        gamma,
    );
    let eigen = nalgebra::DMatrix::from_fn(m, m, |i, j| k_mm[[i, j]]).symmetric_eigen();
    // projection = U diag(1/√λ) Uᵀ (tiny eigenvalues clipped as scikit-learn does).
    let mut projection = Array2::zeros((m, m));
    for (e, &lambda) in eigen.eigenvalues.iter().enumerate() {
        let inv = 1.0 / lambda.max(1e-12).sqrt();
        let u = eigen.eigenvectors.column(e);
        for i in 0..m {
            let ui = u[i] * inv;
            for j in 0..m {
                projection[[i, j]] += ui * u[j];
            }
        }
    }
    let phi = kernel_times(x, landmarks.view(), l_sq.view(), projection.view(), gamma);

    const BATCH: usize = 256;
    let nu = params.nu;
    let mut w = Array1::<f64>::zeros(m);
    let mut rho = 0.0;
    let (mut w_avg, mut rho_avg, mut averaged) = (Array1::<f64>::zeros(m), 0.0, 0usize);
    let mut order: Vec<usize> = (0..n).collect();
    let steps_per_epoch = n.div_ceil(BATCH);
    let total_steps = steps_per_epoch * params.epochs;
    let mut step = 0usize;
    for _ in 0..params.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(BATCH) {
            step += 1;
            let eta = 1.0 / (step as f64 + 10.0);
            let mut pull = Array1::<f64>::zeros(m);
            let mut violators = 0usize;
            for &r in batch {
                let row = phi.row(r);
                if w.dot(&row) < rho {
                    pull += &row;
                    violators += 1;
                }
            }
            let b = batch.len() as f64;
            let grad_w = &w - &(pull / (nu * b));
            let grad_rho = -1.0 + violators as f64 / (nu * b);
            w.scaled_add(-eta, &grad_w);
            rho -= eta * grad_rho;
            // Polyak averaging over the second half of the steps.
            if step * 2 > total_steps {
                averaged += 1;
                let k = averaged as f64;
                w_avg = &w_avg + &((&w - &w_avg) / k);
                rho_avg += (rho - rho_avg) / k;
            }
        }
    }
    Fitted::Nystroem {
        landmarks,
        coef: projection.dot(&w_avg),
        rho: rho_avg,
    }
}

impl OneClassSvm {
    pub fn params(&self) -> &OneClassSvmParams {
        &self.params
    }

    pub fn summary(&self) -> FitSummary {
        let (exact_max_rows, requested) = (self.params.exact_max_rows, self.params.solver);
        match &self.fitted {
            Fitted::Exact {
                coef, iterations, ..
            } => FitSummary {
                solver: "exact",
                gamma: self.gamma,
                reason: match requested {
                    Solver::Exact => "exact solver requested".into(),
                    _ => format!("training rows within exact_max_rows ({exact_max_rows})"),
                },
                support_vectors: Some(coef.len()),
                iterations: Some(*iterations),
            },
            Fitted::Nystroem { landmarks, .. } => FitSummary {
                solver: "nystroem",
                gamma: self.gamma,
                reason: match requested {
                    Solver::Nystroem => "Nyström approximation requested".into(),
                    _ => format!(
                        "training rows above exact_max_rows ({exact_max_rows}): Nyström features on {} landmarks with a linear one-class SVM by SGD",
                        landmarks.nrows()
                    ),
                },
                support_vectors: None,
                iterations: None,
            },
        }
    }
}

impl Score for OneClassSvm {
    fn granularity(&self) -> Granularity {
        Granularity::Flow
    }

    /// Scores the input's matrix.
    fn score(&self, input: &Input<'_>) -> Result<Array1<f64>, DetectorError> {
        let x = input.x()?;
        crate::check_scoring_input(x, self.features)?;
        Ok(match &self.fitted {
            Fitted::Exact {
                support, coef, rho, ..
            } => {
                let sq = row_norms(support.view());
                let coef = coef.view().insert_axis(Axis(1));
                let f = kernel_times(x, support.view(), sq.view(), coef, self.gamma);
                f.column(0).mapv(|v| rho - v)
            }
            Fitted::Nystroem {
                landmarks,
                coef,
                rho,
            } => {
                let sq = row_norms(landmarks.view());
                let coef = coef.view().insert_axis(Axis(1));
                let f = kernel_times(x, landmarks.view(), sq.view(), coef, self.gamma);
                f.column(0).mapv(|v| rho - v)
            }
        })
    }

    /// The solver that ran and why ([`OneClassSvm::summary`]).
    fn fit_facts(&self) -> serde_json::Value {
        serde_json::to_value(self.summary()).expect("summaries serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use crate::on_matrix::{FitMatrix, ScoreMatrix};
    use ndarray::array;
    use rand::RngExt;

    /// A Gaussian-ish blob at the origin and planted points far away.
    fn blob(n: usize, planted: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((n + planted, 3));
        for i in 0..n {
            for f in 0..3 {
                x[[i, f]] = rng.random::<f64>() + rng.random::<f64>() - 1.0;
            }
        }
        for i in n..n + planted {
            for f in 0..3 {
                x[[i, f]] = 4.0 + 2.0 * rng.random::<f64>();
            }
        }
        let labels = (0..n + planted).map(|i| i >= n).collect();
        (x, labels)
    }

    #[test]
    fn exact_solver_satisfies_the_dual_constraints_and_finds_planted_outliers() {
        let (x, labels) = blob(600, 6, 1);
        let model = OneClassSvmParams::default().fit_x(x.view()).unwrap();
        let Fitted::Exact { coef, .. } = &model.fitted else {
            panic!("600 rows are solved exactly")
        };
        // Σα = ν·l and 0 ≤ α ≤ 1; at least ν·l support vectors.
        let sum: f64 = coef.sum();
        assert!((sum - 0.1 * 606.0).abs() < 1e-6, "{sum}");
        assert!(coef.iter().all(|a| (0.0..=1.0).contains(a)));
        assert!(coef.len() >= 60);
        let scores = model.score_x(x.view()).unwrap();
        assert!(roc_auc(scores.as_slice().unwrap(), &labels).unwrap() > 0.99);
        // About ν of the training rows fall outside the region.
        let outside = scores.iter().filter(|s| **s > 0.0).count() as f64 / 606.0;
        assert!((0.03..0.15).contains(&outside), "{outside}");
        assert_eq!(model.summary().solver, "exact");
    }

    #[test]
    fn nystroem_solver_ranks_like_the_exact_one() {
        let (x, labels) = blob(3000, 30, 2);
        let exact = OneClassSvmParams::default().fit_x(x.view()).unwrap();
        let approx = OneClassSvmParams {
            exact_max_rows: 1000,
            ..Default::default()
        }
        .fit_x(x.view())
        .unwrap();
        assert_eq!(approx.summary().solver, "nystroem");
        assert!(approx.summary().reason.contains("exact_max_rows (1000)"));
        let (a, b) = (
            exact.score_x(x.view()).unwrap(),
            approx.score_x(x.view()).unwrap(),
        );
        assert!(roc_auc(b.as_slice().unwrap(), &labels).unwrap() > 0.99);
        // The two agree on which inliers are on the edge.
        let inliers: Vec<usize> = (0..3000).collect();
        let edge_exact: Vec<bool> = inliers.iter().map(|&i| a[i] > 0.0).collect();
        let agreement = roc_auc(
            &inliers.iter().map(|&i| b[i]).collect::<Vec<_>>(),
            &edge_exact,
        )
        .unwrap();
        assert!(agreement > 0.9, "{agreement}");
    }

    #[test]
    fn deterministic_whatever_the_threads_and_exact_after_loading() {
        let (x, _) = blob(800, 8, 3);
        for solver in [Solver::Exact, Solver::Nystroem] {
            let params = OneClassSvmParams {
                solver,
                ..Default::default()
            };
            let a = params.fit_x(x.view()).unwrap();
            let b = crate::on_one_thread(|| params.fit_x(x.view()).unwrap());
            let (ja, jb) = (
                serde_json::to_vec(&a).unwrap(),
                serde_json::to_vec(&b).unwrap(),
            );
            assert_eq!(ja, jb);
            let loaded: OneClassSvm = serde_json::from_slice(&ja).unwrap();
            let (sa, sl) = (
                a.score_x(x.view()).unwrap(),
                loaded.score_x(x.view()).unwrap(),
            );
            assert!(sa.iter().zip(&sl).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }

    #[test]
    fn degenerate_inputs() {
        // A single row, a constant column, duplicates: finite scores.
        let one = array![[1.0, 2.0]];
        let model = OneClassSvmParams::default().fit_x(one.view()).unwrap();
        assert!(model.score_x(one.view()).unwrap()[0].is_finite());
        let same = Array2::from_elem((40, 2), 3.0);
        let model = OneClassSvmParams::default().fit_x(same.view()).unwrap();
        assert!(
            model
                .score_x(same.view())
                .unwrap()
                .iter()
                .all(|s| s.is_finite())
        );
        let bad = array![[1.0, f64::INFINITY]];
        assert!(matches!(
            OneClassSvmParams::default().fit_x(bad.view()),
            Err(DetectorError::NonFinite {
                row: 0,
                feature: 1,
                ..
            })
        ));
        assert!(
            OneClassSvmParams {
                nu: 0.0,
                ..Default::default()
            }
            .fit_x(one.view())
            .is_err()
        );
    }
}
