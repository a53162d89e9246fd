//! Flow tables: a flow CSV read strictly into typed columns, and SILVER, its
//! Parquet form.
//!
//! A flow CSV has a header row, numeric feature columns, and optionally a
//! label column (`label`, `class` or `attack_cat`, any case) that is kept for
//! evaluation and never used as a feature. Other text columns (addresses,
//! service names) are carried along as text. SILVER adds `flow_id`, the
//! flow's row number in its RAW object, so every score can be traced back to
//! the line it came from.

use std::io::Cursor;

use ndarray::Array2;
use polars::prelude::*;

/// Column SILVER adds: the flow's 0-based data row in its RAW object.
pub const FLOW_ID: &str = "flow_id";
/// Column the label is stored under in SILVER, whatever its CSV name.
pub const LABEL: &str = "label";
const LABEL_NAMES: [&str; 3] = ["label", "class", "attack_cat"];

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("CSV could not be parsed: {0}")]
    Csv(String),
    #[error("CSV has a header but no data rows")]
    NoRows,
    #[error("CSV has no numeric feature columns (columns: {0})")]
    NoFeatures(String),
    #[error(
        "column {column:?} is numeric but data row {row} holds {value:?}, which is not a number"
    )]
    NotANumber {
        column: String,
        row: usize,
        value: String,
    },
    #[error(
        "column {column:?} has {count} empty or non-finite value(s), the first at data row {row}"
    )]
    Missing {
        column: String,
        count: usize,
        row: usize,
    },
    #[error("column name {0:?} is reserved by SILVER; rename it in the CSV")]
    Reserved(String),
    #[error("Parquet: {0}")]
    Parquet(String),
    #[error("SILVER partition lacks feature column {0:?}")]
    MissingFeature(String),
}

/// A table of flows with its feature and label columns named.
#[derive(Debug, Clone)]
pub struct FlowTable {
    pub frame: DataFrame,
    /// Numeric columns the detectors learn from, as `Float64`, in CSV order.
    pub features: Vec<String>,
    /// Whether a `label` column is present (`String`).
    pub labelled: bool,
    /// Text columns carried along, not learned from.
    pub text: Vec<String>,
}

fn is_number(s: &str) -> bool {
    s.trim().parse::<f64>().is_ok()
}

impl FlowTable {
    /// Reads a flow CSV strictly: ragged rows, non-numbers in numeric
    /// columns and empty or non-finite feature values are errors that name
    /// the column and the row.
    pub fn from_csv(bytes: &[u8]) -> Result<Self, FlowError> {
        let frame = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(None)
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
            .map_err(|e| FlowError::Csv(e.to_string()))?;
        if frame.height() == 0 {
            return Err(FlowError::NoRows);
        }
        let mut features = Vec::new();
        let mut text = Vec::new();
        let mut label = None;
        let mut columns: Vec<Column> = Vec::with_capacity(frame.width() + 1);
        columns.push(Column::new(
            FLOW_ID.into(),
            (0..frame.height() as u64).collect::<Vec<u64>>(),
        ));
        for column in frame.columns() {
            let name = column.name().to_string();
            if name == FLOW_ID {
                return Err(FlowError::Reserved(name));
            }
            if label.is_none() && LABEL_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
                let values = column
                    .cast(&DataType::String)
                    .map_err(|e| FlowError::Csv(e.to_string()))?;
                columns.push(values.with_name(LABEL.into()));
                label = Some(name);
                continue;
            }
            if name.eq_ignore_ascii_case(LABEL) {
                return Err(FlowError::Reserved(name));
            }
            if column.dtype().is_primitive_numeric() || column.dtype() == &DataType::Boolean {
                let values = column
                    .cast(&DataType::Float64)
                    .map_err(|e| FlowError::Csv(e.to_string()))?;
                check_finite(&name, values.f64().expect("cast to f64"))?;
                columns.push(values);
                features.push(name);
            } else {
                let values = column
                    .cast(&DataType::String)
                    .map_err(|e| FlowError::Csv(e.to_string()))?;
                check_not_half_numeric(&name, values.str().expect("cast to str"))?;
                columns.push(values);
                text.push(name);
            }
        }
        if features.is_empty() {
            return Err(FlowError::NoFeatures(
                frame
                    .get_column_names()
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        let frame =
            DataFrame::new(frame.height(), columns).map_err(|e| FlowError::Csv(e.to_string()))?;
        Ok(FlowTable {
            frame,
            features,
            labelled: label.is_some(),
            text,
        })
    }

    pub fn rows(&self) -> usize {
        self.frame.height()
    }

    /// SILVER bytes: the table as Parquet (zstd), identical for identical tables.
    pub fn to_parquet(&self) -> Result<Vec<u8>, FlowError> {
        write_parquet(&mut self.frame.clone())
    }

    /// Reads a SILVER partition back; `features` are the columns to learn from.
    pub fn from_parquet(bytes: &[u8], features: &[String]) -> Result<Self, FlowError> {
        let frame = read_parquet(bytes)?;
        for f in features {
            if frame.column(f).is_err() {
                return Err(FlowError::MissingFeature(f.clone()));
            }
        }
        let text = frame
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .filter(|n| n != FLOW_ID && n != LABEL && !features.contains(n))
            .collect();
        Ok(FlowTable {
            labelled: frame.column(LABEL).is_ok(),
            frame,
            features: features.to_vec(),
            text,
        })
    }

    /// The feature columns as a rows × features matrix.
    pub fn feature_matrix(&self) -> Result<Array2<f64>, FlowError> {
        let rows = self.rows();
        let mut matrix = Array2::<f64>::zeros((rows, self.features.len()));
        for (j, name) in self.features.iter().enumerate() {
            let column = self
                .frame
                .column(name)
                .and_then(|c| c.cast(&DataType::Float64))
                .map_err(|_| FlowError::MissingFeature(name.clone()))?;
            check_finite(name, column.f64().expect("cast to f64"))?;
            for (i, v) in column
                .f64()
                .expect("cast to f64")
                .into_no_null_iter()
                .enumerate()
            {
                matrix[[i, j]] = v;
            }
        }
        Ok(matrix)
    }

    /// The labels, when the table has them.
    pub fn labels(&self) -> Option<Vec<Option<String>>> {
        let column = self.frame.column(LABEL).ok()?;
        let values = column.str().ok()?;
        Some(values.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// The `flow_id` column.
    pub fn flow_ids(&self) -> Vec<u64> {
        self.frame
            .column(FLOW_ID)
            .ok()
            .and_then(|c| c.u64().ok().map(|v| v.into_no_null_iter().collect()))
            .unwrap_or_else(|| (0..self.rows() as u64).collect())
    }
}

/// Parquet bytes of any frame, zstd-compressed.
pub fn write_parquet(frame: &mut DataFrame) -> Result<Vec<u8>, FlowError> {
    let mut out = Vec::new();
    ParquetWriter::new(&mut out)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(frame)
        .map_err(|e| FlowError::Parquet(e.to_string()))?;
    Ok(out)
}

pub fn read_parquet(bytes: &[u8]) -> Result<DataFrame, FlowError> {
    ParquetReader::new(Cursor::new(bytes))
        .finish()
        .map_err(|e| FlowError::Parquet(e.to_string()))
}

fn check_finite(name: &str, values: &Float64Chunked) -> Result<(), FlowError> {
    let mut count = 0;
    let mut first = None;
    for (i, v) in values.iter().enumerate() {
        if !v.is_some_and(f64::is_finite) {
            count += 1;
            first.get_or_insert(i);
        }
    }
    match first {
        None => Ok(()),
        Some(row) => Err(FlowError::Missing {
            column: name.to_string(),
            count,
            row,
        }),
    }
}

/// A text column in which most values are numbers is a numeric column with
/// a typo, not a text column.
fn check_not_half_numeric(name: &str, values: &StringChunked) -> Result<(), FlowError> {
    let non_empty: Vec<(usize, &str)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|s| !s.trim().is_empty()).map(|s| (i, s)))
        .collect();
    let numbers = non_empty.iter().filter(|(_, s)| is_number(s)).count();
    if numbers * 2 > non_empty.len()
        && let Some((row, value)) = non_empty.iter().find(|(_, s)| !is_number(s))
    {
        return Err(FlowError::NotANumber {
            column: name.to_string(),
            row: *row,
            value: value.chars().take(40).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_columns_become_features_and_the_label_is_kept_apart() {
        let csv = b"duration,bytes,proto,Class\n1.5,100,tcp,normal\n2,300,udp,attack\n";
        let t = FlowTable::from_csv(csv).unwrap();
        assert_eq!(t.features, ["duration", "bytes"]);
        assert_eq!(t.text, ["proto"]);
        assert!(t.labelled);
        assert_eq!(
            t.labels().unwrap(),
            [Some("normal".into()), Some("attack".into())]
        );
        assert_eq!(t.flow_ids(), [0, 1]);
        let m = t.feature_matrix().unwrap();
        assert_eq!(m.row(1).to_vec(), [2.0, 300.0]);
    }

    #[test]
    fn silver_round_trips_and_is_deterministic() {
        let t = FlowTable::from_csv(b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n").unwrap();
        let bytes = t.to_parquet().unwrap();
        assert_eq!(bytes, t.to_parquet().unwrap());
        let back = FlowTable::from_parquet(&bytes, &t.features).unwrap();
        assert_eq!(back.feature_matrix().unwrap(), t.feature_matrix().unwrap());
        assert_eq!(back.labels(), t.labels());
        assert_eq!(back.flow_ids(), [0, 1, 2]);
    }

    #[test]
    fn malformed_csv_is_named_precisely() {
        let err = FlowTable::from_csv(b"a,b\n1,2\n3,oops\n5,6\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"b\"") && err.contains("row 1") && err.contains("oops"),
            "{err}"
        );

        let err = FlowTable::from_csv(b"a,b\n1,2\n3,\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"b\"") && err.contains("row 1"), "{err}");

        let err = FlowTable::from_csv(b"a,b\n1,2\n3,4,5,6\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("CSV could not be parsed"), "{err}");

        assert!(matches!(
            FlowTable::from_csv(b"a,b\n"),
            Err(FlowError::NoRows)
        ));
        assert!(matches!(
            FlowTable::from_csv(b"host,label\nx,y\n"),
            Err(FlowError::NoFeatures(_))
        ));
        assert!(matches!(
            FlowTable::from_csv(b"flow_id,b\n1,2\n"),
            Err(FlowError::Reserved(_))
        ));
    }

    #[test]
    fn non_finite_features_are_rejected() {
        let err = FlowTable::from_csv(b"a,b\n1,2\n3,inf\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-finite") && err.contains("\"b\""), "{err}");
    }
}
