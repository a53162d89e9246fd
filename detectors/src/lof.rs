//! Local Outlier Factor (Breunig, Kriegel, Ng and Sander, 2000), in novelty
//! mode: fitted on a training set, it scores new points against it.
//!
//! A point's local reachability density is the inverse of its mean
//! reachability distance to its k nearest training points; its LOF is the
//! mean density of those neighbours over its own. About 1 inside a cluster,
//! well above 1 for an outlier; scikit-learn's `score_samples` is its
//! negative. Distances are Euclidean on the features as given (the model's
//! preprocessing scales them). Neighbours are found exactly (see
//! [`crate::neighbours`]); ties and duplicates are handled as scikit-learn does (a
//! 1e-10 floor keeps densities of duplicate points finite).

use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::detector::{Checked, Fit, Granularity, Input, ParamGuard, Score};
use crate::neighbours::nearest;
use crate::{DetectorError, bad_param, check_finite};

/// Parameters of a Local Outlier Factor ([`ParamGuard::check`] them to fit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalOutlierFactorParams {
    /// k, the number of neighbours (20 in scikit-learn).
    pub neighbours: usize,
    /// Training rows kept at most (a seeded sample beyond): LOF keeps its
    /// training set, and scoring cost grows with it.
    pub max_train: usize,
    pub seed: u64,
}

impl Default for LocalOutlierFactorParams {
    fn default() -> Self {
        LocalOutlierFactorParams {
            neighbours: 20,
            max_train: 10_000,
            seed: 42,
        }
    }
}

/// A fitted Local Outlier Factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalOutlierFactor {
    params: LocalOutlierFactorParams,
    k: usize,
    /// The training points.
    train: Array2<f64>,
    /// Distance of each training point to its k-th neighbour.
    k_distance: Array1<f64>,
    /// Local reachability density of each training point.
    lrd: Array1<f64>,
}

/// The mean density of a point's neighbours over its own.
fn factor(neighbours: &[(usize, f64)], own: f64, lrd: &Array1<f64>) -> f64 {
    let around =
        neighbours.iter().map(|(j, _)| lrd[*j]).sum::<f64>() / neighbours.len().max(1) as f64;
    around / own
}

/// Local reachability density from a point's neighbours.
fn density(neighbours: &[(usize, f64)], k_distance: &Array1<f64>) -> f64 {
    let mean_reach = neighbours
        .iter()
        .map(|(j, d)| d.max(k_distance[*j]))
        .sum::<f64>()
        / neighbours.len().max(1) as f64;
    1.0 / (mean_reach + 1e-10)
}

impl ParamGuard for LocalOutlierFactorParams {
    fn validate(&self) -> Result<(), DetectorError> {
        if self.neighbours == 0 {
            return Err(bad_param("neighbours", "at least 1", self.neighbours));
        }
        if self.max_train == 0 {
            return Err(bad_param("max_train", "at least 1", self.max_train));
        }
        Ok(())
    }
}

impl Fit for Checked<LocalOutlierFactorParams> {
    type Fitted = LocalOutlierFactor;

    fn fit(&self, input: &Input<'_>) -> Result<LocalOutlierFactor, DetectorError> {
        self.fit_scored(input).map(|(model, _)| model)
    }

    /// Fits on the input's matrix, and also returns the factor of every
    /// training row kept (scikit-learn's `negative_outlier_factor_`,
    /// negated), from the same neighbour search.
    fn fit_scored(
        &self,
        input: &Input<'_>,
    ) -> Result<(LocalOutlierFactor, Option<Vec<f64>>), DetectorError> {
        let x = input.x()?;
        check_finite(x, "fit")?;
        let x = if x.nrows() > self.max_train {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
            let mut rows = rand::seq::index::sample(&mut rng, x.nrows(), self.max_train).into_vec();
            rows.sort_unstable();
            x.select(Axis(0), &rows)
        } else {
            x.to_owned()
        };
        let train = x;
        let k = self.neighbours.min(train.nrows().saturating_sub(1)).max(1);
        let neighbours = nearest(train.view(), train.view(), k, true);
        let k_distance: Array1<f64> = neighbours
            .iter()
            .map(|n| n.last().map_or(0.0, |(_, d)| *d))
            .collect();
        let lrd: Array1<f64> = neighbours.iter().map(|n| density(n, &k_distance)).collect();
        let factors = neighbours
            .iter()
            .zip(&lrd)
            .map(|(n, own)| factor(n, *own, &lrd))
            .collect();
        let model = LocalOutlierFactor {
            params: (**self).clone(),
            k,
            train,
            k_distance,
            lrd,
        };
        Ok((model, Some(factors)))
    }
}

impl LocalOutlierFactor {
    /// Training rows kept (at most `max_train`).
    pub fn training_rows(&self) -> usize {
        self.train.nrows()
    }

    pub fn params(&self) -> &LocalOutlierFactorParams {
        &self.params
    }
}

impl Score for LocalOutlierFactor {
    fn granularity(&self) -> Granularity {
        Granularity::Flow
    }

    /// Scores the input's matrix.
    fn score(&self, input: &Input<'_>) -> Result<Array1<f64>, DetectorError> {
        let x = input.x()?;
        crate::check_scoring_input(x, self.train.ncols())?;
        let neighbours = nearest(x, self.train.view(), self.k, false);
        Ok(neighbours
            .iter()
            .map(|n| factor(n, density(n, &self.k_distance), &self.lrd))
            .collect())
    }

    fn fit_facts(&self) -> serde_json::Value {
        serde_json::json!({ "training_rows_kept": self.training_rows() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use crate::on_matrix::{FitMatrix, ScoreMatrix};
    use ndarray::array;
    use rand::RngExt;

    #[test]
    fn outliers_away_from_a_cluster_have_a_high_factor() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut x = Array2::zeros((500, 2));
        for i in 0..500 {
            x[[i, 0]] = rng.random::<f64>();
            x[[i, 1]] = rng.random::<f64>();
        }
        let model = LocalOutlierFactorParams::default().fit_x(x.view()).unwrap();
        let inlier = model.score_x(array![[0.5, 0.5]].view()).unwrap()[0];
        let outlier = model.score_x(array![[5.0, 5.0]].view()).unwrap()[0];
        assert!((0.8..1.3).contains(&inlier), "{inlier}");
        assert!(outlier > 5.0, "{outlier}");
        let mut test = x.slice(ndarray::s![..100, ..]).to_owned();
        let mut labels = vec![false; 100];
        for i in 0..5 {
            test[[i, 0]] = 3.0 + i as f64;
            labels[i] = true;
        }
        let scores = model.score_x(test.view()).unwrap();
        assert_eq!(roc_auc(scores.as_slice().unwrap(), &labels), Some(1.0));
    }

    #[test]
    fn matches_a_hand_computed_example() {
        // Training points 0, 1, 2 on a line, k = 1: k-distances 1, 1, 1;
        // every lrd is 1. A query at 4: nearest is 2 at distance 2, reach
        // max(2, 1) = 2, lrd 0.5, LOF = 1 / 0.5 = 2.
        let x = array![[0.0], [1.0], [2.0]];
        let params = LocalOutlierFactorParams {
            neighbours: 1,
            ..Default::default()
        };
        let model = params.fit_x(x.view()).unwrap();
        let lof = model.score_x(array![[4.0]].view()).unwrap()[0];
        assert!((lof - 2.0).abs() < 1e-6, "{lof}");
    }

    #[test]
    fn duplicates_keep_scores_finite_and_loading_is_exact() {
        let x = Array2::from_elem((30, 3), 1.0);
        let model = LocalOutlierFactorParams::default().fit_x(x.view()).unwrap();
        let scores = model.score_x(x.view()).unwrap();
        assert!(scores.iter().all(|s| s.is_finite()));
        let loaded =
            serde_json::from_slice::<LocalOutlierFactor>(&serde_json::to_vec(&model).unwrap())
                .unwrap();
        let again = loaded.score_x(x.view()).unwrap();
        assert!(
            scores
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn single_rows_constant_columns_and_bad_values() {
        let one = array![[1.0, 2.0]];
        let model = LocalOutlierFactorParams::default()
            .fit_x(one.view())
            .unwrap();
        assert!(
            model
                .score_x(array![[1.0, 2.0], [9.0, 9.0]].view())
                .unwrap()
                .iter()
                .all(|s| s.is_finite())
        );
        // A constant column does not disturb the others.
        let x = Array2::from_shape_fn(
            (200, 2),
            |(i, j)| if j == 0 { 7.0 } else { (i % 20) as f64 },
        );
        let model = LocalOutlierFactorParams::default().fit_x(x.view()).unwrap();
        let scores = model
            .score_x(array![[7.0, 5.0], [7.0, 500.0]].view())
            .unwrap();
        assert!(scores[1] > 10.0 * scores[0], "{scores}");
        let bad = array![[1.0, f64::NAN]];
        assert!(matches!(
            LocalOutlierFactorParams::default().fit_x(bad.view()),
            Err(DetectorError::NonFinite {
                row: 0,
                feature: 1,
                ..
            })
        ));
        assert!(matches!(
            model.score_x(array![[f64::NEG_INFINITY, 1.0]].view()),
            Err(DetectorError::NonFinite {
                row: 0,
                feature: 0,
                ..
            })
        ));
    }

    #[test]
    fn the_same_seed_gives_the_same_model_whatever_the_threads() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let x = Array2::from_shape_fn((3000, 4), |_| rng.random::<f64>());
        let params = LocalOutlierFactorParams {
            max_train: 1000,
            ..Default::default()
        };
        let a = params.fit_x(x.view()).unwrap();
        let b = crate::on_one_thread(|| params.fit_x(x.view()).unwrap());
        assert_eq!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&b).unwrap()
        );
    }
}
