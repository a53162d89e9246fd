//! One row of a stage's audit table, as a stage hands it to the runtime.
//!
//! The tables themselves (DESIGN.md: `ingestions`, `transformations`,
//! `trainings`, `evaluations`) are written by `nadir-db`; this is what goes
//! into one row's JSONB columns.

use serde_json::Value;

/// One row of a stage's audit table.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// What the row is about: a RAW key, a partition, an algorithm, `run`.
    pub item: String,
    pub inputs: Value,
    pub outputs: Value,
    pub parameters: Value,
    pub metrics: Value,
}
