//! The transform worker: `pipeline.transform` in, SILVER partitions out,
//! `pipeline.train` next. What a RAW object becomes is
//! [`nadir_pipeline::transform`]; this crate fetches the object (a capture
//! streamed, never held whole) and its ground-truth sidecar from `raw`,
//! and writes the partition through the S3 sink.

use std::sync::Arc;
use std::time::Instant;

use nadir_config::shutdown::Shutdown;
use nadir_contract::messages::{SCHEMA_VERSION, TrainJob, TransformJob, subject};
use nadir_contract::stage::StageKind;
use nadir_pipeline::Analysis;
use nadir_pipeline::transform::{self, SilverOf};
use nadir_runtime::Services;
use nadir_runtime::stage::{
    self, JobContext, Outcome, Stage, StageError, compute, compute_reading,
};
use nadir_store::sink::write;
use nadir_store::{Ranged, StoreError, blocking_reader};

/// The stage, with the analysis settings it works by.
pub struct Transform {
    pub analysis: Analysis,
}

/// Runs the stage on its durable consumer until `shutdown`: what
/// `nadir-transform` does once connected, and what tests call in-process.
pub async fn run(
    services: Arc<Services>,
    analysis: Analysis,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    stage::run_on(
        Transform { analysis },
        nadir_bus::TRANSFORM,
        services,
        shutdown,
    )
    .await
}

impl Transform {
    /// The ground-truth sidecar `key` of `raw`, if there is one, streamed
    /// and held to the limits of a table object (bad input past them); a
    /// read that fails is transient.
    async fn sidecar(
        &self,
        ctx: &JobContext<'_>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StageError> {
        let bucket = &ctx.catalogue.buckets.raw;
        let stream = match ctx.catalogue.store().open(bucket, key).await {
            Ok(stream) => stream,
            // No sidecar: the flows go unlabelled.
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (stream, _) = blocking_reader(stream);
        let (name, limits) = (format!("s3://{bucket}/{key}"), self.analysis.limits);
        compute(move || transform::read_sidecar(&name, stream, limits))
            .await?
            .map(Some)
            .map_err(|e| {
                if e.is_read() {
                    StageError::Transient(e.to_string())
                } else {
                    StageError::Rejected(e.to_string())
                }
            })
    }
}

impl Stage for Transform {
    const KIND: StageKind = StageKind::Transform;
    const NEXT_SUBJECT: &'static str = subject::TRAIN;
    type Input = TransformJob;
    type Output = TrainJob;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        job: &TransformJob,
    ) -> Result<Outcome<TrainJob>, StageError> {
        let buckets = ctx.catalogue.buckets;
        let meter = transform::meter_config(&self.analysis);
        let mut partitions = Vec::new();
        let mut records = Vec::new();
        let (mut rows, mut bytes_read) = (0, 0);
        for object in &job.raw {
            let started = Instant::now();
            let sidecar = match transform::sidecar_key(object) {
                Some(key) => {
                    let labels = self.sidecar(ctx, &key).await?;
                    labels.map(|labels| (key, labels))
                }
                None => None,
            };
            let sidecar_ref = sidecar
                .as_ref()
                .map(|(key, labels)| transform::sidecar_ref(&buckets.raw, key.clone(), labels));
            let owned = object.clone();
            let labels = sidecar.map(|(_, l)| l);
            let result = if transform::streams(object) {
                // Ranged GETs side by side, hashed on a thread of their own
                // while the meter reads.
                let reader = ctx
                    .catalogue
                    .store()
                    .read_ranges(
                        &buckets.raw,
                        &object.key,
                        &object.etag,
                        object.size,
                        Ranged::default(),
                    )
                    .hashed();
                compute_reading(reader, move |reader| {
                    transform::transform_capture(&owned, reader, labels.as_deref(), meter)
                })
                .await?
            } else {
                let limits = self.analysis.limits;
                limits.check_size(object.size).map_err(|e| {
                    StageError::Rejected(format!("s3://{}/{}: {e}", buckets.raw, object.key))
                })?;
                let bytes = ctx.catalogue.get(&buckets.raw, &object.key).await?;
                compute(move || {
                    transform::transform_object(&owned, &bytes, labels.as_deref(), meter, limits)
                })
                .await?
            };
            let transformed = result.map_err(|e| {
                StageError::Rejected(format!("s3://{}/{}: {e}", buckets.raw, object.key))
            })?;
            bytes_read += object.size;
            let (features, partition_rows) =
                (transformed.silver.features.clone(), transformed.silver.rows);
            let silver = SilverOf {
                run_id: ctx.run_id,
                version: ctx.version,
                object,
                raw: object.artifact(&buckets.raw),
                sidecar: sidecar_ref,
                meter,
                seconds: started.elapsed().as_secs_f64(),
            };
            let written = write(ctx.sink, silver.product(transformed)).await?;
            rows += partition_rows;
            partitions.push(transform::partition(
                object,
                features,
                partition_rows,
                &written,
            ));
            records.push(written.record);
        }
        // A retrain run's partitions are already in SILVER: recorded, not
        // transformed again.
        for partition in &job.silver {
            records.push(transform::reused(partition));
            rows += partition.rows;
            partitions.push(partition.clone());
        }
        Ok(Outcome {
            records,
            rows,
            bytes: bytes_read,
            registry: Vec::new(),
            next: TrainJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: partitions,
                training: job.training.clone(),
            },
        })
    }
}
