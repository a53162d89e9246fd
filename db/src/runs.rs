//! Runs and what their stages recorded: `pipeline_runs` and the four audit
//! tables, read the same way by `nadir runs`/`status`/`reproduce` and by the
//! dashboard, and the SILVER partitions a training window is made of.

use chrono::{DateTime, Utc};
use nadir_contract::messages::SilverPartition;
use nadir_contract::stage::StageKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::connection::{DbError, Pool};

/// How many times the reconciler starts a RAW object again after runs that
/// failed only because their retry budget ran out.
pub const MAX_REDRIVES: u32 = 5;

/// The run the reconciler should start for a RAW object, or `None` when a
/// run has it or had it (an ingestion of its ETag, or a run under its run
/// id). Runs that failed only because their retry budget ran out (an
/// outage longer than `NADIR_RETRY_BUDGET_SECS`) do not count: the object
/// gets a new run under its next re-drive id, at most [`MAX_REDRIVES`] times.
pub async fn unseen_run_id(
    pool: &Pool,
    object_run_id: Uuid,
    key: &str,
    etag: &str,
) -> Result<Option<Uuid>, DbError> {
    let candidates: Vec<Uuid> = (0..=MAX_REDRIVES)
        .map(|n| nadir_contract::messages::redrive_run_id(object_run_id, n))
        .collect();
    let client = pool.get().await?;
    let ingested: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM ingestions i JOIN pipeline_runs r USING (run_id)
                             WHERE i.item = $1 AND i.inputs->>'etag' = $2 AND i.status = 'succeeded'
                               AND r.failure IS DISTINCT FROM 'transient'
                               AND NOT (r.run_id = ANY($3)))",
            &[&key, &etag, &candidates],
        )
        .await?
        .get(0);
    if ingested {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT run_id, failure = 'transient' AND status = 'failed' FROM pipeline_runs
              WHERE run_id = ANY($1)",
            &[&candidates],
        )
        .await?;
    for id in candidates {
        match rows.iter().find(|r| r.get::<_, Uuid>(0) == id) {
            None => return Ok(Some(id)),
            Some(r) if r.get::<_, Option<bool>>(1) == Some(true) => continue,
            Some(_) => return Ok(None),
        }
    }
    Ok(None)
}

/// One stage of a run, over all its jobs (one per RAW object in ingest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageStatus {
    pub stage: String,
    /// `failed` if any job failed, `running` if any runs, else `succeeded`.
    pub status: String,
    pub jobs: i64,
    /// First start to last finish (to now while running).
    pub seconds: f64,
    pub attempts: i32,
}

/// A run: its row in `pipeline_runs`, each stage over all its jobs, and
/// the RAW keys it was about.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub trigger: String,
    pub status: String,
    pub stage: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_stage: Option<String>,
    /// `pipeline_runs.report`: the report and scores artifacts and a summary.
    pub report: Option<Value>,
    pub stages: Vec<StageStatus>,
    /// RAW keys the run was about (from its audit rows, the first 20).
    pub objects: Vec<String>,
}

const RUNS: &str = "
SELECT r.run_id, r.trigger, r.status, r.stage, r.started_at, r.finished_at, r.error,
       r.error_stage, r.report,
       COALESCE((SELECT json_agg(s ORDER BY array_position(ARRAY['ingest','transform','train','eval'], s.stage))
                   FROM (SELECT stage,
                                CASE WHEN bool_or(status = 'failed') THEN 'failed'
                                     WHEN bool_or(status = 'running') THEN 'running'
                                     ELSE 'succeeded' END AS status,
                                count(*) AS jobs,
                                EXTRACT(EPOCH FROM max(COALESCE(finished_at, now())) - min(started_at))::float8 AS seconds,
                                max(attempts) AS attempts
                           FROM stage_jobs WHERE run_id = r.run_id GROUP BY stage) s), '[]') AS stages,
       ARRAY(SELECT item FROM ingestions WHERE run_id = r.run_id ORDER BY id LIMIT 20) AS objects
  FROM pipeline_runs r";

fn run_summary(row: &tokio_postgres::Row) -> RunSummary {
    let stages: Value = row.get("stages");
    RunSummary {
        run_id: row.get("run_id"),
        trigger: row.get("trigger"),
        status: row.get("status"),
        stage: row.get("stage"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        error: row.get("error"),
        error_stage: row.get("error_stage"),
        report: row.get("report"),
        stages: serde_json::from_value(stages).unwrap_or_default(),
        objects: row.get("objects"),
    }
}

/// The newest runs first.
pub async fn runs(pool: &Pool, limit: i64) -> Result<Vec<RunSummary>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            &format!("{RUNS} ORDER BY r.started_at DESC LIMIT $1"),
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(run_summary).collect())
}

pub async fn run(pool: &Pool, run_id: Uuid) -> Result<Option<RunSummary>, DbError> {
    let row = pool
        .get()
        .await?
        .query_opt(&format!("{RUNS} WHERE r.run_id = $1"), &[&run_id])
        .await?;
    Ok(row.as_ref().map(run_summary))
}

/// One audit row of a stage, as `nadir status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: StageKind,
    pub item: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub seconds: f64,
    pub attempts: i32,
    pub worker: String,
    pub inputs: Value,
    pub outputs: Value,
    pub parameters: Value,
    pub metrics: Value,
    pub error: Option<String>,
}

/// Every audit row of a run, stage by stage.
pub async fn stage_rows(pool: &Pool, run_id: Uuid) -> Result<Vec<StageRow>, DbError> {
    let client = pool.get().await?;
    let mut out = Vec::new();
    for stage in StageKind::ALL {
        let rows = client
            .query(
                &format!(
                    "SELECT item, status, started_at, finished_at,
                            EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS seconds,
                            attempts, worker, inputs, outputs, parameters, metrics, error
                       FROM {} WHERE run_id = $1 ORDER BY id",
                    stage.table()
                ),
                &[&run_id],
            )
            .await?;
        out.extend(rows.iter().map(|r| StageRow {
            stage,
            item: r.get("item"),
            status: r.get("status"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            seconds: r.get("seconds"),
            attempts: r.get("attempts"),
            worker: r.get("worker"),
            inputs: r.get("inputs"),
            outputs: r.get("outputs"),
            parameters: r.get("parameters"),
            metrics: r.get("metrics"),
            error: r.get("error"),
        }));
    }
    Ok(out)
}

/// The newest SILVER partitions the transform stage produced (the latest
/// transformation of each RAW version; a retrain run's reuse of one does
/// not count), newest first: with `features` when given, at most `limit`,
/// and only those finished in the last `span_hours` when given.
pub async fn silver_partitions(
    pool: &Pool,
    features: Option<&[String]>,
    limit: Option<i64>,
    span_hours: Option<f64>,
) -> Result<Vec<SilverPartition>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT item, outputs, parameters -> 'features', (metrics ->> 'rows')::bigint
               FROM (SELECT DISTINCT ON (item) item, outputs, parameters, metrics, finished_at
                       FROM transformations
                      WHERE status = 'succeeded'
                        AND parameters ? 'features'
                        AND NOT parameters ? 'reused_by'
                        AND ($3::jsonb IS NULL OR parameters -> 'features' = $3)
                        AND ($2::float8 IS NULL OR finished_at >= now() - make_interval(secs => $2::float8 * 3600))
                      ORDER BY item, finished_at DESC) latest
              ORDER BY finished_at DESC, item
              LIMIT $1",
            &[&limit, &span_hours, &features.map(|f| serde_json::json!(f))],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let outputs: Value = r.get(1);
            let features: Value = r.get(2);
            fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, DbError> {
                serde_json::from_value(v)
                    .map_err(|e| DbError::Config(format!("transformations.{what}: {e}")))
            }
            Ok(SilverPartition {
                raw_version: r.get(0),
                features: parse("parameters.features", features)?,
                flows: parse("outputs[0]", outputs[0].clone())?,
                manifest: parse("outputs[1]", outputs[1].clone())?,
                rows: r.get::<_, i64>(3) as u64,
            })
        })
        .collect()
}

/// The newest succeeded runs with a report (the ones worth indexing ahead).
pub async fn recent_reports(pool: &Pool, limit: i64) -> Result<Vec<(Uuid, Value)>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT run_id, report FROM pipeline_runs
              WHERE status = 'succeeded' AND report IS NOT NULL
              ORDER BY finished_at DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A run's SILVER partition of a RAW version: the flows artifact.
pub async fn silver_partition(
    pool: &Pool,
    run_id: Uuid,
    raw_version: &str,
) -> Result<Option<Value>, DbError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT outputs -> 0 FROM transformations
              WHERE run_id = $1 AND item = $2 AND status = 'succeeded'
              ORDER BY id DESC LIMIT 1",
            &[&run_id, &raw_version],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// One evaluation's figures, for metrics over time.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationPoint {
    pub run_id: Uuid,
    pub finished_at: DateTime<Utc>,
    pub summary: Value,
}

/// Succeeded evaluations, oldest first (the last `limit`).
pub async fn evaluations(pool: &Pool, limit: i64) -> Result<Vec<EvaluationPoint>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT run_id, finished_at, metrics -> 'summary' FROM
               (SELECT run_id, finished_at, metrics FROM evaluations WHERE status = 'succeeded'
                 ORDER BY finished_at DESC LIMIT $1) newest
              ORDER BY finished_at",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| EvaluationPoint {
            run_id: r.get(0),
            finished_at: r.get(1),
            summary: r.get::<_, Option<Value>>(2).unwrap_or(Value::Null),
        })
        .collect())
}

/// Every artifact the audit trail says was written (the outputs of every
/// succeeded row of the four stage tables), for `nadir verify`.
pub async fn recorded_outputs(pool: &Pool) -> Result<Vec<Value>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT outputs FROM ingestions WHERE status = 'succeeded'
             UNION ALL SELECT outputs FROM transformations WHERE status = 'succeeded'
             UNION ALL SELECT outputs FROM trainings WHERE status = 'succeeded'
             UNION ALL SELECT outputs FROM evaluations WHERE status = 'succeeded'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Objects attempts still at work have written (not orphans yet).
pub async fn in_flight_objects(pool: &Pool) -> Result<Vec<(String, String)>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT a.bucket, a.key FROM stage_artifacts a
               JOIN stage_jobs j USING (run_id, stage, input_version)
              WHERE j.status = 'running' OR a.removed_at IS NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
