//! The PostgreSQL side of nadir: the audit trail, the runtime's job book,
//! the model registry and analysts' feedback. Every statement binds its
//! values as parameters; table names come only from
//! [`nadir_contract::stage::StageKind`].
//!
//! Tables (DESIGN.md): `pipeline_runs` ties a run together; `ingestions`,
//! `transformations`, `trainings` and `evaluations` hold one row per thing a
//! stage produced (a RAW object, a SILVER partition, a model, an
//! evaluation), written in the same transaction that marks the stage's job
//! done, and unique on (run, input version, item) so a redelivered message
//! can never add a second row.
//!
//! - [`connection`]: the pool, single connections and [`DbError`].
//! - [`tls`]: libpq's `sslmode` with rustls, and readable refusals.
//! - [`schema`]: migrations and the dashboard role's grants.
//! - [`jobs`]: `stage_jobs` and `rejected_messages`, for the stage runtime.
//! - [`runs`]: runs and their audit rows, for the CLI and the dashboard.
//! - [`registry`]: models, the champion per feature set, its history.
//! - [`feedback`]: analysts' verdicts on flows.
//! - [`triage`]: findings' states, whose verdicts label their flows.
//! - [`suppression`]: suppression rules, versioned.
//! - [`safe`]: text from outside (NUL, length) made storable.
//!
//! This crate knows no NATS and no S3.

pub mod connection;
pub mod feedback;
pub mod jobs;
pub mod registry;
pub mod runs;
pub mod safe;
pub mod schema;
pub mod suppression;
pub mod tls;
pub mod triage;

pub use connection::{DbError, Pool, connect, pool};
