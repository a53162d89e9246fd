//! What the dashboard reads from PostgreSQL (the audit trail and the model
//! registry), and the one thing it writes: analysts' feedback. Every
//! statement binds its parameters; the role needs only `SELECT` and
//! `INSERT` on `feedback` (`nadir grant-dashboard`).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use nadir_common::audit::AuditError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

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

/// A run as the runs page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
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
    /// RAW keys the run was about (from its audit rows).
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

fn run_of(row: &tokio_postgres::Row) -> Run {
    let stages: Value = row.get("stages");
    Run {
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
pub async fn runs(pool: &Pool, limit: i64) -> Result<Vec<Run>, AuditError> {
    let rows = pool
        .get()
        .await?
        .query(
            &format!("{RUNS} ORDER BY r.started_at DESC LIMIT $1"),
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(run_of).collect())
}

pub async fn run(pool: &Pool, run_id: Uuid) -> Result<Option<Run>, AuditError> {
    let row = pool
        .get()
        .await?
        .query_opt(&format!("{RUNS} WHERE r.run_id = $1"), &[&run_id])
        .await?;
    Ok(row.as_ref().map(run_of))
}

/// The newest succeeded runs with a report (the ones worth indexing ahead).
pub async fn recent_reports(pool: &Pool, limit: i64) -> Result<Vec<(Uuid, Value)>, AuditError> {
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
) -> Result<Option<Value>, AuditError> {
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
pub async fn evaluations(pool: &Pool, limit: i64) -> Result<Vec<EvaluationPoint>, AuditError> {
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

/// An analyst's verdict on a flow.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub raw_version: String,
    pub flow_id: u64,
    pub run_id: Option<Uuid>,
    /// `true_positive` or `false_positive`.
    pub verdict: String,
    pub comment: String,
    pub analyst: String,
    pub at: DateTime<Utc>,
}

/// Verdicts on the given flows, newest first.
pub async fn feedback(pool: &Pool, flows: &[(String, u64)]) -> Result<Vec<Verdict>, AuditError> {
    if flows.is_empty() {
        return Ok(Vec::new());
    }
    let raw_versions: Vec<&str> = flows.iter().map(|(r, _)| r.as_str()).collect();
    let ids: Vec<i64> = flows.iter().map(|(_, id)| *id as i64).collect();
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT f.raw_version, f.flow_id, f.run_id, f.verdict, f.comment, f.analyst, f.at
               FROM feedback f
               JOIN unnest($1::text[], $2::bigint[]) AS wanted(raw_version, flow_id)
                 ON f.raw_version = wanted.raw_version AND f.flow_id = wanted.flow_id
              ORDER BY f.id DESC",
            &[&raw_versions, &ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Verdict {
            raw_version: r.get(0),
            flow_id: r.get::<_, i64>(1) as u64,
            run_id: r.get(2),
            verdict: r.get(3),
            comment: r.get(4),
            analyst: r.get(5),
            at: r.get(6),
        })
        .collect())
}

/// Records a verdict; later evaluations of the partition read it as the
/// flow's label.
pub async fn add_feedback(
    pool: &Pool,
    run_id: Uuid,
    raw_version: &str,
    flow_id: u64,
    verdict: &str,
    comment: &str,
    analyst: &str,
) -> Result<(), AuditError> {
    pool.get()
        .await?
        .execute(
            "INSERT INTO feedback (raw_version, flow_id, run_id, verdict, comment, analyst)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &raw_version,
                &(flow_id as i64),
                &run_id,
                &verdict,
                &comment,
                &analyst,
            ],
        )
        .await?;
    Ok(())
}
