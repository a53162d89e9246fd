//! What a stage is to the runtime: the [`Stage`] trait, the [`Job`] each
//! message becomes, the [`JobContext`] a job sees and the [`Outcome`] it
//! returns; [`run`] drives a stage on its sources (the loop itself is
//! [`crate::delivery`]).
//!
//! A stage is one function from an input to an output message plus the
//! artifacts and audit rows it produced ([`Stage::process`]). Acks, leases,
//! retries, the audit commit, the outbox, metrics and dead letters are the
//! runtime's, the same for all four stages.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use nadir_bus::ConsumerSpec;
use nadir_config::shutdown::Shutdown;
use nadir_contract::audit::AuditRecord;
use nadir_contract::messages::{Message, MessageError};
use nadir_contract::stage::StageKind;
use nadir_db::registry::RegistryChange;

use crate::catalogue::Catalogue;
use crate::delivery::Runtime;
pub use crate::error::{StageError, compute, compute_reading};
use crate::services::Services;
pub use crate::sink::FencedSink;

/// An input a stage can be keyed, audited and failed on.
/// It is stored with its job (`stage_jobs.request`) so the reaper can run
/// it again when nobody works on it.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    fn run_id(&self) -> Uuid;
    /// What the job reads, as one string: with the run id and the stage, the
    /// idempotency key.
    fn input_version(&self) -> String;
    /// What a failure row is about (a RAW key, a partition, ...).
    fn item(&self) -> String;
}

/// What a successful job produced.
pub struct Outcome<N> {
    pub records: Vec<AuditRecord>,
    pub next: N,
    /// Rows (flows) and bytes read, for the metrics.
    pub rows: u64,
    pub bytes: u64,
    /// Registry changes, committed with the audit rows.
    pub registry: Vec<RegistryChange>,
}

/// What a stage job sees: its run and version, what it may look up, and
/// where its artifacts go. Nothing else: acks, metrics, the audit rows and
/// the next message are the runtime's.
pub struct JobContext<'a> {
    pub run_id: Uuid,
    /// The version of everything this attempt writes (each attempt has its
    /// own; the committed one's artifacts are kept).
    pub version: &'a str,
    pub attempt: i32,
    pub catalogue: &'a Catalogue<'a>,
    pub sink: &'a FencedSink<'a>,
}

/// A pipeline stage.
pub trait Stage: Send + Sync + 'static {
    const KIND: StageKind;
    /// Where the output message goes.
    const NEXT_SUBJECT: &'static str;
    type Input: Job;
    type Output: Message;

    fn process<'a>(
        &'a self,
        ctx: &'a JobContext<'a>,
        input: &'a Self::Input,
    ) -> impl Future<Output = Result<Outcome<Self::Output>, StageError>> + Send + 'a;

    /// For the last stage: what `pipeline_runs.report` records.
    fn run_report(_output: &Self::Output) -> Option<Value> {
        None
    }
}

/// Turns a message payload into zero or more jobs.
pub type Decoder<I> = Box<dyn Fn(&[u8]) -> Result<Vec<I>, MessageError> + Send + Sync>;

/// A durable consumer and how to read its messages.
pub struct Source<I> {
    pub consumer: ConsumerSpec,
    pub decode: Decoder<I>,
}

impl<I: Job + Message> Source<I> {
    /// A consumer whose messages are the stage's input type.
    pub fn messages(consumer: ConsumerSpec) -> Self {
        Source {
            consumer,
            decode: Box::new(|payload| I::decode(payload).map(|m| vec![m])),
        }
    }
}

/// Runs a stage on its sources until shutdown.
pub async fn run<S: Stage>(
    stage: Arc<S>,
    services: Arc<Services>,
    sources: Vec<Source<S::Input>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let runtime = Arc::new(Runtime::new(stage, services, shutdown));
    let loops = sources.into_iter().map(|source| {
        let runtime = runtime.clone();
        async move { runtime.consume(source).await }
    });
    let reaper = crate::reaper::run(runtime.clone());
    tokio::try_join!(futures::future::try_join_all(loops), reaper)?;
    tracing::info!(stage = S::KIND.name(), "stopped");
    Ok(())
}

/// Runs a stage on one durable consumer whose messages are its input
/// type, until shutdown: the whole of a one-consumer worker.
pub async fn run_on<S>(
    stage: S,
    consumer: ConsumerSpec,
    services: Arc<Services>,
    shutdown: Shutdown,
) -> anyhow::Result<()>
where
    S: Stage,
    S::Input: Message,
{
    run(
        Arc::new(stage),
        services,
        vec![Source::messages(consumer)],
        shutdown,
    )
    .await
}
