//! The stage runtime: what happens around every stage job.
//!
//! A stage is one function from an input message to an output message plus
//! the artifacts and audit rows it produced ([`Stage::process`]). Everything
//! else is here, the same for all four stages:
//!
//! 1. pull one message at a time from the stage's durable consumer;
//! 2. decode it; a message that cannot be read is kept in
//!    `rejected_messages`, sent to `pipeline.dead` and never retried;
//! 3. take the job's lock (run id + stage + input version) so two deliveries
//!    of one job never run at once, and skip jobs already finished (a
//!    finished job whose next message was never stored publishes it now);
//! 4. record the attempt, fixing the job's output version at the first one;
//! 5. run the stage, sending in-progress acks every third of `ack_wait`;
//! 6. on success, write the audit rows and the next message in one
//!    transaction, publish it with a `Nats-Msg-Id`, then ack;
//!    on bad input, fail the run and dead-letter at once; on a transient
//!    error, nak with a back-off until `max_deliver`, then dead-letter;
//! 7. on SIGTERM, finish the job in hand within the grace period or nak it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message as JsMessage};
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use nadir_bus::ConsumerSpec;
use nadir_config::shutdown::Shutdown;
use nadir_contract::audit::AuditRecord;
use nadir_contract::messages::{Message, MessageError, RunDead, SCHEMA_VERSION, subject};
use nadir_contract::stage::StageKind;
use nadir_db::jobs::{self, Finish, JobKey};
use nadir_db::registry::RegistryChange;

use nadir_store::sink::S3Sink;

use crate::catalogue::Catalogue;
pub use crate::error::{StageError, compute};
use crate::services::Services;

/// An input a stage can be keyed, audited and failed on.
pub trait Job: Serialize + Send + Sync + 'static {
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
    /// The version of everything this job writes, fixed at its first attempt.
    pub version: &'a str,
    pub attempt: i32,
    pub catalogue: &'a Catalogue<'a>,
    pub sink: &'a S3Sink<'a>,
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
    let loops = sources.into_iter().map(|source| {
        let runtime = Runtime {
            stage: stage.clone(),
            services: services.clone(),
            shutdown: shutdown.clone(),
        };
        async move { runtime.consume(source).await }
    });
    futures::future::try_join_all(loops).await?;
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

struct Runtime<S> {
    stage: Arc<S>,
    services: Arc<Services>,
    shutdown: Shutdown,
}

/// What to do with a message once its jobs have been looked at.
enum Disposition {
    Ack,
    NakAfter(Duration),
    HandBack,
}

fn backoff(delivered: i64) -> Duration {
    Duration::from_secs(1u64 << delivered.clamp(0, 6) as u32).min(Duration::from_secs(60))
}

impl<S: Stage> Runtime<S> {
    fn stage_name(&self) -> &'static str {
        S::KIND.name()
    }

    async fn consume(&self, source: Source<S::Input>) -> anyhow::Result<()> {
        let delivery = &self.services.config.delivery;
        let mut consumer = loop {
            match self.services.bus.consumer(source.consumer, delivery).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(stage = self.stage_name(), error = %e, "consumer not available yet");
                    tokio::select! {
                        _ = self.shutdown.requested() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            }
        };
        tracing::info!(
            stage = self.stage_name(),
            consumer = source.consumer.durable,
            subject = source.consumer.subject,
            "consuming"
        );
        while !self.shutdown.is_requested() {
            // Ask for exactly one message: a prefetched message would sit
            // unprocessed while its ack_wait runs out.
            let batch = consumer
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(stage = self.stage_name(), error = %e, "pull request failed; binding the consumer again");
                    tokio::select! {
                        _ = self.shutdown.requested() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    // The stream or consumer may have been deleted (a reset):
                    // create them again, as at start.
                    let bus = &self.services.bus;
                    if let Err(e) = bus.ensure_streams().await {
                        tracing::warn!(stage = self.stage_name(), error = %e, "streams not available");
                        continue;
                    }
                    match bus.consumer(source.consumer, delivery).await {
                        Ok(c) => consumer = c,
                        Err(e) => {
                            tracing::warn!(stage = self.stage_name(), error = %e, "consumer not available")
                        }
                    }
                    continue;
                }
            };
            let next = tokio::select! {
                _ = self.shutdown.requested() => break,
                next = batch.next() => next,
            };
            match next {
                Some(Ok(msg)) => self.handle_message(&source, msg).await,
                Some(Err(e)) => {
                    tracing::debug!(stage = self.stage_name(), error = %e, "pull ended")
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn handle_message(&self, source: &Source<S::Input>, msg: JsMessage) {
        let (delivered, sequence) = match msg.info() {
            Ok(info) => (info.delivered, info.stream_sequence as i64),
            Err(e) => {
                tracing::error!(stage = self.stage_name(), error = %e, "message without JetStream metadata");
                return;
            }
        };
        if delivered > 1 {
            self.services
                .metrics
                .redeliveries
                .with_label_values(&[self.stage_name()])
                .inc();
        }
        let jobs = match (source.decode)(&msg.payload) {
            Ok(jobs) => jobs,
            Err(e) => return self.reject(&msg, sequence, e).await,
        };
        let mut disposition = Disposition::Ack;
        for job in &jobs {
            disposition = match self.handle_job(job, &msg, delivered).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(stage = self.stage_name(), run_id = %job.run_id(), error = %format!("{e:#}"), "job bookkeeping failed; will retry");
                    Disposition::NakAfter(backoff(delivered))
                }
            };
            if !matches!(disposition, Disposition::Ack) {
                break;
            }
        }
        let result = match disposition {
            Disposition::Ack => msg.double_ack().await,
            Disposition::NakAfter(delay) => msg.ack_with(AckKind::Nak(Some(delay))).await,
            Disposition::HandBack => msg.ack_with(AckKind::Nak(None)).await,
        };
        if let Err(e) = result {
            tracing::warn!(stage = self.stage_name(), error = %e, "could not ack; JetStream will redeliver");
        }
    }

    /// A message nobody can read: audit it, dead-letter it, drop it.
    async fn reject(&self, msg: &JsMessage, sequence: i64, error: MessageError) {
        let subject = msg.subject.to_string();
        let run_id = serde_json::from_slice::<Value>(&msg.payload)
            .ok()
            .and_then(|v| v.get("run_id")?.as_str()?.parse::<Uuid>().ok());
        let error = format!("rejected {subject} message #{sequence}: {error}");
        tracing::error!(stage = self.stage_name(), run_id = ?run_id, %error, "rejected message");
        let worker = &self.services.config.worker_id;
        if let Err(e) = jobs::record_rejected(
            &self.services.db,
            &subject,
            sequence,
            &msg.payload,
            &error,
            run_id,
            worker,
        )
        .await
        {
            tracing::warn!(error = %e.detail(), "could not record the rejected message; will retry");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                .await;
            return;
        }
        let dead = RunDead {
            schema: SCHEMA_VERSION,
            run_id: run_id.unwrap_or_default(),
            outcome: "rejected".into(),
            stage: self.stage_name().into(),
            subject: subject.clone(),
            deliveries: 1,
            error,
        };
        if let Err(e) = self
            .services
            .bus
            .publish(
                subject::DEAD,
                &format!("rejected.{subject}.{sequence}"),
                dead.encode(),
            )
            .await
        {
            tracing::warn!(error = %e, "could not publish to pipeline.dead; will retry");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                .await;
            return;
        }
        self.count("rejected");
        if let Err(e) = msg.ack_with(AckKind::Term).await {
            tracing::warn!(error = %e, "could not terminate the rejected message");
        }
    }

    fn count(&self, outcome: &str) {
        self.services
            .metrics
            .jobs
            .with_label_values(&[self.stage_name(), outcome])
            .inc();
    }

    async fn handle_job(
        &self,
        job: &S::Input,
        msg: &JsMessage,
        delivered: i64,
    ) -> anyhow::Result<Disposition> {
        let services = &*self.services;
        let db = &services.db;
        let worker = services.config.worker_id.as_str();
        let max_deliver = services.config.delivery.max_deliver;
        let key = JobKey {
            run_id: job.run_id(),
            stage: S::KIND,
            input_version: job.input_version(),
        };
        let run_id = key.run_id;

        let Some(_lock) = jobs::try_lock(db, &key).await? else {
            tracing::info!(stage = self.stage_name(), %run_id, "job is being worked on elsewhere; retrying later");
            return Ok(Disposition::NakAfter(Duration::from_secs(2)));
        };
        let state = jobs::job_state(db, &key).await?;
        match state.as_ref().map(|s| s.status.as_str()) {
            Some("succeeded") => {
                let state = state.as_ref().unwrap();
                if !state.published {
                    let (Some(subject), Some(next)) = (&state.next_subject, &state.next_message)
                    else {
                        anyhow::bail!("succeeded job without a next message");
                    };
                    self.publish_next(&key, subject, next).await?;
                }
                tracing::info!(stage = self.stage_name(), %run_id, "already done; duplicate delivery acked");
                self.count("duplicate");
                return Ok(Disposition::Ack);
            }
            Some("failed") => {
                self.count("duplicate");
                return Ok(Disposition::Ack);
            }
            _ => {}
        }
        let request = serde_json::to_value(job)?;
        let started_at = Utc::now();

        if delivered > max_deliver {
            // The extra delivery: every real attempt has failed or died.
            let last = state
                .and_then(|s| s.error)
                .unwrap_or_else(|| "the worker stopped before finishing".into());
            let error = format!("gave up after {max_deliver} deliveries: {last}");
            jobs::claim(db, &key, msg.subject.as_str(), &request, "none", worker).await?;
            self.fail(&key, job, &request, started_at, msg, delivered, &error)
                .await?;
            return Ok(Disposition::Ack);
        }

        let fresh_version = nadir_contract::layout::version(
            started_at,
            &format!("{run_id}/{}/{}", S::KIND.name(), key.input_version),
        );
        let (version, attempt) = jobs::claim(
            db,
            &key,
            msg.subject.as_str(),
            &request,
            &fresh_version,
            worker,
        )
        .await?;
        let span = tracing::info_span!("job", stage = self.stage_name(), %run_id, attempt);
        let _enter = span.enter();
        tracing::info!(version = %version, delivered, "job started");
        drop(_enter);

        let catalogue = Catalogue::new(&services.config.buckets, &services.store, &services.db);
        let sink = S3Sink {
            store: &services.store,
            buckets: &services.config.buckets,
        };
        let ctx = JobContext {
            run_id,
            version: &version,
            attempt,
            catalogue: &catalogue,
            sink: &sink,
        };
        let in_flight = services
            .metrics
            .jobs_in_flight
            .with_label_values(&[self.stage_name()]);
        in_flight.inc();
        let clock = Instant::now();
        let result = self.work_with_progress(&ctx, job, msg).await;
        in_flight.dec();
        services
            .metrics
            .job_seconds
            .with_label_values(&[self.stage_name()])
            .observe(clock.elapsed().as_secs_f64());

        let Some(result) = result else {
            tracing::warn!(stage = self.stage_name(), %run_id, "shutdown grace period over; handing the job back");
            self.count("handed_back");
            return Ok(Disposition::HandBack);
        };
        match result {
            Ok(outcome) => {
                let next = serde_json::to_value(&outcome.next)?;
                let report = S::run_report(&outcome.next);
                jobs::finish(
                    db,
                    &key,
                    started_at,
                    worker,
                    Finish::Succeeded {
                        records: &outcome.records,
                        next_subject: S::NEXT_SUBJECT,
                        next_message: &next,
                        run_report: report.as_ref(),
                        registry: &outcome.registry,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!(e.detail()))?;
                self.publish_next(&key, S::NEXT_SUBJECT, &next).await?;
                services
                    .metrics
                    .rows
                    .with_label_values(&[self.stage_name()])
                    .inc_by(outcome.rows);
                services
                    .metrics
                    .bytes
                    .with_label_values(&[self.stage_name()])
                    .inc_by(outcome.bytes);
                self.count("succeeded");
                tracing::info!(stage = self.stage_name(), %run_id, seconds = clock.elapsed().as_secs_f64(), rows = outcome.rows, next = S::NEXT_SUBJECT, "job succeeded");
                Ok(Disposition::Ack)
            }
            Err(StageError::Rejected(error)) => {
                self.fail(&key, job, &request, started_at, msg, delivered, &error)
                    .await?;
                Ok(Disposition::Ack)
            }
            Err(StageError::Transient(error)) if delivered >= max_deliver => {
                let error = format!("gave up after {delivered} deliveries: {error}");
                self.fail(&key, job, &request, started_at, msg, delivered, &error)
                    .await?;
                Ok(Disposition::Ack)
            }
            Err(StageError::Transient(error)) => {
                tracing::warn!(stage = self.stage_name(), %run_id, %error, delivered, "job failed; will retry");
                jobs::record_retry(db, &key, &error).await?;
                self.count("retried");
                Ok(Disposition::NakAfter(backoff(delivered)))
            }
        }
    }

    /// Runs the stage, sending in-progress acks; `None` when the shutdown
    /// grace period ran out first.
    async fn work_with_progress(
        &self,
        ctx: &JobContext<'_>,
        job: &S::Input,
        msg: &JsMessage,
    ) -> Option<Result<Outcome<S::Output>, StageError>> {
        let work = self.stage.process(ctx, job);
        tokio::pin!(work);
        let grace = self.services.config.delivery.shutdown_grace;
        let deadline = async {
            self.shutdown.requested().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(deadline);
        let mut progress = tokio::time::interval(self.services.config.delivery.ack_wait / 3);
        progress.tick().await;
        loop {
            tokio::select! {
                result = &mut work => return Some(result),
                _ = progress.tick() => {
                    if let Err(e) = msg.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %e, "in-progress ack failed");
                    }
                }
                _ = &mut deadline => return None,
            }
        }
    }

    async fn publish_next(&self, key: &JobKey, subject: &str, next: &Value) -> anyhow::Result<()> {
        let msg_id = format!("{}.{}.{}", key.run_id, key.stage.name(), key.input_version);
        self.services
            .bus
            .publish(subject, &msg_id, serde_json::to_vec(next)?)
            .await?;
        jobs::mark_published(&self.services.db, key)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail()))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        key: &JobKey,
        job: &S::Input,
        request: &Value,
        started_at: chrono::DateTime<Utc>,
        msg: &JsMessage,
        delivered: i64,
        error: &str,
    ) -> anyhow::Result<()> {
        tracing::error!(stage = self.stage_name(), run_id = %key.run_id, %error, "job failed; run marked failed");
        jobs::finish(
            &self.services.db,
            key,
            started_at,
            &self.services.config.worker_id,
            Finish::Failed {
                item: &job.item(),
                inputs: request,
                error,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.detail()))?;
        let dead = RunDead {
            schema: SCHEMA_VERSION,
            run_id: key.run_id,
            outcome: "failed".into(),
            stage: self.stage_name().into(),
            subject: msg.subject.to_string(),
            deliveries: delivered,
            error: error.to_string(),
        };
        let msg_id = format!(
            "{}.dead.{}.{}",
            key.run_id,
            key.stage.name(),
            key.input_version
        );
        self.services
            .bus
            .publish(subject::DEAD, &msg_id, dead.encode())
            .await?;
        self.count("failed");
        Ok(())
    }
}
