//! The stage runtime every nadir worker shares: connections, the loop
//! around each stage job, and the start-up of a worker process.
//!
//! - [`services`]: NATS, S3 and PostgreSQL connected with retries,
//!   migrations and streams applied, readiness; a worker's start-up.
//! - [`stage`]: the [`stage::Stage`] trait and the loop that pulls, dedupes,
//!   locks, sends in-progress acks, records the audit rows, publishes the
//!   next message, acks, counts metrics and dead-letters.
//! - [`catalogue`]: what a stage may look up (read only).
//! - [`error`]: bad input or a transient error; `compute` for CPU-bound work.
//! - [`jobs`]: the idempotency key of each stage message.
//!
//! A stage never touches an ack, a metric or an audit statement: it gets
//! its input and a context, and returns its outcome.

pub mod catalogue;
pub mod error;
pub mod jobs;
pub mod services;
pub mod stage;

pub use services::Services;
