//! NATS JetStream: the streams that hold the pipeline's subjects, the durable
//! pull consumers the stages share, and de-duplicated publishing.
//!
//! Two streams: `NADIR_PIPELINE` captures `pipeline.>`, `NADIR_MINIO`
//! captures `minio.raw` (MinIO publishes into JetStream but creates no
//! stream). Both are created idempotently by `nadir setup` and by every
//! worker at start. All replicas of a stage bind the same durable consumer,
//! so scaling a Deployment adds competing consumers and nothing else.
//!
//! [`Bus::connect`] signs in as `NADIR_NATS_*` says (token, user and
//! password, or a creds file) and speaks TLS for `tls://` URLs, a CA file,
//! or a server that asks; a refusal is an error in words, an absent server
//! is waited for.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType},
};
use async_nats::{ConnectErrorKind, ConnectOptions, HeaderMap};
use futures::StreamExt;

use nadir_config::{Delivery, NatsAuth, NatsSettings, redact_url};
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

/// The client options the settings ask for: credentials, CAs, TLS.
async fn options(settings: &NatsSettings, name: &str) -> Result<ConnectOptions, BusError> {
    let options =
        match &settings.auth {
            NatsAuth::None => ConnectOptions::new(),
            NatsAuth::Token(token) => ConnectOptions::with_token(token.clone()),
            NatsAuth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            NatsAuth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    bus_err(
                        "credentials",
                        format!("NADIR_NATS_CREDS_FILE={}: {e}", path.display()),
                    )
                })?,
        };
    // Our own TLS setup always: async-nats' default one needs a process-wide
    // rustls provider, and the workspace builds two.
    let roots = match &settings.ca_file {
        Some(ca) => ca.roots(),
        None => nadir_config::tls::system_roots(),
    };
    let options = options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .tls_client_config(nadir_config::tls::verifying_client_config(roots));
    Ok(if settings.ca_file.is_some() {
        options.require_tls(true)
    } else {
        options
    })
}

/// What the server refused, in words, when retrying cannot help: the
/// credentials, or the TLS setup (its certificate, or no TLS at all).
fn refusal(settings: &NatsSettings, e: &async_nats::ConnectError) -> Option<String> {
    match e.kind() {
        ConnectErrorKind::AuthorizationViolation => {
            return Some(match settings.auth {
                NatsAuth::None => "the server asks for credentials and none are set: set \
                     NADIR_NATS_TOKEN, NADIR_NATS_USER with NADIR_NATS_PASSWORD, or \
                     NADIR_NATS_CREDS_FILE"
                    .to_string(),
                ref auth => format!(
                    "the server refused the credentials of {} (authorization violation)",
                    auth.settings()
                ),
            });
        }
        ConnectErrorKind::Authentication => {
            return Some(format!(
                "could not sign in with {}: {e}",
                settings.auth.settings()
            ));
        }
        ConnectErrorKind::Tls => return Some(format!("TLS setup failed: {e}")),
        _ => {}
    }
    // A refused handshake surfaces as an I/O error holding rustls' reason.
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(tls) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        {
            return Some(match &settings.ca_file {
                Some(ca) => nadir_config::tls::describe_rejection(
                    tls,
                    &format!("NADIR_NATS_CA_FILE={}", ca.path.display()),
                ),
                None => format!(
                    "{} (for a private CA, set NADIR_NATS_CA_FILE)",
                    nadir_config::tls::describe_rejection(tls, "the system's root certificates")
                ),
            });
        }
        source = cause.source();
    }
    None
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
    /// Connects as `name` with the settings' credentials and TLS. A server
    /// that refuses the credentials or the TLS setup is an error at once,
    /// in words that name the setting; one that cannot be reached yet is
    /// not: the client keeps trying in the background (a worker started
    /// before NATS waits for it, not ready).
    pub async fn connect(settings: &NatsSettings, name: &str) -> Result<Self, BusError> {
        let url = settings.url.as_str();
        let first = options(settings, name).await?.connect(url).await;
        let client = match first {
            Ok(client) => client,
            Err(e) => {
                if let Some(refused) = refusal(settings, &e) {
                    return Err(BusError {
                        what: format!("connect to {}", redact_url(url)),
                        message: refused,
                    });
                }
                // Not there yet (or unreachable for now): keep trying.
                options(settings, name)
                    .await?
                    .retry_on_initial_connect()
                    .connect(url)
                    .await
                    .map_err(|e| bus_err(format!("connect to {}", redact_url(url)), e))?
            }
        };
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
