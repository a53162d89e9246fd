//! The runtime's own book of each stage job (`stage_jobs`): the job lock,
//! attempts, the output version fixed at the first attempt (so a retry
//! overwrites rather than duplicates artifacts), the outcome written in one
//! transaction with the stage's audit rows, and the next message kept until
//! JetStream has stored it. `rejected_messages` keeps what could not be read.

use chrono::{DateTime, Utc};
use nadir_contract::audit::AuditRecord;
use nadir_contract::stage::StageKind;
use serde_json::Value;
use uuid::Uuid;

use crate::connection::{DbError, Pool};

/// The idempotency key of a stage job (DESIGN.md: run id + stage + input version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKey {
    pub run_id: Uuid,
    pub stage: StageKind,
    pub input_version: String,
}

impl JobKey {
    fn lock_id(&self) -> i64 {
        let text = format!(
            "{}/{}/{}",
            self.run_id,
            self.stage.name(),
            self.input_version
        );
        let digest = nadir_contract::layout::sha256_hex(text.as_bytes());
        i64::from_str_radix(&digest[..15], 16).expect("15 hex digits fit an i64")
    }
}

/// What `stage_jobs` says about a job.
#[derive(Debug, Clone)]
pub struct JobState {
    pub status: String,
    pub output_version: String,
    pub attempts: i32,
    pub next_subject: Option<String>,
    pub next_message: Option<Value>,
    pub published: bool,
    pub error: Option<String>,
}

/// A held job lock. The lock lives on a connection taken out of the pool:
/// if the worker dies, the connection closes and PostgreSQL releases it.
pub struct JobLock {
    _client: deadpool_postgres::ClientWrapper,
}

/// Takes the job's lock unless another worker holds it.
pub async fn try_lock(pool: &Pool, key: &JobKey) -> Result<Option<JobLock>, DbError> {
    let client = deadpool_postgres::Object::take(pool.get().await?);
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key.lock_id()])
        .await?;
    Ok(row.get::<_, bool>(0).then_some(JobLock { _client: client }))
}

pub async fn job_state(pool: &Pool, key: &JobKey) -> Result<Option<JobState>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT status, output_version, attempts, next_subject, next_message,
                    published_at IS NOT NULL, error
               FROM stage_jobs WHERE run_id = $1 AND stage = $2 AND input_version = $3",
            &[&key.run_id, &key.stage.name(), &key.input_version],
        )
        .await?;
    Ok(row.map(|r| JobState {
        status: r.get(0),
        output_version: r.get(1),
        attempts: r.get(2),
        next_subject: r.get(3),
        next_message: r.get(4),
        published: r.get(5),
        error: r.get(6),
    }))
}

/// Records an attempt at a job: creates the run when this is its first stage,
/// and the job with its output version when this is its first attempt.
/// Returns the job's output version and attempt number.
pub async fn claim(
    pool: &Pool,
    key: &JobKey,
    trigger: &str,
    request: &Value,
    new_output_version: &str,
    worker: &str,
) -> Result<(String, i32), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO pipeline_runs (run_id, trigger, request, status, stage)
         VALUES ($1, $2, $3, 'running', $4)
         ON CONFLICT (run_id) DO UPDATE SET stage = EXCLUDED.stage
           WHERE pipeline_runs.status = 'running'",
        &[&key.run_id, &trigger, request, &key.stage.name()],
    )
    .await?;
    let row = tx
        .query_one(
            "INSERT INTO stage_jobs (run_id, stage, input_version, status, output_version, attempts, worker, request)
             VALUES ($1, $2, $3, 'running', $4, 1, $5, $6)
             ON CONFLICT (run_id, stage, input_version) DO UPDATE
               SET attempts = stage_jobs.attempts + 1, worker = EXCLUDED.worker,
                   attempt_started_at = now()
             RETURNING output_version, attempts",
            &[&key.run_id, &key.stage.name(), &key.input_version, &new_output_version, &worker, request],
        )
        .await?;
    tx.commit().await?;
    Ok((row.get(0), row.get(1)))
}

/// How a job ended, for [`finish`].
pub enum Finish<'a> {
    /// The stage's rows, the next message, and for the last stage the report.
    Succeeded {
        records: &'a [AuditRecord],
        next_subject: &'a str,
        next_message: &'a Value,
        run_report: Option<&'a Value>,
        registry: &'a [crate::registry::RegistryChange],
    },
    /// The job will not be retried: the error goes on a failure row, the job
    /// and the run.
    Failed {
        item: &'a str,
        inputs: &'a Value,
        error: &'a str,
    },
}

/// Writes the job's outcome in one transaction: audit rows, job, run.
pub async fn finish(
    pool: &Pool,
    key: &JobKey,
    started_at: DateTime<Utc>,
    worker: &str,
    finish: Finish<'_>,
) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let table = key.stage.table();
    let insert = format!(
        "INSERT INTO {table} (run_id, input_version, item, status, started_at, finished_at,
                              inputs, outputs, parameters, metrics, worker, attempts, error)
         SELECT $1, $2, $3, $4, $5, now(), $6, $7, $8, $9, $10, j.attempts, $11
           FROM stage_jobs j WHERE j.run_id = $1 AND j.stage = $12 AND j.input_version = $2
         ON CONFLICT (run_id, input_version, item) DO NOTHING"
    );
    let stage = key.stage.name();
    match finish {
        Finish::Succeeded {
            records,
            next_subject,
            next_message,
            run_report,
            registry,
        } => {
            for r in records {
                tx.execute(
                    &insert,
                    &[
                        &key.run_id,
                        &key.input_version,
                        &r.item,
                        &"succeeded",
                        &started_at,
                        &r.inputs,
                        &r.outputs,
                        &r.parameters,
                        &r.metrics,
                        &worker,
                        &None::<String>,
                        &stage,
                    ],
                )
                .await?;
            }
            crate::registry::apply(&tx, key.run_id, worker, registry).await?;
            tx.execute(
                "UPDATE stage_jobs SET status = 'succeeded', finished_at = now(), error = NULL,
                        next_subject = $4, next_message = $5
                  WHERE run_id = $1 AND stage = $2 AND input_version = $3",
                &[
                    &key.run_id,
                    &stage,
                    &key.input_version,
                    &next_subject,
                    next_message,
                ],
            )
            .await?;
            if let Some(report) = run_report {
                tx.execute(
                    "UPDATE pipeline_runs SET status = 'succeeded', finished_at = now(), report = $2
                      WHERE run_id = $1 AND status = 'running'",
                    &[&key.run_id, report],
                )
                .await?;
            }
        }
        Finish::Failed {
            item,
            inputs,
            error,
        } => {
            let empty = Value::Object(Default::default());
            tx.execute(
                &insert,
                &[
                    &key.run_id,
                    &key.input_version,
                    &item,
                    &"failed",
                    &started_at,
                    inputs,
                    &empty,
                    &empty,
                    &empty,
                    &worker,
                    &Some(error),
                    &stage,
                ],
            )
            .await?;
            tx.execute(
                "UPDATE stage_jobs SET status = 'failed', finished_at = now(), error = $4
                  WHERE run_id = $1 AND stage = $2 AND input_version = $3",
                &[&key.run_id, &stage, &key.input_version, &error],
            )
            .await?;
            tx.execute(
                "UPDATE pipeline_runs SET status = 'failed', finished_at = now(), error = $2, error_stage = $3
                  WHERE run_id = $1 AND status = 'running'",
                &[&key.run_id, &error, &stage],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Notes JetStream has stored the job's next message.
pub async fn mark_published(pool: &Pool, key: &JobKey) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            "UPDATE stage_jobs SET published_at = now()
              WHERE run_id = $1 AND stage = $2 AND input_version = $3",
            &[&key.run_id, &key.stage.name(), &key.input_version],
        )
        .await?;
    Ok(())
}

/// Records the error of an attempt that will be retried.
pub async fn record_retry(pool: &Pool, key: &JobKey, error: &str) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            "UPDATE stage_jobs SET error = $4
              WHERE run_id = $1 AND stage = $2 AND input_version = $3",
            &[&key.run_id, &key.stage.name(), &key.input_version, &error],
        )
        .await?;
    Ok(())
}

/// Keeps a message that could not be read, and marks its run failed when
/// its run id could be read and the run exists.
pub async fn record_rejected(
    pool: &Pool,
    subject: &str,
    stream_sequence: i64,
    payload: &[u8],
    error: &str,
    run_id: Option<Uuid>,
    worker: &str,
) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let excerpt = String::from_utf8_lossy(&payload[..payload.len().min(4096)]).into_owned();
    tx.execute(
        "INSERT INTO rejected_messages (subject, stream_sequence, run_id, payload_excerpt, error, worker)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (subject, stream_sequence) DO NOTHING",
        &[&subject, &stream_sequence, &run_id, &excerpt, &error, &worker],
    )
    .await?;
    if let Some(run_id) = run_id {
        tx.execute(
            "UPDATE pipeline_runs SET status = 'failed', finished_at = now(), error = $2, error_stage = $3
              WHERE run_id = $1 AND status = 'running'",
            &[&run_id, &error, &subject],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The message a run's succeeded job of `stage` worked from (what
/// `nadir reproduce` replays).
pub async fn job_request(
    pool: &Pool,
    run_id: Uuid,
    stage: StageKind,
) -> Result<Option<Value>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT request FROM stage_jobs
              WHERE run_id = $1 AND stage = $2 AND status = 'succeeded'
              ORDER BY finished_at DESC LIMIT 1",
            &[&run_id, &stage.name()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
