//! The audit trail in PostgreSQL: schema, migrations, and every statement
//! the pipeline runs against it.
//!
//! Tables (DESIGN.md): `pipeline_runs` ties a run together; `ingestions`,
//! `transformations`, `trainings` and `evaluations` hold one row per thing a
//! stage produced (a RAW object, a SILVER partition, a model, an
//! evaluation), written in the same transaction that marks the stage's job
//! done, and unique on (run, input version, item) so a redelivered message can
//! never add a second row. `stage_jobs` is the runtime's own book of each
//! stage job: attempts, the output version fixed at the first attempt (so a
//! retry overwrites rather than duplicates artifacts), and the next message,
//! kept until JetStream has stored it. `rejected_messages` keeps what could not
//! be read at all. Every statement binds its values as parameters; table names
//! come only from [`StageKind`].

use chrono::{DateTime, Utc};
pub use deadpool_postgres::Pool;
use deadpool_postgres::Runtime;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::NoTls;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL configuration: {0}")]
    Config(String),
}

impl AuditError {
    /// The full chain, with the server's message (a `tokio_postgres::Error`
    /// displays only "db error" on its own).
    pub fn detail(&self) -> String {
        match self {
            AuditError::Db(e) => match e.as_db_error() {
                Some(db) => format!("PostgreSQL: {}: {}", db.severity(), db.message()),
                None => format!("PostgreSQL: {e}"),
            },
            other => other.to_string(),
        }
    }
}

/// The four stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Ingest,
    Transform,
    Train,
    Eval,
}

impl StageKind {
    pub const ALL: [StageKind; 4] = [
        StageKind::Ingest,
        StageKind::Transform,
        StageKind::Train,
        StageKind::Eval,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Ingest => "ingest",
            StageKind::Transform => "transform",
            StageKind::Train => "train",
            StageKind::Eval => "eval",
        }
    }

    /// The audit table of the stage.
    pub fn table(self) -> &'static str {
        match self {
            StageKind::Ingest => "ingestions",
            StageKind::Transform => "transformations",
            StageKind::Train => "trainings",
            StageKind::Eval => "evaluations",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The migrations, in order. Applied once each, under an advisory lock so
/// that workers starting together do not race.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "audit trail", include_str!("migrations/0001_audit.sql")),
    (
        2,
        "model registry and feedback",
        include_str!("migrations/0002_registry.sql"),
    ),
    (
        3,
        "dashboard indexes",
        include_str!("migrations/0003_dashboard.sql"),
    ),
];

/// Lock id for migrations (any constant shared by all nadir processes).
const MIGRATION_LOCK: i64 = 0x6e61_6469_725f_6d67;

pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, AuditError> {
    let pg: tokio_postgres::Config = database_url.parse().map_err(|e: tokio_postgres::Error| {
        AuditError::Config(format!("NADIR_DATABASE_URL: {e}"))
    })?;
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .build()
        .map_err(|e| AuditError::Config(e.to_string()))
}

/// Applies the migrations not yet applied; returns how many ran.
pub async fn migrate(pool: &Pool) -> Result<usize, AuditError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let done = client
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?
                .is_some();
            if done {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            tx.commit().await?;
            applied += 1;
        }
        Ok::<_, AuditError>(applied)
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

/// Lets an existing PostgreSQL role do what the dashboard does and no
/// more: read every table of the schema (now and after later migrations)
/// and add analysts' feedback.
pub async fn grant_dashboard(pool: &Pool, role: &str) -> Result<(), AuditError> {
    let valid = role.len() <= 63
        && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(AuditError::Config(format!(
            "{role:?} is not a role name nadir grants to (lower-case letters, digits and _, up to 63)"
        )));
    }
    // A role name cannot be a bound parameter; it was checked above.
    let client = pool.get().await?;
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO \"{role}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{role}\";
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO \"{role}\";
             GRANT INSERT ON feedback TO \"{role}\";
             GRANT USAGE ON SEQUENCE feedback_id_seq TO \"{role}\";"
        ))
        .await?;
    Ok(())
}

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
        let digest = crate::layout::sha256_hex(text.as_bytes());
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

/// One row of a stage's audit table.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// What the row is about: a RAW key, a partition, an algorithm, `run`.
    pub item: String,
    pub inputs: Value,
    pub outputs: Value,
    pub parameters: Value,
    pub metrics: Value,
}

/// A held job lock. The lock lives on a connection taken out of the pool:
/// if the worker dies, the connection closes and PostgreSQL releases it.
pub struct JobLock {
    _client: deadpool_postgres::ClientWrapper,
}

/// Takes the job's lock unless another worker holds it.
pub async fn try_lock(pool: &Pool, key: &JobKey) -> Result<Option<JobLock>, AuditError> {
    let client = deadpool_postgres::Object::take(pool.get().await?);
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key.lock_id()])
        .await?;
    Ok(row.get::<_, bool>(0).then_some(JobLock { _client: client }))
}

pub async fn job_state(pool: &Pool, key: &JobKey) -> Result<Option<JobState>, AuditError> {
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
) -> Result<(String, i32), AuditError> {
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
) -> Result<(), AuditError> {
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
pub async fn mark_published(pool: &Pool, key: &JobKey) -> Result<(), AuditError> {
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
pub async fn record_retry(pool: &Pool, key: &JobKey, error: &str) -> Result<(), AuditError> {
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
) -> Result<(), AuditError> {
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

/// Whether a RAW object already has a run or an ingestion, so the reconciler
/// leaves it alone.
pub async fn object_seen(
    pool: &Pool,
    run_id: Uuid,
    key: &str,
    etag: &str,
) -> Result<bool, AuditError> {
    let row = pool
        .get()
        .await?
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pipeline_runs WHERE run_id = $1)
                 OR EXISTS (SELECT 1 FROM ingestions WHERE item = $2 AND inputs->>'etag' = $3)",
            &[&run_id, &key, &etag],
        )
        .await?;
    Ok(row.get(0))
}

/// A run as `nadir runs` and `nadir status` show it.
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
    pub report: Option<Value>,
}

fn run_summary(r: &tokio_postgres::Row) -> RunSummary {
    RunSummary {
        run_id: r.get("run_id"),
        trigger: r.get("trigger"),
        status: r.get("status"),
        stage: r.get("stage"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        error: r.get("error"),
        error_stage: r.get("error_stage"),
        report: r.get("report"),
    }
}

const RUN_COLUMNS: &str =
    "run_id, trigger, status, stage, started_at, finished_at, error, error_stage, report";

pub async fn runs(pool: &Pool, limit: i64) -> Result<Vec<RunSummary>, AuditError> {
    let rows = pool
        .get()
        .await?
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM pipeline_runs ORDER BY started_at DESC LIMIT $1"),
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(run_summary).collect())
}

pub async fn run(pool: &Pool, run_id: Uuid) -> Result<Option<RunSummary>, AuditError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE run_id = $1"),
            &[&run_id],
        )
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
pub async fn stage_rows(pool: &Pool, run_id: Uuid) -> Result<Vec<StageRow>, AuditError> {
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

/// The newest SILVER partitions with `features` the transform stage
/// produced (the latest transformation of each RAW version), newest first:
/// at most `limit`, and only those finished in the last `span_hours` when
/// given.
pub async fn silver_partitions(
    pool: &Pool,
    features: &[String],
    limit: Option<i64>,
    span_hours: Option<f64>,
) -> Result<Vec<crate::messages::SilverPartition>, AuditError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT item, outputs, parameters -> 'features', (metrics ->> 'rows')::bigint
               FROM (SELECT DISTINCT ON (item) item, outputs, parameters, metrics, finished_at
                       FROM transformations
                      WHERE status = 'succeeded'
                        AND parameters -> 'features' = $3
                        AND ($2::float8 IS NULL OR finished_at >= now() - make_interval(secs => $2::float8 * 3600))
                      ORDER BY item, finished_at DESC) latest
              ORDER BY finished_at DESC, item
              LIMIT $1",
            &[&limit, &span_hours, &serde_json::json!(features)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let outputs: Value = r.get(1);
            let features: Value = r.get(2);
            fn parse<T: serde::de::DeserializeOwned>(
                what: &str,
                v: Value,
            ) -> Result<T, AuditError> {
                serde_json::from_value(v)
                    .map_err(|e| AuditError::Config(format!("transformations.{what}: {e}")))
            }
            Ok(crate::messages::SilverPartition {
                raw_version: r.get(0),
                features: parse("parameters.features", features)?,
                flows: parse("outputs[0]", outputs[0].clone())?,
                manifest: parse("outputs[1]", outputs[1].clone())?,
                rows: r.get::<_, i64>(3) as u64,
            })
        })
        .collect()
}

/// The message a run's succeeded job of `stage` worked from (what
/// `nadir reproduce` replays).
pub async fn job_request(
    pool: &Pool,
    run_id: Uuid,
    stage: StageKind,
) -> Result<Option<Value>, AuditError> {
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
