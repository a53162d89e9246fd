//! The contracts of nadir: what users, operators and the stages see of each
//! other, as types. Serde only: no async, no I/O, no service client, so
//! every other crate (the dashboard included) can read them.
//!
//! - [`layout`]: buckets, artifact keys, versions, artifact references and
//!   manifests (the storage contract).
//! - [`messages`]: the JetStream subjects and message types (the wire contract).
//! - [`stage`]: the four stages and their audit tables.
//! - [`findings`]: what an analyst triages, the rows of `findings.parquet`.
//! - [`suppression`]: rules that hide findings judged benign, and what they match.
//! - [`triage`]: a finding's states.
//! - [`queue`]: findings as shown: suppression applied, triage states joined.
//! - [`format`]: what a RAW object holds, as ingest detected it.
//! - [`audit`]: one audit row as a stage hands it over.
//! - [`registry`]: what a job changes in the model registry.
//! - [`params`]: the parameters each stage records, typed.
//!
//! What is not here: how a message is pulled or acked (`nadir-runtime`), how
//! a row is written (`nadir-db`), what a flow or a model is (`nadir-flows`,
//! `nadir-detectors`).

pub mod audit;
pub mod findings;
pub mod format;
pub mod layout;
pub mod messages;
pub mod params;
pub mod queue;
pub mod registry;
pub mod stage;
pub mod suppression;
pub mod triage;
