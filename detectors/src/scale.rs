//! Feature scaling fitted on training data and stored with a model, so
//! that scoring transforms new data exactly as training did.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Standardization: `(x - mean) / std`, with a zero-variance column left
/// centred but unscaled (as scikit-learn's `StandardScaler`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    pub mean: Array1<f64>,
    pub scale: Array1<f64>,
}

impl StandardScaler {
    pub fn fit(x: ArrayView2<'_, f64>) -> Self {
        let n = x.nrows().max(1) as f64;
        let mean = x.sum_axis(Axis(0)) / n;
        let mut scale = Array1::<f64>::ones(x.ncols());
        for (j, s) in scale.iter_mut().enumerate() {
            let m = mean[j];
            let v = x.column(j).iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
            *s = if v > 0.0 { v.sqrt() } else { 1.0 };
        }
        StandardScaler { mean, scale }
    }

    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        (&x - &self.mean) / &self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standardizes_and_leaves_constant_columns_unscaled() {
        let x = array![[1.0, 5.0], [3.0, 5.0]];
        let s = StandardScaler::fit(x.view());
        assert_eq!(s.mean.to_vec(), [2.0, 5.0]);
        assert_eq!(s.scale.to_vec(), [1.0, 1.0]);
        assert_eq!(s.transform(x.view()), array![[-1.0, 0.0], [1.0, 0.0]]);
    }
}
