//! From the bytes users drop into `raw` to the flow features the detectors
//! learn from. Pure library code: no network, no files, no clocks. Callers
//! hand in bytes (or a reader) and get back tables (or Parquet written to
//! their writer), so everything here can be tested, fuzzed and benchmarked
//! alone.
//!
//! - [`format`](mod@format): what a RAW object is, judged by its content, never its name.
//! - [`csv`]: a flow CSV (CICFlowMeter, UNSW-NB15, NSL-KDD or any other)
//!   read strictly into a SILVER table, its columns renamed and its label
//!   kept apart.
//! - [`capture`]: flow records (from a capture or a Zeek log) as a SILVER
//!   table, or streamed straight to SILVER Parquet.
//! - [`labels`]: ground-truth sidecars for captures, and which labels are
//!   attacks.
//! - [`table`]: SILVER itself: the [`FlowTable`] every source ends in, its
//!   feature matrix, labels and flow ids, and its Parquet encoding.
//! - [`split`]: the held-out share of a partition, and keeping chosen rows.
//! - [`dataset`]: a SILVER table as the detectors see it (numeric features,
//!   categories, hosts and times).
//! - [`sample`]: a deterministic, labelled flow CSV with planted anomalies,
//!   for demos and tests.
//!
//! Not here: metering packets into flows and reading Zeek logs
//! (`nadir-flowmeter`), the detectors (`nadir-detectors`), and storing
//! objects and manifests (the workers).

pub mod capture;
pub mod csv;
pub mod dataset;
pub mod format;
pub mod labels;
pub mod sample;
pub mod split;
pub mod table;

pub use format::{Format, detect};
pub use table::{FlowError, FlowTable};
