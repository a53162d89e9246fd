//! The EVAL and SILVER artifacts a page needs, fetched from S3, checked
//! against the sha256 the audit trail recorded, and kept in memory.
//!
//! A run's index ([`crate::index::RunIndex`]) is built once and shared by
//! every request; concurrent first requests wait for the same load. The
//! newest runs are indexed ahead of any request ([`Artifacts::warm`]), so
//! an analyst opening today's run does not wait for its scores to load.
//! At most `capacity` runs are kept, the least recently used dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nadir_common::layout::{ArtifactRef, sha256_hex};
use nadir_common::store::ObjectStore;
use serde_json::Value;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::index::RunIndex;

/// A run's report and its index.
#[derive(Debug)]
pub struct LoadedRun {
    pub report: Value,
    pub index: RunIndex,
    /// Bytes of `scores.parquet`.
    pub scores_bytes: u64,
    /// Fetching, checking and indexing took this long.
    pub load_time: Duration,
}

/// Why a run's artifacts could not be shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("the run has no evaluation report (yet)")]
    NoReport,
    #[error("{0}")]
    Fetch(String),
    #[error("{uri} does not match the sha256 the audit trail recorded")]
    Tampered { uri: String },
    #[error("{0}")]
    Invalid(String),
}

type Slot = Arc<OnceCell<Arc<LoadedRun>>>;
type FeaturesSlot = Arc<OnceCell<Arc<FlowFeatures>>>;

/// Numeric features of flagged flows in one SILVER partition, by flow id.
pub type FlowFeatures = HashMap<u64, Vec<(String, f64)>>;

pub struct Artifacts {
    store: ObjectStore,
    capacity: usize,
    /// Most recently used last.
    runs: Mutex<VecDeque<(Uuid, Slot)>>,
    /// Per (run, RAW version): the flagged flows' features.
    silver: Mutex<VecDeque<((Uuid, String), FeaturesSlot)>>,
}

impl Artifacts {
    pub fn new(store: ObjectStore, capacity: usize) -> Self {
        Artifacts {
            store,
            capacity,
            runs: Mutex::new(VecDeque::new()),
            silver: Mutex::new(VecDeque::new()),
        }
    }

    /// Runs indexed now.
    pub fn indexed(&self) -> usize {
        let runs = self.runs.lock().expect("artifact cache lock");
        runs.iter().filter(|(_, s)| s.initialized()).count()
    }

    fn slot(&self, run_id: Uuid) -> Slot {
        let mut runs = self.runs.lock().expect("artifact cache lock");
        let slot = match runs.iter().position(|(id, _)| *id == run_id) {
            Some(i) => runs.remove(i).expect("position is in range").1,
            None => Arc::new(OnceCell::new()),
        };
        runs.push_back((run_id, slot.clone()));
        while runs.len() > self.capacity {
            runs.pop_front();
        }
        slot
    }

    fn forget(&self, run_id: Uuid) {
        let mut runs = self.runs.lock().expect("artifact cache lock");
        runs.retain(|(id, s)| *id != run_id || s.initialized());
    }

    /// A run's report and index; `report` is `pipeline_runs.report`.
    pub async fn run(&self, run_id: Uuid, report: &Value) -> Result<Arc<LoadedRun>, LoadError> {
        let refs = (
            serde_json::from_value::<ArtifactRef>(report["report"].clone()),
            serde_json::from_value::<ArtifactRef>(report["scores"].clone()),
        );
        let (Ok(report_ref), Ok(scores_ref)) = refs else {
            return Err(LoadError::NoReport);
        };
        let slot = self.slot(run_id);
        let loaded = slot
            .get_or_try_init(|| self.load(report_ref, scores_ref))
            .await
            .cloned();
        if loaded.is_err() {
            self.forget(run_id);
        }
        loaded
    }

    async fn fetch(&self, artifact: &ArtifactRef) -> Result<bytes::Bytes, LoadError> {
        let bytes = self
            .store
            .get(&artifact.bucket, &artifact.key)
            .await
            .map_err(|e| LoadError::Fetch(format!("{}: {e}", artifact.uri())))?;
        if sha256_hex(&bytes) != artifact.sha256 {
            return Err(LoadError::Tampered {
                uri: artifact.uri(),
            });
        }
        Ok(bytes)
    }

    async fn load(
        &self,
        report_ref: ArtifactRef,
        scores_ref: ArtifactRef,
    ) -> Result<Arc<LoadedRun>, LoadError> {
        let started = Instant::now();
        let (report_bytes, scores_bytes) =
            tokio::try_join!(self.fetch(&report_ref), self.fetch(&scores_ref))?;
        let uri = scores_ref.uri();
        let loaded = tokio::task::spawn_blocking(move || {
            let report: Value = serde_json::from_slice(&report_bytes)
                .map_err(|e| LoadError::Invalid(format!("{}: {e}", report_ref.uri())))?;
            let frame = nadir_flows::table::read_parquet(&scores_bytes)
                .map_err(|e| LoadError::Invalid(format!("{}: {e}", scores_ref.uri())))?;
            let index =
                RunIndex::build(&report, &frame).map_err(|e| LoadError::Invalid(e.to_string()))?;
            Ok::<_, LoadError>(LoadedRun {
                report,
                index,
                scores_bytes: scores_bytes.len() as u64,
                load_time: started.elapsed(),
            })
        })
        .await
        .map_err(|e| LoadError::Invalid(format!("indexing the run's scores panicked: {e}")))??;
        tracing::info!(
            scores = %uri,
            flagged = loaded.index.anomalies.len(),
            rows = loaded.index.rows,
            ms = loaded.load_time.as_millis() as u64,
            "run indexed"
        );
        Ok(Arc::new(loaded))
    }

    /// Indexes the newest runs ahead of requests.
    pub async fn warm(&self, runs: &[(Uuid, Value)]) {
        for (run_id, report) in runs.iter().take(self.capacity).rev() {
            if let Err(e) = self.run(*run_id, report).await {
                tracing::warn!(run_id = %run_id, error = %e, "could not index run");
            }
        }
    }

    /// The numeric features of the flagged flows of one partition, read
    /// from SILVER (`flows` is the partition's artifact).
    pub async fn flow_features(
        &self,
        run_id: Uuid,
        run: &LoadedRun,
        raw_version: &str,
        flows: ArtifactRef,
    ) -> Result<Arc<FlowFeatures>, LoadError> {
        let key = (run_id, raw_version.to_string());
        let slot = {
            let mut silver = self.silver.lock().expect("artifact cache lock");
            let slot = match silver.iter().position(|(k, _)| *k == key) {
                Some(i) => silver.remove(i).expect("position is in range").1,
                None => Arc::new(OnceCell::new()),
            };
            silver.push_back((key.clone(), slot.clone()));
            while silver.len() > self.capacity * 4 {
                silver.pop_front();
            }
            slot
        };
        let wanted: Vec<u64> = run
            .index
            .anomalies
            .iter()
            .filter(|f| f.raw_version == raw_version)
            .map(|f| f.flow_id)
            .collect();
        let features: Vec<String> = run.index.profile.iter().map(|p| p.name.clone()).collect();
        let result = slot
            .get_or_try_init(|| async {
                let bytes = self.fetch(&flows).await?;
                let uri = flows.uri();
                tokio::task::spawn_blocking(move || features_of(&bytes, &wanted, &features))
                    .await
                    .map_err(|e| LoadError::Invalid(format!("reading {uri} panicked: {e}")))?
                    .map(Arc::new)
                    .map_err(|e| LoadError::Invalid(format!("{uri}: {e}")))
            })
            .await
            .cloned();
        if result.is_err() {
            let mut silver = self.silver.lock().expect("artifact cache lock");
            silver.retain(|(k, s)| *k != key || s.initialized());
        }
        result
    }
}

/// The `features` of the rows whose flow id is in `wanted`.
fn features_of(
    parquet: &[u8],
    wanted: &[u64],
    features: &[String],
) -> Result<FlowFeatures, String> {
    use polars::prelude::*;
    let frame = nadir_flows::table::read_parquet(parquet).map_err(|e| e.to_string())?;
    let ids = frame
        .column("flow_id")
        .and_then(|c| c.cast(&DataType::UInt64))
        .map_err(|e| e.to_string())?;
    let ids = ids.u64().map_err(|e| e.to_string())?;
    let wanted: std::collections::HashSet<u64> = wanted.iter().copied().collect();
    let rows: Vec<(usize, u64)> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| id.filter(|id| wanted.contains(id)).map(|id| (i, id)))
        .collect();
    let columns: Vec<(String, Float64Chunked)> = features
        .iter()
        .filter_map(|name| {
            let c = frame.column(name).ok()?.cast(&DataType::Float64).ok()?;
            Some((name.clone(), c.f64().ok()?.clone()))
        })
        .collect();
    Ok(rows
        .into_iter()
        .map(|(i, id)| {
            let values = columns
                .iter()
                .filter_map(|(name, c)| c.get(i).map(|v| (name.clone(), v)))
                .collect();
            (id, values)
        })
        .collect())
}
