//! The ingest stage: RAW objects in, fingerprints and RAW manifests out.
//!
//! A run reaches ingest three ways: a MinIO bucket event on `minio.raw`, a
//! `pipeline.start` message, or the [`reconciler`], which lists `raw` for
//! objects no run has seen (S3 servers without notifications, events MinIO
//! dropped). An object announced by an event and found by the reconciler
//! gets the same run id ([`object_run_id`]), so it is ingested once.
//!
//! For every RAW object of the run, ingest reads it, computes its sha256,
//! detects its format by content, and writes its manifest to
//! `silver/raw/<raw version>/manifest.json`; then it hands the run to
//! transform. Ground-truth sidecars (`<capture>.labels.csv`) are not runs of
//! their own: transform reads them beside their capture. An object that is empty or of no known format fails the run.

pub mod reconciler;

use nadir_contract::messages::{
    MessageError, MinioEvent, RunMode, SCHEMA_VERSION, StartRun, TrainingWindow, TransformJob,
    object_run_id, subject,
};
use nadir_contract::params::IngestParams;
use nadir_contract::stage::StageKind;
use nadir_flows::labels::is_sidecar;
use nadir_pipeline::ingest::{self, Listed};
use std::sync::Arc;

use nadir_config::shutdown::Shutdown;
use nadir_flows::format::SNIFF_LEN;
use nadir_runtime::Services;
use nadir_runtime::stage::{
    self, Job, JobContext, Outcome, Source, Stage, StageError, compute_reading,
};
use nadir_store::sink::write;
use nadir_store::{ObjectInfo, Ranged};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What to ingest for a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "selection", rename_all = "snake_case")]
pub enum Selection {
    /// One object, announced by a bucket event.
    Object {
        bucket: String,
        key: String,
        etag: String,
    },
    /// Named keys.
    Keys { keys: Vec<String> },
    /// Every object under a prefix.
    Prefix { prefix: String },
    /// Every object no run has seen yet.
    New,
    /// No RAW object: the SILVER partitions already there (a retrain run).
    Retrain,
}

/// An ingest job: a run id and what it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestRequest {
    pub run_id: Uuid,
    pub requested_by: String,
    #[serde(flatten)]
    pub selection: Selection,
    /// The run's training configuration, passed on to train.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingWindow>,
}

impl Job for IngestRequest {
    fn run_id(&self) -> Uuid {
        self.run_id
    }
    /// Ingest is a run's first stage and its input is the run's request: the
    /// run id names it (an object's run id is derived from its ETag).
    fn input_version(&self) -> String {
        "request".into()
    }
    fn item(&self) -> String {
        match &self.selection {
            Selection::Object { key, .. } => key.clone(),
            Selection::Keys { keys } => {
                nadir_runtime::jobs::listed(keys.iter().map(String::as_str))
            }
            Selection::Prefix { prefix } => format!("{prefix}*"),
            Selection::New => "*".into(),
            Selection::Retrain => "retrain".into(),
        }
    }
}

/// `minio.raw` payloads: one job per object created in the RAW bucket.
/// Events for other buckets (a notification rule wider than `raw`) are
/// logged and skipped.
pub fn decode_event(raw_bucket: &str, payload: &[u8]) -> Result<Vec<IngestRequest>, MessageError> {
    let event = MinioEvent::decode(payload)?;
    Ok(event
        .created_objects()?
        .into_iter()
        .filter(|o| !is_sidecar(&o.key))
        .filter(|o| {
            let ours = o.bucket == raw_bucket;
            if !ours {
                tracing::warn!(bucket = %o.bucket, key = %o.key, raw_bucket, "bucket event for another bucket skipped");
            }
            ours
        })
        .map(|o| IngestRequest {
            run_id: object_run_id(&o.bucket, &o.key, &o.etag),
            requested_by: "minio-event".into(),
            selection: Selection::Object {
                bucket: o.bucket,
                key: o.key,
                etag: o.etag,
            },
            training: None,
        })
        .collect())
}

/// `pipeline.start` payloads.
pub fn decode_start(payload: &[u8]) -> Result<Vec<IngestRequest>, MessageError> {
    use nadir_contract::messages::Message;
    let start = StartRun::decode(payload)?;
    start.check()?;
    if let Some(training) = &start.training {
        training.check()?;
    }
    let selection = match (start.mode, start.keys, start.prefix) {
        (RunMode::Retrain, _, _) => Selection::Retrain,
        // A backfill is every object under its prefix, seen or not: what a
        // prefix selects (check() made sure there is one).
        (_, keys, _) if !keys.is_empty() => Selection::Keys { keys },
        (_, _, Some(prefix)) => Selection::Prefix { prefix },
        (_, _, None) => Selection::New,
    };
    Ok(vec![IngestRequest {
        run_id: start.run_id,
        requested_by: start
            .requested_by
            .unwrap_or_else(|| "pipeline.start".into()),
        selection,
        training: start.training,
    }])
}

pub struct Ingest;

/// Runs ingest on its two durable consumers (`minio.raw`, `pipeline.start`)
/// and the reconciler until `shutdown`: what `nadir-ingest` does once
/// connected, and what tests call in-process.
pub async fn run(services: Arc<Services>, shutdown: Shutdown) -> anyhow::Result<()> {
    let stage = run_stage(services.clone(), shutdown.clone());
    let reconciler = reconciler::run(services, shutdown);
    tokio::try_join!(stage, reconciler)?;
    Ok(())
}

/// The ingest stage on its two consumers without the reconciler: what
/// `nadir pipeline` runs beside the other three stages.
pub async fn run_stage(services: Arc<Services>, shutdown: Shutdown) -> anyhow::Result<()> {
    let raw = services.config.buckets.raw.clone();
    let sources = vec![
        Source {
            consumer: nadir_bus::INGEST_EVENTS,
            decode: Box::new(move |payload| decode_event(&raw, payload)),
        },
        Source {
            consumer: nadir_bus::INGEST_START,
            decode: Box::new(decode_start),
        },
    ];
    stage::run(Arc::new(Ingest), services, sources, shutdown).await
}

impl Ingest {
    /// A retrain run: the newest SILVER partitions (those transformed in
    /// the window's span, else the newest one), with the features of the
    /// newest, passed on to transform to be recorded and to train.
    async fn retrain(
        &self,
        ctx: &JobContext<'_>,
        request: &IngestRequest,
    ) -> Result<Outcome<TransformJob>, StageError> {
        let span_hours = request.training.as_ref().and_then(|t| t.span_hours);
        let newest = ctx.catalogue.silver_partitions(None, Some(1), None).await?;
        let Some(newest) = newest.into_iter().next() else {
            return Err(StageError::Rejected(
                "a retrain run needs SILVER partitions, and there are none yet: ingest a capture first".into(),
            ));
        };
        let silver = match span_hours {
            Some(hours) => {
                let within = ctx
                    .catalogue
                    .silver_partitions(Some(&newest.features), None, Some(hours))
                    .await?;
                if within.is_empty() {
                    return Err(StageError::Rejected(format!(
                        "no SILVER partition was transformed in the last {hours} hours (the newest is of {}); nothing to retrain on",
                        newest.raw_version
                    )));
                }
                within
            }
            None => vec![newest],
        };
        let record = ingest::retrain_record(&silver, &request.requested_by);
        tracing::info!(run_id = %ctx.run_id, partitions = silver.len(), "retrain: SILVER partitions chosen");
        Ok(Outcome {
            records: vec![record],
            rows: silver.len() as u64,
            bytes: 0,
            registry: Vec::new(),
            next: TransformJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                raw: Vec::new(),
                silver,
                training: request.training.clone(),
            },
        })
    }

    async fn resolve(
        &self,
        ctx: &JobContext<'_>,
        request: &IngestRequest,
    ) -> Result<Vec<ObjectInfo>, StageError> {
        let catalogue = ctx.catalogue;
        let raw = &catalogue.buckets.raw;
        let objects = match &request.selection {
            Selection::Object { key, etag, .. } => {
                let info = catalogue.raw_object(key).await?;
                if &info.etag != etag {
                    return Err(StageError::Rejected(format!(
                        "s3://{raw}/{key} was replaced after the event (ETag {etag} is now {}); the new version gets its own run",
                        info.etag
                    )));
                }
                vec![info]
            }
            Selection::Keys { keys } => {
                let mut out = Vec::new();
                for key in keys {
                    if is_sidecar(key) {
                        return Err(StageError::Rejected(format!(
                            "{key} is the ground truth of a capture, not something to ingest on its own"
                        )));
                    }
                    out.push(catalogue.raw_object(key).await?);
                }
                out
            }
            Selection::Prefix { prefix } => catalogue
                .raw_objects(prefix)
                .await?
                .into_iter()
                .filter(|o| !is_sidecar(&o.key))
                .collect(),
            Selection::Retrain => unreachable!("a retrain run lists no RAW object"),
            Selection::New => {
                let mut out = Vec::new();
                for o in catalogue.raw_objects("").await? {
                    if is_sidecar(&o.key) {
                        continue;
                    }
                    let id = object_run_id(raw, &o.key, &o.etag);
                    if !catalogue.object_seen(id, &o.key, &o.etag).await? {
                        out.push(o);
                    }
                }
                out
            }
        };
        if objects.is_empty() {
            return Err(StageError::Rejected(format!(
                "no RAW objects to ingest for {}",
                request.item()
            )));
        }
        Ok(objects)
    }
}

impl Stage for Ingest {
    const KIND: StageKind = StageKind::Ingest;
    const NEXT_SUBJECT: &'static str = subject::TRANSFORM;
    type Input = IngestRequest;
    type Output = TransformJob;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        request: &IngestRequest,
    ) -> Result<Outcome<TransformJob>, StageError> {
        if matches!(request.selection, Selection::Retrain) {
            return self.retrain(ctx, request).await;
        }
        let raw = ctx.catalogue.buckets.raw.clone();
        let params = IngestParams {
            requested_by: request.requested_by.clone(),
        };
        let objects = self.resolve(ctx, request).await?;
        let mut fingerprinted = Vec::new();
        let mut records = Vec::new();
        let mut bytes_read = 0;
        for info in objects {
            let started = std::time::Instant::now();
            let store = ctx.catalogue.store();
            let (now, known) = store.head_with_sha256(&raw, &info.key).await?;
            if now.etag != info.etag {
                return Err(StageError::Rejected(format!(
                    "s3://{raw}/{} was replaced after it was announced: its ETag is {}, not {}",
                    info.key, now.etag, info.etag
                )));
            }
            let print = match known {
                // S3 knows its sha256: its first bytes tell the format.
                Some(known) => {
                    let head = store
                        .get_head(&raw, &info.key, &info.etag, SNIFF_LEN as u64)
                        .await?;
                    ingest::fingerprint_known(&head, now.size, known)
                }
                // Hashed in one pass of ranged GETs, never held whole.
                None => {
                    let reader = store
                        .read_ranges(&raw, &info.key, &info.etag, now.size, Ranged::default())
                        .hashed();
                    compute_reading(reader, ingest::fingerprint)
                        .await?
                        .map_err(|e| {
                            StageError::Transient(format!("reading s3://{raw}/{}: {e}", info.key))
                        })?
                }
            };
            if print.size != info.size {
                // The listing and the object disagree: ask again.
                return Err(StageError::Transient(format!(
                    "read {} bytes of s3://{raw}/{}, which S3 listed with {}",
                    print.size, info.key, info.size
                )));
            }
            bytes_read += print.size;
            let print = print
                .recognised()
                .map_err(|e| StageError::Rejected(format!("s3://{raw}/{}: {e}", info.key)))?;
            let listed = Listed {
                bucket: &raw,
                key: &info.key,
                etag: &info.etag,
                size: info.size,
                last_modified: info.last_modified,
            };
            let product = ingest::raw_product(
                ctx.run_id,
                &listed,
                &print,
                &params,
                started.elapsed().as_secs_f64(),
            );
            let written = write(ctx.sink, product).await?;
            tracing::info!(run_id = %ctx.run_id, key = %info.key, sha256 = %print.sha256, sha256_from = print.sha256_from.name(), format = %print.detected, size = print.size, "fingerprinted");
            fingerprinted.push(ingest::raw_object(&listed, print, &written));
            records.push(written.record);
        }
        Ok(Outcome {
            records,
            rows: fingerprinted.len() as u64,
            bytes: bytes_read,
            registry: Vec::new(),
            next: TransformJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                raw: fingerprinted,
                silver: Vec::new(),
                training: request.training.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_and_a_reconciled_start_for_one_object_are_one_run() {
        let event = br#"{"EventName":"s3:ObjectCreated:Put","Key":"raw/a+b.csv","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"raw"},"object":{"key":"a+b.csv","size":3,"eTag":"\"e1\""}}}]}"#;
        let from_event = decode_event("raw", event).unwrap();
        assert!(decode_event("other", event).unwrap().is_empty());
        assert_eq!(from_event.len(), 1);
        let start = StartRun {
            run_id: object_run_id("raw", "a b.csv", "e1"),
            ..StartRun::new(vec!["a b.csv".into()], None, "reconciler")
        };
        use nadir_contract::messages::Message;
        let from_start = decode_start(&start.encode()).unwrap();
        assert_eq!(from_event[0].run_id, from_start[0].run_id);
        assert_eq!(from_event[0].input_version(), from_start[0].input_version());
    }

    #[test]
    fn a_stored_request_reads_back_as_the_same_job() {
        // The reaper runs abandoned jobs again from `stage_jobs.request`.
        for selection in [
            Selection::Keys {
                keys: vec!["a.csv".into(), "b.csv".into()],
            },
            Selection::Prefix {
                prefix: "p/".into(),
            },
            Selection::New,
            Selection::Object {
                bucket: "raw".into(),
                key: "a.csv".into(),
                etag: "e1".into(),
            },
        ] {
            let request = IngestRequest {
                run_id: Uuid::new_v4(),
                requested_by: "test".into(),
                selection,
                training: Some(TrainingWindow {
                    holdout: Some(0.2),
                    ..Default::default()
                }),
            };
            let stored = serde_json::to_value(&request).unwrap();
            let back: IngestRequest = serde_json::from_value(stored.clone()).unwrap();
            assert_eq!(serde_json::to_value(&back).unwrap(), stored);
            assert_eq!(back.item(), request.item());
        }
    }

    #[test]
    fn a_start_with_keys_and_a_prefix_is_rejected() {
        use nadir_contract::messages::Message;
        let start = StartRun::new(vec!["a".into()], Some("p/".into()), "test");
        assert!(
            decode_start(&start.encode())
                .unwrap_err()
                .to_string()
                .contains("both keys and a prefix")
        );
        let empty = StartRun::new(vec![], None, "test");
        assert!(matches!(
            decode_start(&empty.encode()).unwrap()[0].selection,
            Selection::New
        ));
    }

    #[test]
    fn the_modes_of_a_start_select_what_their_runs_read() {
        use nadir_contract::messages::Message;
        let mut retrain = StartRun::new(vec![], None, "test");
        retrain.mode = RunMode::Retrain;
        let request = &decode_start(&retrain.encode()).unwrap()[0];
        assert!(matches!(request.selection, Selection::Retrain));
        assert_eq!(request.item(), "retrain");
        // The stored request reads back as the same job (what the reaper uses).
        let stored: IngestRequest =
            serde_json::from_value(serde_json::to_value(request).unwrap()).unwrap();
        assert!(matches!(stored.selection, Selection::Retrain));
        retrain.keys = vec!["a.csv".into()];
        let err = decode_start(&retrain.encode()).unwrap_err().to_string();
        assert!(err.contains("reads no RAW object"), "{err}");

        let mut backfill = StartRun::new(vec![], None, "test");
        backfill.mode = RunMode::Backfill;
        let err = decode_start(&backfill.encode()).unwrap_err().to_string();
        assert!(err.contains("needs a prefix"), "{err}");
        backfill.prefix = Some(String::new());
        assert!(matches!(
            &decode_start(&backfill.encode()).unwrap()[0].selection,
            Selection::Prefix { prefix } if prefix.is_empty()
        ));
        // An older message without a mode is an ingest.
        let old =
            br#"{"schema":1,"run_id":"6f0b4c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e","keys":["a.csv"]}"#;
        assert_eq!(StartRun::decode(old).unwrap().mode, RunMode::Ingest);
    }
}
