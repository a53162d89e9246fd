//! The pipeline's stage cores, shared by the workers and the CLI: each
//! takes a stage's inputs and typed parameters and returns its artifacts
//! as `nadir_store::sink::Product`s and what the next stage needs. The workers write
//! the products to S3, `nadir analyze` and `nadir reproduce` to a
//! directory or to nothing: the same functions, so they cannot drift.
//!
//! - [`settings`]: the analysis settings (`NADIR_DETECTORS`, seed, timeouts,
//!   training window, selection metric).
//! - [`ingest`]: a RAW object fingerprinted, its RAW manifest.
//! - [`transform`]: a RAW object (capture, Zeek log, flow CSV) to SILVER.
//! - [`train`]: the training window, the dataset, fitting every detector.
//! - [`eval`]: scoring, metrics, explanations, drift and the champion rule.
//! - [`report`]: the evaluation report and the run's figures, typed.
//! - [`memory`]: heap accounting for the peak memory of a fit.
//!
//! What is not here: pulling messages, acks, the audit trail's statements
//! (`nadir-runtime`, `nadir-db`); how flows are assembled or detectors
//! work (`nadir-flows`, `nadir-flowmeter`, `nadir-detectors`).

pub mod eval;
pub mod ingest;
pub mod memory;
pub mod report;
pub mod settings;
pub mod train;
pub mod transform;

pub use settings::Analysis;
