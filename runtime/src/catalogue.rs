//! What a stage may look up while it works: objects in the buckets and the
//! few facts of the audit trail and registry a stage decides by. Read
//! only: a stage's writes go through its sink and come back to the runtime
//! as its outcome, which commits them with the audit rows.

use std::collections::HashMap;

use bytes::Bytes;
use nadir_config::Buckets;
use nadir_contract::layout::ArtifactRef;
use nadir_contract::messages::SilverPartition;
use nadir_db::Pool;
use nadir_db::registry::RegisteredModel;
use nadir_store::{ObjectInfo, ObjectStore};
use uuid::Uuid;

use crate::error::StageError;

/// Read-only access to S3 and the audit trail for a stage job. Errors are
/// already sorted into bad input (a missing object) and transient ones.
pub struct Catalogue<'a> {
    pub buckets: &'a Buckets,
    store: &'a ObjectStore,
    db: &'a Pool,
}

impl<'a> Catalogue<'a> {
    pub fn new(buckets: &'a Buckets, store: &'a ObjectStore, db: &'a Pool) -> Self {
        Catalogue { buckets, store, db }
    }

    /// The object store, for streaming a RAW object.
    pub fn store(&self) -> &ObjectStore {
        self.store
    }

    /// An object of `bucket`, whole.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, StageError> {
        Ok(self.store.get(bucket, key).await?)
    }

    /// An artifact's bytes.
    pub async fn artifact(&self, artifact: &ArtifactRef) -> Result<Bytes, StageError> {
        self.get(&artifact.bucket, &artifact.key).await
    }

    /// A RAW object's listing (a missing one is bad input).
    pub async fn raw_object(&self, key: &str) -> Result<ObjectInfo, StageError> {
        Ok(self.store.head(&self.buckets.raw, key).await?)
    }

    /// The RAW objects under `prefix`.
    pub async fn raw_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StageError> {
        Ok(self
            .store
            .list_with_etags(&self.buckets.raw, prefix)
            .await?)
    }

    /// Whether a RAW object already has a run or an ingestion (runs that
    /// failed transiently do not count).
    pub async fn object_seen(
        &self,
        run_id: Uuid,
        key: &str,
        etag: &str,
    ) -> Result<bool, StageError> {
        Ok(nadir_db::runs::unseen_run_id(self.db, run_id, key, etag)
            .await?
            .is_none())
    }

    /// The newest SILVER partitions, with `features` when given (a
    /// training window; a retrain run's partitions).
    pub async fn silver_partitions(
        &self,
        features: Option<&[String]>,
        limit: Option<i64>,
        span_hours: Option<f64>,
    ) -> Result<Vec<SilverPartition>, StageError> {
        Ok(nadir_db::runs::silver_partitions(self.db, features, limit, span_hours).await?)
    }

    /// The champion of a feature set.
    pub async fn champion(&self, feature_set: &str) -> Result<Option<RegisteredModel>, StageError> {
        Ok(nadir_db::registry::champion(self.db, feature_set).await?)
    }

    /// The suppression rules in force now.
    pub async fn suppression_rules(
        &self,
    ) -> Result<Vec<nadir_contract::suppression::Rule>, StageError> {
        Ok(nadir_db::suppression::in_force(self.db, chrono::Utc::now()).await?)
    }

    /// Analysts' verdicts on the flows of these partitions, as labels.
    pub async fn feedback(
        &self,
        raw_versions: &[String],
    ) -> Result<HashMap<(String, u64), bool>, StageError> {
        Ok(nadir_db::feedback::labels(self.db, raw_versions, None).await?)
    }
}
