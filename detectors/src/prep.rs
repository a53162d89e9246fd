//! What a detector sees of the flows, and the preprocessing fitted with it.
//!
//! A [`Dataset`] holds numeric features, categorical fields (protocol, the
//! class of the destination port, a CSV's service name...) and, when the
//! flows carry hosts and times, their [`Activity`] for the per-host group
//! detector. A [`Preprocessor`] is fitted on the training data: it scales
//! every numeric feature (standard or robust) and one-hot encodes every
//! categorical field with the levels seen in training, the most frequent
//! first. It is stored inside the model, so scoring transforms new data
//! exactly as training did; a level never seen in training encodes as all
//! zeros.

use std::collections::HashMap;

use ndarray::{Array1, Array2, Axis, CowArray, Ix2};
use serde::{Deserialize, Serialize};

use crate::metrics::sorted_quantile;
use crate::{DetectorError, check_finite};

/// A categorical field, dictionary-encoded: row `i` holds `levels[codes[i]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Categorical {
    pub name: String,
    pub levels: Vec<String>,
    pub codes: Vec<u32>,
}

impl Categorical {
    /// Dictionary-encodes one value per row.
    pub fn from_values(name: &str, values: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut dictionary = Dictionary::default();
        let codes = values
            .into_iter()
            .map(|v| dictionary.code(v.as_ref()))
            .collect();
        Categorical {
            name: name.to_string(),
            levels: dictionary.levels,
            codes,
        }
    }
}

/// Values numbered in order of first appearance.
#[derive(Default)]
pub struct Dictionary {
    index: HashMap<String, u32>,
    pub levels: Vec<String>,
}

impl Dictionary {
    pub fn code(&mut self, value: &str) -> u32 {
        if let Some(&code) = self.index.get(value) {
            return code;
        }
        let code = self.levels.len() as u32;
        self.index.insert(value.to_string(), code);
        self.levels.push(value.to_string());
        code
    }
}

/// Who talked to whom, when and how much: what the group detector needs.
/// Hosts are dictionary-encoded like a [`Categorical`].
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub hosts: Vec<String>,
    /// Source host of each flow (index into `hosts`).
    pub src: Vec<u32>,
    /// Destination host of each flow (index into `hosts`).
    pub dst: Vec<u32>,
    /// First packet of each flow, ns since the Unix epoch.
    pub start_ns: Vec<i64>,
    /// Bytes of each flow, both directions.
    pub bytes: Vec<f64>,
}

/// The flows as detectors see them, one row per flow.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub names: Vec<String>,
    pub numeric: Array2<f64>,
    pub categorical: Vec<Categorical>,
    pub activity: Option<Activity>,
}

impl Dataset {
    /// Numeric features only.
    pub fn numeric(names: Vec<String>, numeric: Array2<f64>) -> Self {
        Dataset {
            names,
            numeric,
            categorical: Vec::new(),
            activity: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.numeric.nrows()
    }

    /// The rows of several datasets with the same features, one after the
    /// other. Categorical fields and activity are kept where every part has
    /// them, their dictionaries merged.
    pub fn concat(parts: &[Dataset]) -> Result<Dataset, DetectorError> {
        let first = parts.first().ok_or(DetectorError::Empty("concatenate"))?;
        if let Some(other) = parts.iter().find(|p| p.names != first.names) {
            return Err(DetectorError::FeatureNames {
                expected: first.names.clone(),
                found: other.names.clone(),
            });
        }
        let views: Vec<_> = parts.iter().map(|p| p.numeric.view()).collect();
        let numeric = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| DetectorError::Params(e.to_string()))?;
        let categorical = first
            .categorical
            .iter()
            .filter_map(|c| {
                let fields: Option<Vec<&Categorical>> = parts
                    .iter()
                    .map(|p| p.categorical.iter().find(|o| o.name == c.name))
                    .collect();
                let mut dictionary = Dictionary::default();
                let codes = fields?
                    .into_iter()
                    .flat_map(|f| {
                        let remap: Vec<u32> = f.levels.iter().map(|l| dictionary.code(l)).collect();
                        f.codes
                            .iter()
                            .map(move |&c| remap[c as usize])
                            .collect::<Vec<_>>()
                    })
                    .collect();
                Some(Categorical {
                    name: c.name.clone(),
                    levels: dictionary.levels,
                    codes,
                })
            })
            .collect();
        let activity = parts
            .iter()
            .map(|p| p.activity.as_ref())
            .collect::<Option<Vec<_>>>()
            .map(|all| {
                let mut hosts = Dictionary::default();
                let mut merged = Activity {
                    hosts: Vec::new(),
                    src: Vec::new(),
                    dst: Vec::new(),
                    start_ns: Vec::new(),
                    bytes: Vec::new(),
                };
                for a in all {
                    let remap: Vec<u32> = a.hosts.iter().map(|h| hosts.code(h)).collect();
                    merged.src.extend(a.src.iter().map(|&h| remap[h as usize]));
                    merged.dst.extend(a.dst.iter().map(|&h| remap[h as usize]));
                    merged.start_ns.extend(&a.start_ns);
                    merged.bytes.extend(&a.bytes);
                }
                merged.hosts = hosts.levels;
                merged
            });
        Ok(Dataset {
            names: first.names.clone(),
            numeric,
            categorical,
            activity,
        })
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let pick = |v: &[u32]| indices.iter().map(|&i| v[i]).collect::<Vec<_>>();
        Dataset {
            names: self.names.clone(),
            numeric: {
                let d = self.numeric.ncols();
                let mut values = Vec::with_capacity(indices.len() * d);
                for &i in indices {
                    values.extend(self.numeric.row(i).iter());
                }
                Array2::from_shape_vec((indices.len(), d), values).expect("rows × features")
            },
            categorical: self
                .categorical
                .iter()
                .map(|c| Categorical {
                    name: c.name.clone(),
                    levels: c.levels.clone(),
                    codes: pick(&c.codes),
                })
                .collect(),
            activity: self.activity.as_ref().map(|a| Activity {
                hosts: a.hosts.clone(),
                src: pick(&a.src),
                dst: pick(&a.dst),
                start_ns: indices.iter().map(|&i| a.start_ns[i]).collect(),
                bytes: indices.iter().map(|&i| a.bytes[i]).collect(),
            }),
        }
    }
}

/// How numeric features are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Unchanged (the data is already scaled).
    None,
    /// `(x - mean) / standard deviation`, as scikit-learn's `StandardScaler`.
    #[default]
    Standard,
    /// `(x - median) / interquartile range`, as scikit-learn's
    /// `RobustScaler`: a few huge flows do not squash everyone else.
    Robust,
}

impl std::str::FromStr for Scaling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Scaling::None),
            "standard" => Ok(Scaling::Standard),
            "robust" => Ok(Scaling::Robust),
            other => Err(format!(
                "unknown scaling {other:?} (none, standard or robust)"
            )),
        }
    }
}

/// How to preprocess: scaling, and how many levels of a categorical field
/// get a column of their own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrepSpec {
    pub scaling: Scaling,
    pub max_levels: usize,
}

impl Default for PrepSpec {
    fn default() -> Self {
        PrepSpec {
            scaling: Scaling::Standard,
            max_levels: 32,
        }
    }
}

/// One-hot encoding of a categorical field: one column per level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneHot {
    pub name: String,
    pub levels: Vec<String>,
}

/// Preprocessing fitted on training data, stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub scaling: Scaling,
    /// Numeric feature names, in the order the model expects them.
    pub numeric: Vec<String>,
    pub center: Array1<f64>,
    pub scale: Array1<f64>,
    pub one_hot: Vec<OneHot>,
}

impl Preprocessor {
    pub fn fit(spec: &PrepSpec, data: &Dataset) -> Result<Self, DetectorError> {
        let x = data.numeric.view();
        if x.ncols() != data.names.len() {
            return Err(DetectorError::Params(format!(
                "{} feature names for {} columns",
                data.names.len(),
                x.ncols()
            )));
        }
        check_finite(x, "fit")?;
        let d = x.ncols();
        let (center, scale) = match spec.scaling {
            Scaling::None => (Array1::zeros(d), Array1::ones(d)),
            Scaling::Standard => {
                let n = x.nrows() as f64;
                let mean = x.sum_axis(Axis(0)) / n;
                let scale = Array1::from_iter((0..d).map(|j| {
                    let m = mean[j];
                    let v = x.column(j).iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
                    if v > 0.0 { v.sqrt() } else { 1.0 }
                }));
                (mean, scale)
            }
            Scaling::Robust => {
                let mut center = Array1::zeros(d);
                let mut scale = Array1::ones(d);
                for j in 0..d {
                    let mut column = x.column(j).to_vec();
                    column.sort_by(f64::total_cmp);
                    center[j] = sorted_quantile(&column, 0.5);
                    let iqr = sorted_quantile(&column, 0.75) - sorted_quantile(&column, 0.25);
                    scale[j] = if iqr > 0.0 { iqr } else { 1.0 };
                }
                (center, scale)
            }
        };
        let one_hot = data
            .categorical
            .iter()
            .map(|c| {
                let mut counts = vec![0usize; c.levels.len()];
                for &code in &c.codes {
                    counts[code as usize] += 1;
                }
                let mut seen: Vec<(usize, &String)> = counts
                    .into_iter()
                    .zip(&c.levels)
                    .filter(|(n, _)| *n > 0)
                    .collect();
                seen.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                seen.truncate(spec.max_levels);
                let mut levels: Vec<String> = seen.into_iter().map(|(_, l)| l.clone()).collect();
                levels.sort();
                OneHot {
                    name: c.name.clone(),
                    levels,
                }
            })
            .collect();
        Ok(Preprocessor {
            scaling: spec.scaling,
            numeric: data.names.clone(),
            center,
            scale,
            one_hot,
        })
    }

    /// Names of the columns `transform` produces: the numeric features, then
    /// `field=level` for every one-hot column.
    pub fn output_names(&self) -> Vec<String> {
        let mut names = self.numeric.clone();
        for o in &self.one_hot {
            names.extend(o.levels.iter().map(|l| format!("{}={l}", o.name)));
        }
        names
    }

    /// The model's input matrix for `data`, which must have the numeric
    /// features and categorical fields the preprocessor was fitted on.
    /// Borrows the data's own matrix when there is nothing to do (no
    /// scaling, no categories).
    pub fn transform<'a>(
        &self,
        data: &'a Dataset,
    ) -> Result<CowArray<'a, f64, Ix2>, DetectorError> {
        if data.names != self.numeric {
            return Err(DetectorError::FeatureNames {
                expected: self.numeric.clone(),
                found: data.names.clone(),
            });
        }
        check_finite(data.numeric.view(), "score")?;
        if self.one_hot.is_empty() && self.scaling == Scaling::None {
            return Ok(CowArray::from(data.numeric.view()));
        }
        let scaled = (&data.numeric - &self.center) / &self.scale;
        if self.one_hot.is_empty() {
            return Ok(CowArray::from(scaled));
        }
        let width = self.numeric.len() + self.one_hot.iter().map(|o| o.levels.len()).sum::<usize>();
        let mut out = Array2::zeros((data.rows(), width));
        out.slice_mut(ndarray::s![.., ..self.numeric.len()])
            .assign(&scaled);
        let mut at = self.numeric.len();
        for o in &self.one_hot {
            let field = data
                .categorical
                .iter()
                .find(|c| c.name == o.name)
                .ok_or_else(|| DetectorError::MissingField(o.name.clone()))?;
            // Data level -> output column, for the levels the model knows.
            let columns: Vec<Option<usize>> = field
                .levels
                .iter()
                .map(|l| o.levels.binary_search(l).ok().map(|k| at + k))
                .collect();
            for (row, &code) in field.codes.iter().enumerate() {
                if let Some(column) = columns[code as usize] {
                    out[[row, column]] = 1.0;
                }
            }
            at += o.levels.len();
        }
        Ok(CowArray::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|j| format!("f{j}")).collect()
    }

    #[test]
    fn standard_scaling_leaves_constant_columns_unscaled() {
        let data = Dataset::numeric(names(2), array![[1.0, 5.0], [3.0, 5.0]]);
        let p = Preprocessor::fit(&PrepSpec::default(), &data).unwrap();
        assert_eq!(p.center.to_vec(), [2.0, 5.0]);
        assert_eq!(p.scale.to_vec(), [1.0, 1.0]);
        assert_eq!(p.transform(&data).unwrap(), array![[-1.0, 0.0], [1.0, 0.0]]);
    }

    #[test]
    fn robust_scaling_uses_median_and_interquartile_range() {
        let data = Dataset::numeric(names(1), array![[1.0], [2.0], [3.0], [4.0], [1000.0]]);
        let spec = PrepSpec {
            scaling: Scaling::Robust,
            ..Default::default()
        };
        let p = Preprocessor::fit(&spec, &data).unwrap();
        assert_eq!(p.center[0], 3.0);
        assert_eq!(p.scale[0], 2.0);
        assert_eq!(p.transform(&data).unwrap()[[0, 0]], -1.0);
    }

    #[test]
    fn categories_encode_the_same_way_in_training_and_scoring() {
        let mut train = Dataset::numeric(names(1), array![[1.0], [2.0], [3.0]]);
        train.categorical = vec![Categorical::from_values("protocol", ["tcp", "udp", "tcp"])];
        let p = Preprocessor::fit(&PrepSpec::default(), &train).unwrap();
        assert_eq!(p.output_names(), ["f0", "protocol=tcp", "protocol=udp"]);
        // Scoring data lists its levels in another order and has a new one.
        let mut score = Dataset::numeric(names(1), array![[1.0], [2.0], [3.0]]);
        score.categorical = vec![Categorical::from_values("protocol", ["icmp", "udp", "tcp"])];
        let x = p.transform(&score).unwrap();
        assert_eq!(x.column(1).to_vec(), [0.0, 0.0, 1.0]);
        assert_eq!(x.column(2).to_vec(), [0.0, 1.0, 0.0]);
    }

    #[test]
    fn only_the_most_frequent_levels_get_columns() {
        let mut train = Dataset::numeric(names(1), Array2::zeros((6, 1)));
        train.categorical = vec![Categorical::from_values(
            "service",
            ["a", "b", "b", "c", "c", "c"],
        )];
        let spec = PrepSpec {
            max_levels: 2,
            ..Default::default()
        };
        let p = Preprocessor::fit(&spec, &train).unwrap();
        assert_eq!(p.one_hot[0].levels, ["b", "c"]);
    }

    #[test]
    fn other_features_or_missing_fields_are_refused() {
        let mut train = Dataset::numeric(names(1), array![[1.0]]);
        train.categorical = vec![Categorical::from_values("protocol", ["tcp"])];
        let p = Preprocessor::fit(&PrepSpec::default(), &train).unwrap();
        let other = Dataset::numeric(vec!["g".into()], array![[1.0]]);
        assert!(matches!(
            p.transform(&other),
            Err(DetectorError::FeatureNames { .. })
        ));
        let missing = Dataset::numeric(names(1), array![[1.0]]);
        assert_eq!(
            p.transform(&missing).unwrap_err(),
            DetectorError::MissingField("protocol".into())
        );
    }
}
