//! Where a stage job's artifacts go: S3, fenced on the attempt.
//!
//! Before each object is written, the attempt registers it in
//! `stage_artifacts` (which also renews its lease); the registration
//! succeeds only while the attempt owns the job, so an attempt that was
//! superseded (its worker lost PostgreSQL, the lease expired, another took
//! over) stops writing. Objects under the attempt's own version are
//! removed unless the attempt commits; objects under a content version
//! (the RAW manifest, shared by every run of the same bytes) are written
//! once: when one exists it is kept and its reference returned.

use nadir_contract::layout::{ArtifactRef, Layer};
use nadir_db::Pool;
use nadir_db::jobs::{self, Attempt};
use nadir_store::StoreError;
use nadir_store::sink::{Artifact, ArtifactSink, S3Sink};

use crate::error::StageError;

/// The sink of one attempt.
pub struct FencedSink<'a> {
    pub s3: S3Sink<'a>,
    pub db: &'a Pool,
    pub attempt: &'a Attempt,
}

impl FencedSink<'_> {
    fn superseded(&self) -> StageError {
        StageError::Superseded(format!(
            "attempt {} no longer owns the {} job of run {}",
            self.attempt.number,
            self.attempt.key.stage.name(),
            self.attempt.key.run_id
        ))
    }
}

impl ArtifactSink for FencedSink<'_> {
    type Error = StageError;

    fn bucket(&self, layer: Layer) -> &str {
        self.s3.bucket(layer)
    }

    async fn put(
        &self,
        layer: Layer,
        artifact: Artifact,
        version: &str,
    ) -> Result<ArtifactRef, StageError> {
        let bucket = self.bucket(layer).to_string();
        let own = version == self.attempt.version;
        if !own {
            match self.s3.store.get(&bucket, &artifact.key).await {
                Ok(existing) => {
                    return Ok(ArtifactRef::of(&bucket, artifact.key, version, &existing));
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let owned = jobs::register_artifact(self.db, self.attempt, &bucket, &artifact.key, own)
            .await
            .map_err(StageError::from)?;
        if !owned {
            return Err(self.superseded());
        }
        Ok(self.s3.put(layer, artifact, version).await?)
    }
}
