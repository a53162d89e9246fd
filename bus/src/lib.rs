//! NATS JetStream: the streams that hold the pipeline's subjects, the durable
//! pull consumers the stages share, and de-duplicated publishing.
//!
//! Two streams: `NADIR_PIPELINE` captures `pipeline.>`, `NADIR_MINIO`
//! captures `minio.raw` (MinIO publishes into JetStream but creates no
//! stream). Both are created idempotently by `nadir setup` and by every
//! worker at start. All replicas of a stage bind the same durable consumer,
//! so scaling a Deployment adds competing consumers and nothing else.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType},
};
use futures::StreamExt;

use nadir_config::Delivery;
use nadir_contract::messages::subject;

pub const PIPELINE_STREAM: &str = "NADIR_PIPELINE";
pub const MINIO_STREAM: &str = "NADIR_MINIO";

/// Retries published within this window with the same `Nats-Msg-Id` are
/// stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
#[error("NATS JetStream {what}: {message}")]
pub struct BusError {
    what: String,
    message: String,
}

fn bus_err(what: impl Into<String>, e: impl std::fmt::Display) -> BusError {
    BusError {
        what: what.into(),
        message: e.to_string(),
    }
}

/// A durable consumer of the pipeline: which stream, which subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub durable: &'static str,
    pub stream: &'static str,
    pub subject: &'static str,
}

pub const INGEST_EVENTS: ConsumerSpec = ConsumerSpec {
    durable: "ingest-events",
    stream: MINIO_STREAM,
    subject: subject::MINIO_RAW,
};
pub const INGEST_START: ConsumerSpec = ConsumerSpec {
    durable: "ingest-start",
    stream: PIPELINE_STREAM,
    subject: subject::START,
};
pub const TRANSFORM: ConsumerSpec = ConsumerSpec {
    durable: "transform",
    stream: PIPELINE_STREAM,
    subject: subject::TRANSFORM,
};
pub const TRAIN: ConsumerSpec = ConsumerSpec {
    durable: "train",
    stream: PIPELINE_STREAM,
    subject: subject::TRAIN,
};
pub const EVAL: ConsumerSpec = ConsumerSpec {
    durable: "eval",
    stream: PIPELINE_STREAM,
    subject: subject::EVAL,
};
pub const ALL_CONSUMERS: [ConsumerSpec; 5] = [INGEST_EVENTS, INGEST_START, TRANSFORM, TRAIN, EVAL];

/// A connection to NATS with its JetStream context.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
}

impl Bus {
    pub async fn connect(url: &str, name: &str) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| bus_err(format!("connect to {}", nadir_config::redact_url(url)), e))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Bus { client, jetstream })
    }

    /// The largest message the server accepts.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates both streams unless they exist.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        for (name, subjects) in [
            (PIPELINE_STREAM, vec!["pipeline.>".to_string()]),
            (MINIO_STREAM, vec![subject::MINIO_RAW.to_string()]),
        ] {
            self.jetstream
                .get_or_create_stream(StreamConfig {
                    name: name.to_string(),
                    subjects,
                    retention: RetentionPolicy::Limits,
                    storage: StorageType::File,
                    discard: DiscardPolicy::Old,
                    max_age: Duration::from_secs(30 * 24 * 3600),
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .map_err(|e| bus_err(format!("create stream {name}"), e))?;
        }
        Ok(())
    }

    /// Creates (or updates) a stage's durable pull consumer.
    ///
    /// Deliveries are unlimited: a job's attempts and retry budget are
    /// counted in PostgreSQL, where lock contention and hand-backs do not
    /// count, so JetStream never gives up on a message on its own (and
    /// never sends a MAX_DELIVERIES advisory for one).
    pub async fn consumer(
        &self,
        spec: ConsumerSpec,
        delivery: &Delivery,
    ) -> Result<PullConsumer, BusError> {
        let stream = self
            .jetstream
            .get_stream(spec.stream)
            .await
            .map_err(|e| bus_err(format!("stream {} (run `nadir setup`)", spec.stream), e))?;
        stream
            .create_consumer(pull::Config {
                durable_name: Some(spec.durable.to_string()),
                description: Some(format!("nadir stage consumer of {}", spec.subject)),
                filter_subject: spec.subject.to_string(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: delivery.ack_wait,
                max_deliver: -1,
                max_ack_pending: 1000,
                ..Default::default()
            })
            .await
            .map_err(|e| bus_err(format!("create consumer {}", spec.durable), e))
    }

    /// Publishes with a `Nats-Msg-Id` and waits for JetStream to store it.
    pub async fn publish(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let ack = self
            .jetstream
            .publish_with_headers(subject.to_string(), headers, payload.into())
            .await
            .map_err(|e| bus_err(format!("publish to {subject}"), e))?;
        ack.await
            .map_err(|e| bus_err(format!("publish to {subject}"), e))?;
        Ok(())
    }

    /// Deletes both streams (and so every consumer): used by tests to start
    /// from nothing, and by `nadir setup --reset`.
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        for name in [PIPELINE_STREAM, MINIO_STREAM] {
            if self.jetstream.get_stream(name).await.is_ok() {
                self.jetstream
                    .delete_stream(name)
                    .await
                    .map_err(|e| bus_err(format!("delete stream {name}"), e))?;
            }
        }
        Ok(())
    }

    /// Every message on `subject` still in the pipeline stream, oldest first.
    pub async fn read_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<async_nats::jetstream::Message>, BusError> {
        let stream = self
            .jetstream
            .get_stream(PIPELINE_STREAM)
            .await
            .map_err(|e| bus_err(format!("stream {PIPELINE_STREAM}"), e))?;
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject.to_string(),
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| bus_err(format!("read {subject}"), e))?;
        let pending = consumer.cached_info().num_pending;
        let mut out = Vec::new();
        if pending == 0 {
            return Ok(out);
        }
        let mut batch = consumer
            .fetch()
            .max_messages(pending as usize)
            .messages()
            .await
            .map_err(|e| bus_err(format!("read {subject}"), e))?;
        while let Some(msg) = batch.next().await {
            out.push(msg.map_err(|e| bus_err(format!("read {subject}"), e))?);
        }
        Ok(out)
    }
}
