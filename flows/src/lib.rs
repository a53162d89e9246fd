//! From the bytes users drop into `raw` to the flow features the detectors
//! learn from. Pure library code: no network, no files, no clocks. Callers
//! hand in bytes and get back tables, so everything here can be tested,
//! fuzzed and benchmarked alone.
//!
//! - [`format`]: what a RAW object is, judged by its content, never its name.
//! - [`table`]: a flow CSV read into a typed table of features and labels,
//!   and the SILVER Parquet encoding of it.
//! - [`dataset`]: a flow table as the detectors see it.
//! - [`sample`]: a deterministic, labelled flow data set with planted
//!   anomalies, for demos and tests.

pub mod capture;
pub mod dataset;
pub mod format;
pub mod labels;
pub mod sample;
pub mod table;

pub use format::{Format, detect};
pub use table::{FlowError, FlowTable};
