//! The loop around every stage job: what happens between JetStream and a
//! stage, the same for all four.
//!
//! 1. While NATS, S3 or PostgreSQL does not answer, the stage does not
//!    pull: an outage is waited out, it fails nothing.
//! 2. Pull one message; a message published by reference
//!    ([`StoredMessage`]) is read from PostgreSQL. A message that cannot be
//!    read is kept in `rejected_messages`, dead-lettered and never retried.
//! 3. Claim the job (run id + stage + input version) in `stage_jobs`: a job
//!    already done is acked (its next message published if it never was);
//!    a job or run that is over is acked and skipped; a job another
//!    attempt holds a live lease on is handed back for later without
//!    spending anything.
//! 4. Run the stage, renewing the lease and sending in-progress acks every
//!    third of `ack_wait`; a superseded attempt stops.
//! 5. Commit the outcome, fenced on the attempt, with the audit rows and
//!    the next message (or the dead letter) in one transaction, waiting out
//!    a PostgreSQL outage with the work in hand; publish it, then ack. What
//!    cannot be published now the reaper publishes later.
//! 6. Bad input fails the run at once; a transient error is retried with a
//!    back-off until the job's retry budget (time since its first error)
//!    is spent; on SIGTERM the job in hand is finished within the grace
//!    period or handed back.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message as JsMessage};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use uuid::Uuid;

use nadir_config::shutdown::Shutdown;
use nadir_contract::messages::{
    Message, MessageError, RunDead, SCHEMA_VERSION, StoredMessage, subject,
};
use nadir_db::DbError;
use nadir_db::jobs::{self, Attempt, Budget, Claim, Committed, Finish, JobKey, Pending, Retry};
use nadir_store::sink::S3Sink;

use crate::catalogue::Catalogue;
use crate::error::StageError;
use crate::services::Services;
use crate::sink::FencedSink;
use crate::stage::{Job, JobContext, Outcome, Source, Stage};

/// How long a job another attempt holds waits before it is looked at again.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// One stage's runtime: shared by its consumer loops and its reaper.
pub(crate) struct Runtime<S> {
    stage: Arc<S>,
    pub(crate) services: Arc<Services>,
    pub(crate) shutdown: Shutdown,
}

/// What to do with a message once its jobs have been looked at.
pub(crate) enum Disposition {
    Ack,
    NakAfter(Duration),
    HandBack,
}

/// How the stage's work on one attempt ended.
enum Worked<T> {
    Done(Result<T, StageError>),
    /// The shutdown grace period ran out first.
    HandedBack,
    /// Another attempt took the job over.
    Superseded,
}

/// The back-off after a job's `n`th transient error.
fn backoff(n: i32) -> Duration {
    Duration::from_secs(1u64 << n.clamp(1, 6) as u32).min(Duration::from_secs(60))
}

impl<S: Stage> Runtime<S> {
    pub(crate) fn new(stage: Arc<S>, services: Arc<Services>, shutdown: Shutdown) -> Self {
        Runtime {
            stage,
            services,
            shutdown,
        }
    }

    pub(crate) fn stage_name(&self) -> &'static str {
        S::KIND.name()
    }

    fn budget(&self) -> Budget {
        let delivery = &self.services.config.delivery;
        Budget {
            retry: delivery.retry_budget,
            worker_deaths: delivery.max_worker_deaths,
        }
    }

    pub(crate) fn count(&self, outcome: &str) {
        self.services
            .metrics
            .jobs
            .with_label_values(&[self.stage_name(), outcome])
            .inc();
    }

    /// Waits until NATS, S3 and PostgreSQL all answer; `false` when
    /// shutdown was requested first.
    async fn wait_ready(&self) -> bool {
        let mut waiting = false;
        loop {
            match self.services.check_ready().await {
                Ok(()) => {
                    if waiting {
                        tracing::info!(stage = self.stage_name(), "services answer again; pulling");
                    }
                    return true;
                }
                Err(e) if !waiting => {
                    tracing::warn!(stage = self.stage_name(), error = %e, "not ready: not pulling until NATS, S3 and PostgreSQL answer");
                    waiting = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = self.shutdown.requested() => return false,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    pub(crate) async fn consume(&self, source: Source<S::Input>) -> anyhow::Result<()> {
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
            if !self.wait_ready().await {
                break;
            }
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
        let payload = match self.resolve(&msg.payload).await {
            Ok(payload) => payload,
            Err(Unresolved::Unreadable(e)) => return self.reject(&msg, sequence, e).await,
            Err(Unresolved::Later(e)) => {
                tracing::warn!(stage = self.stage_name(), error = %e.detail(), "could not read a stored message; will retry");
                let _ = msg.ack_with(AckKind::Nak(Some(BUSY_RETRY))).await;
                return;
            }
        };
        let jobs = match (source.decode)(&payload) {
            Ok(jobs) => jobs,
            Err(e) => return self.reject(&msg, sequence, e).await,
        };
        let mut disposition = Disposition::Ack;
        for job in &jobs {
            disposition = self.handle_job(job, msg.subject.as_str(), Some(&msg)).await;
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

    /// The message a payload stands for: itself, or the stored message a
    /// reference names.
    async fn resolve<'p>(&self, payload: &'p [u8]) -> Result<Cow<'p, [u8]>, Unresolved> {
        let Some(stored) = StoredMessage::peek(payload) else {
            return Ok(Cow::Borrowed(payload));
        };
        let key = JobKey {
            run_id: stored.run_id,
            stage: stored.stored_by,
            input_version: stored.input_version,
        };
        match jobs::next_message(&self.services.db, &key).await {
            Ok(Some(message)) => Ok(Cow::Owned(
                serde_json::to_vec(&message).expect("JSON values serialize"),
            )),
            Ok(None) => Err(Unresolved::Unreadable(MessageError::Invalid(format!(
                "the message names the stored next message of the {} job of run {}, and there is none",
                key.stage.name(),
                key.run_id
            )))),
            Err(e) => Err(Unresolved::Later(e)),
        }
    }

    /// A message nobody can read: audit it, dead-letter it, drop it.
    async fn reject(&self, msg: &JsMessage, sequence: i64, error: MessageError) {
        let subject = msg.subject.to_string();
        let run_id = serde_json::from_slice::<Value>(&msg.payload)
            .ok()
            .and_then(|v| v.get("run_id")?.as_str()?.parse::<Uuid>().ok());
        let error = nadir_db::safe::bounded(
            &format!("rejected {subject} message #{sequence}: {error}"),
            nadir_db::safe::MAX_ERROR_BYTES,
        );
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
            let _ = msg.ack_with(AckKind::Nak(Some(BUSY_RETRY))).await;
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
            let _ = msg.ack_with(AckKind::Nak(Some(BUSY_RETRY))).await;
            return;
        }
        self.count("rejected");
        if let Err(e) = msg.ack_with(AckKind::Term).await {
            tracing::warn!(error = %e, "could not terminate the rejected message");
        }
    }

    /// Takes up one job and works it to an outcome. `msg` is the message it
    /// came from (`None` when the reaper drives it).
    pub(crate) async fn handle_job(
        &self,
        job: &S::Input,
        trigger: &str,
        msg: Option<&JsMessage>,
    ) -> Disposition {
        match self.try_job(job, trigger, msg).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(stage = self.stage_name(), run_id = %job.run_id(), error = %e.detail(), "job bookkeeping failed; will retry");
                Disposition::NakAfter(BUSY_RETRY)
            }
        }
    }

    async fn try_job(
        &self,
        job: &S::Input,
        trigger: &str,
        msg: Option<&JsMessage>,
    ) -> Result<Disposition, DbError> {
        let services = &*self.services;
        let db = &services.db;
        let worker = services.config.worker_id.as_str();
        let key = JobKey {
            run_id: job.run_id(),
            stage: S::KIND,
            input_version: job.input_version(),
        };
        let run_id = key.run_id;
        let request = serde_json::to_value(job).expect("jobs serialize");
        let lease = services.config.delivery.lease();
        let claim = jobs::claim(db, &key, trigger, &request, worker, lease, self.budget()).await?;
        let (attempt, give_up) = match claim {
            Claim::Busy => {
                tracing::debug!(stage = self.stage_name(), %run_id, "job is being worked on elsewhere; looking again later");
                self.count("busy");
                return Ok(Disposition::NakAfter(BUSY_RETRY));
            }
            Claim::Done { unpublished } => {
                if let Some(pending) = unpublished {
                    self.publish(&pending).await;
                }
                tracing::info!(stage = self.stage_name(), %run_id, "already done; duplicate delivery acked");
                self.count("duplicate");
                return Ok(Disposition::Ack);
            }
            Claim::Over { why } => {
                tracing::info!(stage = self.stage_name(), %run_id, %why, "not working on it: {why}");
                self.count("skipped");
                return Ok(Disposition::Ack);
            }
            Claim::Started { attempt, give_up } => (attempt, give_up),
        };
        let started_at = Utc::now();
        let in_hand = InHand {
            attempt: &attempt,
            item: job.item(),
            request: &request,
            started_at,
            trigger,
            msg,
        };
        if let Some(reason) = give_up {
            return self.fail(&in_hand, false, &reason).await;
        }
        tracing::info!(stage = self.stage_name(), %run_id, attempt = attempt.number, version = %attempt.version, "job started");

        let catalogue = Catalogue::new(&services.config.buckets, &services.store, db);
        let sink = FencedSink {
            s3: S3Sink {
                store: &services.store,
                buckets: &services.config.buckets,
            },
            db,
            attempt: &attempt,
        };
        let ctx = JobContext {
            run_id,
            version: &attempt.version,
            attempt: attempt.number,
            catalogue: &catalogue,
            sink: &sink,
        };
        let in_flight = services
            .metrics
            .jobs_in_flight
            .with_label_values(&[self.stage_name()]);
        in_flight.inc();
        let clock = Instant::now();
        let worked = self.work(&ctx, job, msg, &attempt).await;
        in_flight.dec();
        services
            .metrics
            .job_seconds
            .with_label_values(&[self.stage_name()])
            .observe(clock.elapsed().as_secs_f64());

        match worked {
            Worked::HandedBack => {
                tracing::warn!(stage = self.stage_name(), %run_id, "shutdown grace period over; handing the job back");
                if let Err(e) = jobs::release(db, &attempt).await {
                    tracing::warn!(error = %e.detail(), "could not release the lease; it expires on its own");
                }
                self.count("handed_back");
                Ok(Disposition::HandBack)
            }
            Worked::Superseded | Worked::Done(Err(StageError::Superseded(_))) => {
                self.superseded(&attempt);
                Ok(Disposition::NakAfter(BUSY_RETRY))
            }
            Worked::Done(Ok(outcome)) => self.succeed(&in_hand, outcome, clock).await,
            Worked::Done(Err(StageError::Rejected(error))) => {
                self.fail(&in_hand, true, &error).await
            }
            Worked::Done(Err(StageError::Transient(error))) => {
                let recorded = self
                    .persist(msg, || {
                        jobs::record_retry(db, &attempt, &error, self.budget())
                    })
                    .await?;
                match recorded {
                    Retry::Later(n) => {
                        let delay = backoff(n);
                        tracing::warn!(stage = self.stage_name(), %run_id, %error, retry = n, retry_in_s = delay.as_secs(), "job failed; will retry");
                        self.count("retried");
                        Ok(Disposition::NakAfter(delay))
                    }
                    Retry::Exhausted { seconds } => {
                        let error = format!(
                            "gave up after {seconds} s of retries (NADIR_RETRY_BUDGET_SECS={}): {error}",
                            self.budget().retry.as_secs()
                        );
                        self.fail(&in_hand, false, &error).await
                    }
                    Retry::Fenced => {
                        self.superseded(&attempt);
                        Ok(Disposition::NakAfter(BUSY_RETRY))
                    }
                }
            }
        }
    }

    fn superseded(&self, attempt: &Attempt) {
        tracing::warn!(stage = self.stage_name(), run_id = %attempt.key.run_id, attempt = attempt.number, "another attempt owns the job now; this one stops and writes nothing more");
        self.count("superseded");
    }

    /// Runs the stage, renewing the lease and sending in-progress acks.
    async fn work(
        &self,
        ctx: &JobContext<'_>,
        job: &S::Input,
        msg: Option<&JsMessage>,
        attempt: &Attempt,
    ) -> Worked<Outcome<S::Output>> {
        let work = self.stage.process(ctx, job);
        tokio::pin!(work);
        let grace = self.services.config.delivery.shutdown_grace;
        let deadline = async {
            self.shutdown.requested().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(deadline);
        let mut heartbeat = tokio::time::interval(attempt.lease / 3);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                result = &mut work => return Worked::Done(result),
                _ = heartbeat.tick() => {
                    if let Some(msg) = msg
                        && let Err(e) = msg.ack_with(AckKind::Progress).await
                    {
                        tracing::warn!(error = %e, "in-progress ack failed");
                    }
                    match jobs::renew(&self.services.db, attempt).await {
                        Ok(true) => {}
                        Ok(false) => return Worked::Superseded,
                        Err(e) => tracing::warn!(error = %e.detail(), "could not renew the job's lease; working on"),
                    }
                }
                _ = &mut deadline => return Worked::HandedBack,
            }
        }
    }

    /// Runs a bookkeeping statement until PostgreSQL takes it, waiting out
    /// an outage with the work in hand (and the message kept with
    /// in-progress acks). Gives up on an error no retry mends, and once
    /// the shutdown grace period is over.
    async fn persist<T, F, Fut>(&self, msg: Option<&JsMessage>, op: F) -> Result<T, DbError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let started = Instant::now();
        let grace = self.services.config.delivery.shutdown_grace;
        let mut delay = Duration::from_millis(500);
        let mut warned = false;
        loop {
            match op().await {
                Ok(v) => {
                    if warned {
                        tracing::info!(
                            stage = self.stage_name(),
                            "PostgreSQL answers again; recorded"
                        );
                    }
                    return Ok(v);
                }
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => {
                    if self.shutdown.is_requested() && started.elapsed() > grace {
                        return Err(e);
                    }
                    if !warned {
                        tracing::warn!(stage = self.stage_name(), error = %e.detail(), "cannot record the job's outcome yet; keeping it until PostgreSQL answers");
                        warned = true;
                    }
                    if let Some(msg) = msg {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn succeed(
        &self,
        in_hand: &InHand<'_>,
        outcome: Outcome<S::Output>,
        clock: Instant,
    ) -> Result<Disposition, DbError> {
        let services = &*self.services;
        let attempt = in_hand.attempt;
        let run_id = attempt.key.run_id;
        let next = serde_json::to_value(&outcome.next).expect("messages serialize");
        let report = S::run_report(&outcome.next);
        let (db, worker, started_at) = (
            &services.db,
            services.config.worker_id.as_str(),
            in_hand.started_at,
        );
        let (records, registry, next_ref, report_ref) =
            (&outcome.records, &outcome.registry, &next, report.as_ref());
        let committed = self
            .persist(in_hand.msg, move || {
                jobs::finish(
                    db,
                    attempt,
                    started_at,
                    worker,
                    Finish::Succeeded {
                        records,
                        next_subject: S::NEXT_SUBJECT,
                        next_message: next_ref,
                        run_report: report_ref,
                        registry,
                    },
                )
            })
            .await;
        let committed = match committed {
            Ok(c) => c,
            Err(e) if !e.is_transient() => {
                let error = format!("could not record the job's outcome: {}", e.detail());
                return self.fail(in_hand, true, &error).await;
            }
            Err(e) => return Err(e),
        };
        match committed {
            Committed::Yes => {
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
                self.publish(&Pending {
                    key: attempt.key.clone(),
                    subject: S::NEXT_SUBJECT.into(),
                    message: next,
                })
                .await;
                self.remove_leftovers(Some(&attempt.key)).await;
                Ok(Disposition::Ack)
            }
            Committed::Fenced => {
                self.superseded(attempt);
                Ok(Disposition::NakAfter(BUSY_RETRY))
            }
            Committed::RunOver(status) => {
                tracing::info!(stage = self.stage_name(), %run_id, %status, "the run ended while this job worked; its work is dropped");
                self.count("cancelled");
                self.remove_leftovers(Some(&attempt.key)).await;
                Ok(Disposition::Ack)
            }
        }
    }

    /// Fails the job and its run, with the dead letter in the outbox.
    async fn fail(
        &self,
        in_hand: &InHand<'_>,
        rejected: bool,
        error: &str,
    ) -> Result<Disposition, DbError> {
        let services = &*self.services;
        let attempt = in_hand.attempt;
        let error = nadir_db::safe::bounded(error, nadir_db::safe::MAX_ERROR_BYTES);
        let dead = RunDead {
            schema: SCHEMA_VERSION,
            run_id: attempt.key.run_id,
            outcome: "failed".into(),
            stage: self.stage_name().into(),
            subject: in_hand.trigger.into(),
            deliveries: attempt.number.into(),
            error: error.clone(),
        };
        let dead = serde_json::to_value(&dead).expect("messages serialize");
        let (db, worker, item) = (
            &services.db,
            services.config.worker_id.as_str(),
            in_hand.item.as_str(),
        );
        let (request, error_ref, dead_ref) = (in_hand.request, error.as_str(), &dead);
        let committed = self
            .persist(in_hand.msg, move || {
                jobs::finish(
                    db,
                    attempt,
                    in_hand.started_at,
                    worker,
                    Finish::Failed {
                        item,
                        inputs: request,
                        error: error_ref,
                        rejected,
                        dead_letter: dead_ref,
                    },
                )
            })
            .await?;
        if committed == Committed::Fenced {
            self.superseded(attempt);
            return Ok(Disposition::NakAfter(BUSY_RETRY));
        }
        tracing::error!(stage = self.stage_name(), run_id = %attempt.key.run_id, %error, "job failed; run marked failed");
        self.count("failed");
        self.publish(&Pending {
            key: attempt.key.clone(),
            subject: subject::DEAD.into(),
            message: dead,
        })
        .await;
        self.remove_leftovers(Some(&attempt.key)).await;
        Ok(Disposition::Ack)
    }

    /// The largest payload sent as it is; larger stage messages travel by
    /// reference.
    fn message_limit(&self) -> usize {
        self.services
            .config
            .delivery
            .max_message_bytes
            .unwrap_or_else(|| self.services.bus.max_payload().saturating_sub(4096))
    }

    /// Publishes a message of the outbox and notes it stored; `false` when
    /// JetStream could not take it now (it stays in the outbox).
    pub(crate) async fn publish(&self, pending: &Pending) -> bool {
        let key = &pending.key;
        let dead = pending.subject == subject::DEAD;
        let body = serde_json::to_vec(&pending.message).expect("JSON values serialize");
        let limit = self.message_limit();
        let payload = if !dead && body.len() > limit {
            tracing::info!(stage = self.stage_name(), run_id = %key.run_id, bytes = body.len(), limit, subject = %pending.subject, "message too large for NATS; sent by reference");
            StoredMessage {
                schema: SCHEMA_VERSION,
                run_id: key.run_id,
                stored_by: key.stage,
                input_version: key.input_version.clone(),
                bytes: body.len(),
            }
            .encode()
        } else {
            body
        };
        let msg_id = if dead {
            key.dead_msg_id()
        } else {
            key.next_msg_id()
        };
        if let Err(e) = self
            .services
            .bus
            .publish(&pending.subject, &msg_id, payload)
            .await
        {
            tracing::warn!(stage = self.stage_name(), run_id = %key.run_id, subject = %pending.subject, error = %e, "could not publish; the outbox keeps the message and the reaper sends it");
            return false;
        }
        if let Err(e) = jobs::mark_published(&self.services.db, key, dead).await {
            tracing::warn!(error = %e.detail(), "published, but could not note it; it may be published again (JetStream drops the duplicate)");
        }
        true
    }

    /// Deletes the objects of attempts that were not committed.
    pub(crate) async fn remove_leftovers(&self, job: Option<&JobKey>) {
        let services = &*self.services;
        let reap_after = services.config.delivery.reap_after;
        let leftovers = match jobs::artifacts_to_remove(&services.db, job, reap_after).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e.detail(), "could not list leftover artifacts; the reaper will");
                return;
            }
        };
        for leftover in leftovers {
            match services.store.delete(&leftover.bucket, &leftover.key).await {
                Ok(()) => {
                    tracing::debug!(bucket = %leftover.bucket, key = %leftover.key, "removed an artifact of an attempt that was not committed");
                    if let Err(e) = jobs::removed(&services.db, &leftover).await {
                        tracing::debug!(error = %e.detail(), "could not note a removed artifact");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not remove a leftover artifact"),
            }
        }
    }
}

/// Why a stored message could not be read.
enum Unresolved {
    Unreadable(MessageError),
    Later(DbError),
}

/// What in_hand a job needs to know about it.
struct InHand<'a> {
    attempt: &'a Attempt,
    item: String,
    request: &'a Value,
    started_at: DateTime<Utc>,
    trigger: &'a str,
    msg: Option<&'a JsMessage>,
}
