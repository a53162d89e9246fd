//! The messages the stages exchange over NATS JetStream, and their subjects.
//!
//! This module is the one place the wire contract of DESIGN.md lives. Every
//! message is JSON, carries a `run_id` and a `schema` version, and is decoded
//! strictly: an unknown schema version or a missing field is a rejected
//! message with an error that says what was wrong, never a guess.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::format::Detected;
use crate::layout::ArtifactRef;

/// Version of every message type below. Bumped on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Subjects of DESIGN.md.
pub mod subject {
    pub const MINIO_RAW: &str = "minio.raw";
    pub const START: &str = "pipeline.start";
    pub const TRANSFORM: &str = "pipeline.transform";
    pub const TRAIN: &str = "pipeline.train";
    pub const EVAL: &str = "pipeline.eval";
    pub const DONE: &str = "pipeline.done";
    pub const DEAD: &str = "pipeline.dead";
}

/// A message that could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not valid JSON for {kind}: {source}")]
    Json {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} has schema version {found}; this build reads version {SCHEMA_VERSION}")]
    Schema { kind: &'static str, found: u32 },
    #[error("{0}")]
    Invalid(String),
}

/// A message type of the pipeline.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Name used in errors ("pipeline.transform message").
    const KIND: &'static str;
    fn run_id(&self) -> Uuid;
    fn schema(&self) -> u32;

    fn decode(payload: &[u8]) -> Result<Self, MessageError> {
        let message: Self =
            serde_json::from_slice(payload).map_err(|source| MessageError::Json {
                kind: Self::KIND,
                source,
            })?;
        if message.schema() != SCHEMA_VERSION {
            return Err(MessageError::Schema {
                kind: Self::KIND,
                found: message.schema(),
            });
        }
        Ok(message)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("pipeline messages always serialize")
    }
}

macro_rules! message {
    ($type:ty, $kind:expr) => {
        impl Message for $type {
            const KIND: &'static str = $kind;
            fn run_id(&self) -> Uuid {
                self.run_id
            }
            fn schema(&self) -> u32 {
                self.schema
            }
        }
    };
}

/// What a run starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// RAW objects: the named keys, every object under the prefix, or,
    /// with neither, every object no run has seen yet.
    #[default]
    Ingest,
    /// No new RAW object: train on the training window of the SILVER
    /// partitions already there and evaluate the newest of them (those of
    /// the window's span, else the newest one).
    Retrain,
    /// Every RAW object under the prefix (`""`: the whole bucket), ingested
    /// before or not, in a new run.
    Backfill,
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunMode::Ingest => "ingest",
            RunMode::Retrain => "retrain",
            RunMode::Backfill => "backfill",
        })
    }
}

/// `pipeline.start`: what to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub schema: u32,
    pub run_id: Uuid,
    #[serde(default)]
    pub mode: RunMode,
    /// RAW object keys. Empty together with `prefix` means every RAW object
    /// not yet ingested.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Every RAW object under this prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Who asked: `cli`, `reconciler`, `job`, ...
    #[serde(default)]
    pub requested_by: Option<String>,
    /// What to train on and evaluate on; unset fields take the workers'
    /// configuration.
    #[serde(default)]
    pub training: Option<TrainingWindow>,
}
message!(StartRun, "pipeline.start message");

/// The training window and hold-out of a run (`pipeline.start`'s optional
/// training configuration, or `NADIR_TRAIN_*` / `NADIR_HOLDOUT`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingWindow {
    /// Train on the last N SILVER partitions with the run's features (the
    /// run's own included).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Train on the partitions transformed in the last this many hours.
    #[serde(default)]
    pub span_hours: Option<f64>,
    /// Keep this share of the flows (chosen by a hash of partition and
    /// flow id) out of training, and evaluate on those flows only.
    #[serde(default)]
    pub holdout: Option<f64>,
}

impl TrainingWindow {
    /// This window, its unset fields taken from `defaults`.
    pub fn or(&self, defaults: &TrainingWindow) -> TrainingWindow {
        TrainingWindow {
            partitions: self.partitions.or(defaults.partitions),
            span_hours: self.span_hours.or(defaults.span_hours),
            holdout: self.holdout.or(defaults.holdout),
        }
    }

    pub fn check(&self) -> Result<(), MessageError> {
        if self.partitions == Some(0) {
            return Err(MessageError::Invalid(
                "training.partitions must be at least 1".into(),
            ));
        }
        if let Some(h) = self.span_hours
            && !(h > 0.0 && h.is_finite())
        {
            return Err(MessageError::Invalid(format!(
                "training.span_hours must be positive, not {h}"
            )));
        }
        if let Some(h) = self.holdout
            && !(h > 0.0 && h < 1.0)
        {
            return Err(MessageError::Invalid(format!(
                "training.holdout must be a share between 0 and 1, not {h}"
            )));
        }
        Ok(())
    }
}

impl StartRun {
    pub fn new(keys: Vec<String>, prefix: Option<String>, requested_by: &str) -> Self {
        StartRun {
            schema: SCHEMA_VERSION,
            run_id: Uuid::new_v4(),
            mode: RunMode::Ingest,
            keys,
            prefix,
            requested_by: Some(requested_by.to_string()),
            training: None,
        }
    }
}

/// A RAW object as ingest found it: identity, fingerprint, detected format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawObject {
    pub key: String,
    pub etag: String,
    /// RAW version: the object's last-modified time plus a content hash.
    pub version: String,
    pub sha256: String,
    /// How ingest learnt `sha256` (absent from messages of before it was
    /// recorded: read).
    #[serde(default)]
    pub sha256_from: Sha256Origin,
    pub size: u64,
    pub format: Detected,
    /// The RAW manifest written by ingest.
    pub manifest: ArtifactRef,
}

/// How ingest learnt the sha256 of a RAW object. Whichever it was,
/// transform hashes every byte it meters and holds them to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sha256Origin {
    /// Ingest read and hashed the whole object.
    #[default]
    Read,
    /// The object's `x-amz-checksum-sha256`, checked by the S3 server when
    /// it was stored in one PUT.
    S3Checksum,
    /// The `x-amz-meta-sha256` its uploader wrote (a multipart upload has
    /// no whole-object sha256 checksum).
    UploaderMetadata,
}

impl Sha256Origin {
    pub fn name(self) -> &'static str {
        match self {
            Sha256Origin::Read => "read",
            Sha256Origin::S3Checksum => "s3-checksum",
            Sha256Origin::UploaderMetadata => "uploader-metadata",
        }
    }

    /// Who vouched for the sha256, in words for an error message.
    pub fn vouched(self) -> &'static str {
        match self {
            Sha256Origin::Read => "hashed by ingest",
            Sha256Origin::S3Checksum => "checked by S3 when it was stored",
            Sha256Origin::UploaderMetadata => "stated by its uploader in x-amz-meta-sha256",
        }
    }
}

impl RawObject {
    /// The RAW object as an artifact of `bucket`.
    pub fn artifact(&self, bucket: &str) -> ArtifactRef {
        ArtifactRef {
            bucket: bucket.to_string(),
            key: self.key.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// `pipeline.transform`: the RAW objects of a run, fingerprinted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformJob {
    pub schema: u32,
    pub run_id: Uuid,
    pub raw: Vec<RawObject>,
    /// Partitions already in SILVER, passed on as they are (a retrain run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silver: Vec<SilverPartition>,
    #[serde(default)]
    pub training: Option<TrainingWindow>,
}
message!(TransformJob, "pipeline.transform message");

/// A SILVER partition: one per RAW object version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilverPartition {
    pub raw_version: String,
    /// Columns the detectors learn from.
    pub features: Vec<String>,
    pub flows: ArtifactRef,
    pub manifest: ArtifactRef,
    pub rows: u64,
}

/// `pipeline.train`: the SILVER partitions to fit on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    pub schema: u32,
    pub run_id: Uuid,
    /// The run's own partitions.
    pub silver: Vec<SilverPartition>,
    #[serde(default)]
    pub training: Option<TrainingWindow>,
}
message!(TrainJob, "pipeline.train message");

/// A fitted model in the `models` bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModel {
    pub algorithm: String,
    pub model: ArtifactRef,
    pub manifest: ArtifactRef,
}

/// `pipeline.eval`: the partitions to score and the models to score them with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalJob {
    pub schema: u32,
    pub run_id: Uuid,
    /// The run's own partitions: what is evaluated.
    pub silver: Vec<SilverPartition>,
    pub models: Vec<TrainedModel>,
    /// The partitions the models were fitted on (the training window).
    #[serde(default)]
    pub training_silver: Vec<SilverPartition>,
    /// The share of the run's flows held out of training; only those are
    /// evaluated.
    #[serde(default)]
    pub holdout: Option<f64>,
}
message!(EvalJob, "pipeline.eval message");

/// `pipeline.done`: a run finished; where its report is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDone {
    pub schema: u32,
    pub run_id: Uuid,
    pub outcome: String,
    pub report: ArtifactRef,
    pub scores: ArtifactRef,
    /// Headline metrics (flows scored, flagged, ROC-AUC when labelled).
    pub summary: serde_json::Value,
}
message!(RunDone, "pipeline.done message");

/// `pipeline.dead`: a message that will not be processed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDead {
    pub schema: u32,
    /// Nil when the dead message had no readable run id.
    pub run_id: Uuid,
    pub outcome: String,
    pub stage: String,
    pub subject: String,
    pub deliveries: i64,
    pub error: String,
}
message!(RunDead, "pipeline.dead message");

/// The run id of the `n`th re-drive of a RAW object's run (`n = 0`: the
/// object's own run id), for an object whose runs failed transiently.
pub fn redrive_run_id(object_run_id: Uuid, n: u32) -> Uuid {
    if n == 0 {
        object_run_id
    } else {
        Uuid::new_v5(&object_run_id, format!("redrive-{n}").as_bytes())
    }
}

/// A stage message too large for the NATS server's `max_payload`, sent by
/// reference: the message itself is the next message of the named job,
/// kept in PostgreSQL (`stage_jobs.next_message`) with the job's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredMessage {
    pub schema: u32,
    pub run_id: Uuid,
    /// The stage whose job's next message this stands for.
    pub stored_by: crate::stage::StageKind,
    pub input_version: String,
    /// Size of the stored message in bytes.
    pub bytes: usize,
}
message!(StoredMessage, "stored message reference");

impl StoredMessage {
    /// The reference a payload is, if it is one.
    pub fn peek(payload: &[u8]) -> Option<Self> {
        if payload.len() > 4096 {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// The run id of the run a RAW object starts on its own (bucket event or
/// reconciler): the same object, announced by both paths, is one run.
pub fn object_run_id(bucket: &str, key: &str, etag: &str) -> Uuid {
    let etag = etag.trim_matches('"');
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("s3://{bucket}/{key}#{etag}").as_bytes(),
    )
}

/// A MinIO bucket notification as published on `minio.raw`.
///
/// MinIO sends `{"EventName", "Key": "<bucket>/<key>", "Records": [...]}`; the
/// record's object key is URL-encoded with `+` for a space.
#[derive(Debug, Deserialize)]
pub struct MinioEvent {
    #[serde(rename = "EventName")]
    pub event_name: String,
    #[serde(rename = "Records", default)]
    pub records: Vec<MinioRecord>,
}

#[derive(Debug, Deserialize)]
pub struct MinioRecord {
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    pub s3: MinioS3,
}

#[derive(Debug, Deserialize)]
pub struct MinioS3 {
    pub bucket: MinioBucket,
    pub object: MinioObject,
}

#[derive(Debug, Deserialize)]
pub struct MinioBucket {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct MinioObject {
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(rename = "eTag", default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub sequencer: Option<String>,
}

/// An object a bucket event announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedObject {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

impl MinioEvent {
    pub fn decode(payload: &[u8]) -> Result<Self, MessageError> {
        serde_json::from_slice(payload).map_err(|source| MessageError::Json {
            kind: "MinIO bucket event",
            source,
        })
    }

    /// The objects created by this event; other events (deletes) announce none.
    pub fn created_objects(&self) -> Result<Vec<AnnouncedObject>, MessageError> {
        if !self.event_name.starts_with("s3:ObjectCreated:") {
            return Ok(Vec::new());
        }
        self.records
            .iter()
            .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("s3:ObjectCreated:"))
            .map(|r| {
                let key = decode_event_key(&r.s3.object.key)?;
                let etag = r.s3.object.etag.clone().ok_or_else(|| {
                    MessageError::Invalid(format!("MinIO event for {key:?} has no eTag"))
                })?;
                Ok(AnnouncedObject {
                    bucket: r.s3.bucket.name.clone(),
                    key,
                    etag: etag.trim_matches('"').to_string(),
                })
            })
            .collect()
    }
}

/// MinIO's object keys are form-URL-encoded: `+` is a space, `%2B` a plus.
pub fn decode_event_key(encoded: &str) -> Result<String, MessageError> {
    let spaced = encoded.replace('+', " ");
    let key = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| {
            MessageError::Invalid(format!("object key {encoded:?} is not UTF-8 once decoded"))
        })?;
    check_key(&key)?;
    Ok(key)
}

/// S3's limit on the length of an object key.
pub const MAX_KEY_BYTES: usize = 1024;

/// An object key a message may name: not empty, at most 1024 bytes (S3's
/// limit), without NUL or other control characters.
pub fn check_key(key: &str) -> Result<(), MessageError> {
    let shown = || {
        let mut s: String = key
            .chars()
            .take(80)
            .collect::<String>()
            .escape_debug()
            .to_string();
        if key.chars().count() > 80 {
            s.push('…');
        }
        s
    };
    if key.is_empty() {
        return Err(MessageError::Invalid("an object key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(MessageError::Invalid(format!(
            "object key \"{}\" is {} bytes long; S3 keys are at most {MAX_KEY_BYTES}",
            shown(),
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(MessageError::Invalid(format!(
            "object key \"{}\" contains a control character (NUL, newline, ...); no RAW object is named so",
            shown()
        )));
    }
    Ok(())
}

impl StartRun {
    /// The checks serde cannot make: keys and prefix are names an object
    /// could have.
    pub fn check(&self) -> Result<(), MessageError> {
        if !self.keys.is_empty() && self.prefix.is_some() {
            return Err(MessageError::Invalid(
                "pipeline.start names both keys and a prefix; give one".into(),
            ));
        }
        match self.mode {
            RunMode::Retrain if !self.keys.is_empty() || self.prefix.is_some() => {
                return Err(MessageError::Invalid(
                    "a retrain run reads no RAW object: give it neither keys nor a prefix".into(),
                ));
            }
            RunMode::Backfill if self.prefix.is_none() => {
                return Err(MessageError::Invalid(
                    "a backfill run needs a prefix (\"\" for the whole bucket)".into(),
                ));
            }
            _ => {}
        }
        for key in &self.keys {
            check_key(key)?;
        }
        if let Some(prefix) = self.prefix.as_deref().filter(|p| !p.is_empty()) {
            check_key(prefix)?;
        }
        if let Some(by) = &self.requested_by
            && (by.chars().any(char::is_control) || by.len() > 256)
        {
            return Err(MessageError::Invalid(
                "requested_by must be at most 256 characters without control characters".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shape of a real MinIO `s3:ObjectCreated:Put` notification.
    const MINIO_PUT: &str = r#"{"EventName":"s3:ObjectCreated:Put","Key":"raw/captures/day+one/a%2Bb+%281%29.csv","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-23T23:59:59.123Z","eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"minioadmin"},"requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"127.0.0.1"},"responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8","x-amz-request-id":"1798A6B5D4C3B2A1","x-minio-deployment-id":"5d5e0f1c-d2a1-4d8e-9d5a-1d0b2c3d4e5f","x-minio-origin-endpoint":"http://127.0.0.1:9000"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"raw","ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::raw"},"object":{"key":"captures%2Fday+one%2Fa%2Bb+%281%29.csv","size":1234,"eTag":"\"0f343b0931126a20f133d67c2b018a3b\"","contentType":"text/csv","userMetadata":{"content-type":"text/csv"},"sequencer":"1798A6B5D4E5F6A7"}},"source":{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.70"}}]}"#;

    #[test]
    fn minio_put_event_yields_the_decoded_key() {
        let event = MinioEvent::decode(MINIO_PUT.as_bytes()).unwrap();
        let objects = event.created_objects().unwrap();
        assert_eq!(
            objects,
            vec![AnnouncedObject {
                bucket: "raw".into(),
                key: "captures/day one/a+b (1).csv".into(),
                etag: "0f343b0931126a20f133d67c2b018a3b".into(),
            }]
        );
    }

    #[test]
    fn delete_events_announce_nothing() {
        let delete = MINIO_PUT.replace("s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete");
        let event = MinioEvent::decode(delete.as_bytes()).unwrap();
        assert!(event.created_objects().unwrap().is_empty());
    }

    #[test]
    fn garbage_is_rejected_with_the_message_kind() {
        let err = MinioEvent::decode(b"{not json").unwrap_err().to_string();
        assert!(err.contains("MinIO bucket event"), "{err}");
        let err = TransformJob::decode(br#"{"schema":1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pipeline.transform message") && err.contains("run_id"),
            "{err}"
        );
    }

    #[test]
    fn another_schema_version_is_rejected() {
        let mut start = StartRun::new(vec!["a.csv".into()], None, "test");
        start.schema = 2;
        let err = StartRun::decode(&start.encode()).unwrap_err().to_string();
        assert!(err.contains("schema version 2"), "{err}");
    }

    #[test]
    fn one_object_is_one_run_whatever_the_etag_quoting() {
        let a = object_run_id("raw", "x.csv", "\"abc\"");
        let b = object_run_id("raw", "x.csv", "abc");
        assert_eq!(a, b);
        assert_ne!(a, object_run_id("raw", "x.csv", "abd"));
        assert_ne!(a, object_run_id("raw", "y.csv", "abc"));
    }
}
