//! SILVER: the flow table every source ends in, and its Parquet encoding.
//!
//! Whatever the RAW object was (a flow CSV, see [`crate::csv`]; a capture or
//! a Zeek log, see [`crate::capture`]), its flows become one [`FlowTable`]:
//! a frame with `flow_id` (the flow's position in its RAW object, so every
//! score can be traced back to it), the named feature columns the detectors
//! learn from, text carried along, and `label` when there is ground truth.
//! This module owns that shape and its bytes: Parquet with zstd, identical
//! for identical tables. It does not parse any input format, choose which
//! flows train and which evaluate ([`crate::split`]), or turn the table into
//! the detectors' view ([`crate::dataset`]).

use std::io::{Cursor, Write};

use ndarray::Array2;
use polars::prelude::*;

/// Column SILVER adds: the flow's 0-based position in its RAW object (a
/// CSV's data row, a capture's flow in order of first packet).
pub const FLOW_ID: &str = "flow_id";
/// Column the label is stored under in SILVER, whatever its CSV name.
pub const LABEL: &str = "label";

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
    #[error(
        "the header names {columns} columns, more than the {limit} allowed (NADIR_MAX_COLUMNS); raise it to read this object"
    )]
    TooManyColumns { columns: usize, limit: usize },
    #[error(
        "line {line} is {bytes} bytes long, more than the {limit} a line may take (NADIR_MAX_LINE_BYTES); raise it to read this object"
    )]
    LineTooLong {
        line: usize,
        bytes: usize,
        limit: usize,
    },
}

/// A table of flows with its feature and label columns named.
#[derive(Debug, Clone)]
pub struct FlowTable {
    pub frame: DataFrame,
    /// Numeric columns the detectors learn from, as `Float64`, in column order.
    pub features: Vec<String>,
    /// Whether a `label` column is present (`String`).
    pub labelled: bool,
    /// Text columns carried along, not learned from.
    pub text: Vec<String>,
}

impl FlowTable {
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
            let values = column.f64().expect("cast to f64");
            check_finite(name, values)?;
            for (i, v) in values.into_no_null_iter().enumerate() {
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

/// The `flow_id` column of `rows` flows numbered from `first`.
pub(crate) fn flow_id_column(first: u64, rows: usize) -> Column {
    Column::new(
        FLOW_ID.into(),
        (first..first + rows as u64).collect::<Vec<u64>>(),
    )
}

/// SILVER's Parquet encoding (zstd): [`write_parquet`] and the batched
/// writer of [`crate::capture`] both start from it.
pub(crate) fn parquet_writer<W: Write>(out: W) -> ParquetWriter<W> {
    ParquetWriter::new(out).with_compression(ParquetCompression::Zstd(None))
}

pub(crate) fn parquet_error(e: PolarsError) -> FlowError {
    FlowError::Parquet(e.to_string())
}

/// Parquet bytes of any frame, zstd-compressed.
pub fn write_parquet(frame: &mut DataFrame) -> Result<Vec<u8>, FlowError> {
    let mut out = Vec::new();
    parquet_writer(&mut out)
        .finish(frame)
        .map_err(parquet_error)?;
    Ok(out)
}

pub fn read_parquet(bytes: &[u8]) -> Result<DataFrame, FlowError> {
    ParquetReader::new(Cursor::new(bytes))
        .finish()
        .map_err(parquet_error)
}

/// Every value of a feature column is a finite number, or the error names
/// the column, how many are not, and the first such row.
pub(crate) fn check_finite(name: &str, values: &Float64Chunked) -> Result<(), FlowError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
