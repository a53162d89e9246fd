//! The runtime every nadir stage worker shares.
//!
//! A worker's `main` reads [`config::Config`], calls
//! [`services::start_worker`], and hands its stage to [`stage::run`]; the
//! rest of this crate is what those two do:
//!
//! - [`config`]: the `NADIR_*` settings, with errors that name the variable.
//! - [`messages`]: the JetStream subjects and message types (the wire contract).
//! - [`layout`]: buckets, artifact keys, versions and manifests (the storage contract).
//! - [`audit`]: the PostgreSQL audit trail, its migrations and statements.
//! - [`registry`]: trained models, the champion and its history, feedback.
//! - [`store`]: the S3 client.
//! - [`memory`]: heap accounting for the peak memory of a fit.
//! - [`bus`]: JetStream streams, durable consumers, de-duplicated publishing.
//! - [`stage`]: the stage runtime: pull, dedupe, in-progress acks, audit,
//!   publish, ack, retries, `pipeline.dead`.
//! - [`telemetry`]: logs, Prometheus metrics, `/healthz` and `/readyz`.
//! - [`shutdown`]: SIGTERM/SIGINT handling.
//!
//! Nothing here knows what a flow or a model is: that is the stages' business.

pub mod audit;
pub mod bus;
pub mod config;
pub mod layout;
pub mod memory;
pub mod messages;
pub mod registry;
pub mod services;
pub mod shutdown;
pub mod stage;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use services::Services;
