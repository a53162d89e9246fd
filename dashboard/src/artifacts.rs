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

use nadir_contract::findings::Finding;
use nadir_contract::layout::ArtifactRef;
use nadir_pipeline::report::EvalReport;
use nadir_store::{ObjectStore, StoreError};
use serde_json::Value;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::index::RunIndex;

/// A run's report, its findings (ranked) and its index.
#[derive(Debug)]
pub struct LoadedRun {
    pub report: EvalReport,
    /// `findings.parquet`; none for a run evaluated before findings.
    pub findings: Arc<Vec<Finding>>,
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

/// Numeric features of flagged flows in one SILVER partition, by flow id.
pub type FlowFeatures = HashMap<u64, Vec<(String, f64)>>;

/// The most recently used entries, each loaded once however many requests
/// ask for it at the same time; a failed load is forgotten so the next
/// request tries again.
struct Recent<K, V> {
    capacity: usize,
    /// Most recently used last.
    entries: Mutex<VecDeque<(K, Arc<OnceCell<V>>)>>,
}

impl<K: PartialEq + Clone, V: Clone> Recent<K, V> {
    fn new(capacity: usize) -> Self {
        Recent {
            capacity,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn loaded(&self) -> usize {
        let entries = self.entries.lock().expect("artifact cache lock");
        entries.iter().filter(|(_, s)| s.initialized()).count()
    }

    /// The value of `key` if it is loaded, without making it recent.
    fn loaded_value(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().expect("artifact cache lock");
        entries
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, s)| s.get().cloned())
    }

    async fn get_or_load<E, F>(&self, key: K, load: impl FnOnce() -> F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        let slot = {
            let mut entries = self.entries.lock().expect("artifact cache lock");
            let slot = match entries.iter().position(|(k, _)| *k == key) {
                Some(i) => entries.remove(i).expect("position is in range").1,
                None => Arc::new(OnceCell::new()),
            };
            entries.push_back((key.clone(), slot.clone()));
            while entries.len() > self.capacity {
                entries.pop_front();
            }
            slot
        };
        let result = slot.get_or_try_init(load).await.cloned();
        if result.is_err() {
            let mut entries = self.entries.lock().expect("artifact cache lock");
            entries.retain(|(k, s)| *k != key || s.initialized());
        }
        result
    }
}

/// Runs whose findings alone are kept.
const FINDINGS_RUNS: usize = 64;

pub struct Artifacts {
    store: ObjectStore,
    runs: Recent<Uuid, Arc<LoadedRun>>,
    /// Per (run, RAW version): the flagged flows' features.
    silver: Recent<(Uuid, String), Arc<FlowFeatures>>,
    /// Findings alone, for pages that read many runs' (the suppression
    /// rules' counts) without indexing their scores.
    findings: Recent<Uuid, Arc<Vec<Finding>>>,
}

impl Artifacts {
    pub fn new(store: ObjectStore, capacity: usize) -> Self {
        Artifacts {
            store,
            runs: Recent::new(capacity),
            silver: Recent::new(capacity * 4),
            findings: Recent::new(FINDINGS_RUNS),
        }
    }

    /// Runs indexed now.
    pub fn indexed(&self) -> usize {
        self.runs.loaded()
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
        self.runs
            .get_or_load(run_id, || self.load(report_ref, scores_ref))
            .await
    }

    /// A run's findings, ranked, without its scores: from its index when
    /// the run is indexed, else read from EVAL (and kept).
    pub async fn findings(
        &self,
        run_id: Uuid,
        report: &Value,
    ) -> Result<Arc<Vec<Finding>>, LoadError> {
        self.findings
            .get_or_load(run_id, || async {
                if let Some(loaded) = self.runs.loaded_value(&run_id) {
                    return Ok(loaded.findings.clone());
                }
                let report_ref = serde_json::from_value::<ArtifactRef>(report["report"].clone())
                    .map_err(|_| LoadError::NoReport)?;
                let bytes = self.fetch(&report_ref).await?;
                let report: EvalReport = serde_json::from_slice(&bytes)
                    .map_err(|e| LoadError::Invalid(format!("{}: {e}", report_ref.uri())))?;
                self.read_findings(&report).await.map(Arc::new)
            })
            .await
    }

    /// The findings a report names; none for a run evaluated before them.
    async fn read_findings(&self, report: &EvalReport) -> Result<Vec<Finding>, LoadError> {
        let Some(artifact) = &report.findings else {
            return Ok(Vec::new());
        };
        let bytes = self.fetch(artifact).await?;
        let uri = artifact.uri();
        tokio::task::spawn_blocking(move || {
            nadir_pipeline::eval::findings::read_findings(&bytes)
                .map_err(|e| LoadError::Invalid(format!("{uri}: {e}")))
        })
        .await
        .map_err(|e| LoadError::Invalid(format!("reading findings panicked: {e}")))?
    }

    async fn fetch(&self, artifact: &ArtifactRef) -> Result<bytes::Bytes, LoadError> {
        self.store
            .get_artifact(artifact)
            .await
            .map_err(|e| match e {
                StoreError::Tampered { uri } => LoadError::Tampered { uri },
                e => LoadError::Fetch(format!("{}: {e}", artifact.uri())),
            })
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
        let report: EvalReport = serde_json::from_slice(&report_bytes)
            .map_err(|e| LoadError::Invalid(format!("{}: {e}", report_ref.uri())))?;
        let findings = self.read_findings(&report).await?;
        let loaded = tokio::task::spawn_blocking(move || {
            let evidence = findings
                .iter()
                .flat_map(|f| f.evidence_flow_ids.iter().copied())
                .collect();
            let frame = nadir_flows::table::read_parquet(&scores_bytes)
                .map_err(|e| LoadError::Invalid(format!("{}: {e}", scores_ref.uri())))?;
            let index = RunIndex::build(&report, &frame, &evidence)
                .map_err(|e| LoadError::Invalid(e.to_string()))?;
            Ok::<_, LoadError>(LoadedRun {
                report,
                findings: Arc::new(findings),
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
            findings = loaded.findings.len(),
            rows = loaded.index.rows,
            ms = loaded.load_time.as_millis() as u64,
            "run indexed"
        );
        Ok(Arc::new(loaded))
    }

    /// Indexes the newest runs ahead of requests.
    pub async fn warm(&self, runs: &[(Uuid, Value)]) {
        for (run_id, report) in runs.iter().take(self.runs.capacity).rev() {
            if let Err(e) = self.run(*run_id, report).await {
                tracing::warn!(run_id = %run_id, error = %e, "could not index run");
            }
        }
    }

    /// The numeric features of the flagged and evidence flows of one partition, read
    /// from SILVER (`flows` is the partition's artifact).
    pub async fn flow_features(
        &self,
        run_id: Uuid,
        run: &LoadedRun,
        raw_version: &str,
        flows: ArtifactRef,
    ) -> Result<Arc<FlowFeatures>, LoadError> {
        let key = (run_id, raw_version.to_string());
        self.silver
            .get_or_load(key, || async {
                let wanted: Vec<u64> = run
                    .index
                    .anomalies
                    .iter()
                    .chain(&run.index.evidence)
                    .filter(|f| f.raw_version == raw_version)
                    .map(|f| f.flow_id)
                    .collect();
                let features: Vec<String> =
                    run.index.profile.iter().map(|p| p.name.clone()).collect();
                let bytes = self.fetch(&flows).await?;
                let uri = flows.uri();
                tokio::task::spawn_blocking(move || features_of(&bytes, &wanted, &features))
                    .await
                    .map_err(|e| LoadError::Invalid(format!("reading {uri} panicked: {e}")))?
                    .map(Arc::new)
                    .map_err(|e| LoadError::Invalid(format!("{uri}: {e}")))
            })
            .await
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
