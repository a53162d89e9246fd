//! The stage runtime every nadir worker shares: connections, the loop
//! around each stage job, and the start-up of a worker process.
//!
//! - [`services`]: NATS, S3 and PostgreSQL connected with retries,
//!   migrations and streams applied, readiness; a worker's start-up.
//! - [`stage`]: the [`stage::Stage`] trait, what a job sees and returns.
//! - [`delivery`]: the loop that waits out outages, pulls, claims the job
//!   under a lease, renews it, commits fenced with the outbox, publishes,
//!   acks, retries within the budget, counts metrics and dead-letters.
//! - [`reaper`]: the outbox, leftovers and abandoned jobs.
//! - [`sink`]: artifacts written fenced on the attempt.
//! - [`catalogue`]: what a stage may look up (read only).
//! - [`error`]: bad input or a transient error; `compute` for CPU-bound work.
//! - [`jobs`]: the idempotency key of each stage message.
//!
//! A stage never touches an ack, a metric or an audit statement: it gets
//! its input and a context, and returns its outcome.

pub mod catalogue;
pub mod delivery;
pub mod error;
pub mod jobs;
pub mod reaper;
pub mod services;
pub mod sink;
pub mod stage;

pub use services::Services;
