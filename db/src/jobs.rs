//! The runtime's own book of each stage job (`stage_jobs`).
//!
//! A job (run id + stage + input version) is owned by one attempt at a time
//! through a lease in its row, renewed while the attempt works: a worker
//! that dies stops renewing, and the next delivery takes the job over once
//! the lease has expired. Every write an attempt makes is fenced on its
//! attempt number: the commit, the lease renewal and the registration of
//! each artifact it writes succeed only while it still owns the job, so a
//! stale attempt can never commit or replace what another committed.
//!
//! Each attempt writes under its own version; the committed attempt's
//! artifacts are the job's, every other attempt's are removed
//! ([`artifacts_to_remove`]). The outcome is written in one transaction
//! with the stage's audit rows and the message that follows it (the next
//! stage's, or the dead letter): an outbox, published until JetStream has
//! stored it. A job's retry budget is measured in time from its first
//! transient error; lock contention and hand-backs do not spend it.
//! `rejected_messages` keeps what could not be read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nadir_contract::audit::AuditRecord;
use nadir_contract::stage::StageKind;
use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::connection::{DbError, Pool};
use crate::safe;

/// The idempotency key of a stage job (DESIGN.md: run id + stage + input version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKey {
    pub run_id: Uuid,
    pub stage: StageKind,
    pub input_version: String,
}

impl JobKey {
    /// The `Nats-Msg-Id` of the message that follows this job.
    pub fn next_msg_id(&self) -> String {
        format!(
            "{}.{}.{}",
            self.run_id,
            self.stage.name(),
            self.input_version
        )
    }

    /// The `Nats-Msg-Id` of this job's dead letter.
    pub fn dead_msg_id(&self) -> String {
        format!(
            "{}.dead.{}.{}",
            self.run_id,
            self.stage.name(),
            self.input_version
        )
    }
}

/// One attempt at a job, the owner of its lease.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: JobKey,
    pub number: i32,
    /// The version of everything this attempt writes.
    pub version: String,
    pub lease: Duration,
}

/// How long the retries of a job may go on, and how many worker deaths
/// it may cause.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub retry: Duration,
    pub worker_deaths: i32,
}

/// A message stored to be published (the outbox).
#[derive(Debug, Clone)]
pub struct Pending {
    pub key: JobKey,
    pub subject: String,
    pub message: Value,
}

/// What [`claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// This attempt owns the job now. `give_up` is set when the attempt
    /// only exists to fail the job: its workers died too often or its
    /// retry budget is spent.
    Started {
        attempt: Attempt,
        give_up: Option<String>,
    },
    /// Another attempt holds a live lease: try again later (no attempt spent).
    Busy,
    /// The job succeeded; its next message if it was never published.
    Done { unpublished: Option<Pending> },
    /// The job or its run is over (failed, cancelled, or the run ended).
    Over { why: String },
}

/// How a commit went.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    Yes,
    /// Another attempt owns the job now: nothing was written.
    Fenced,
    /// The run ended (failed elsewhere) before this job finished: the job
    /// is cancelled and nothing else was written.
    RunOver(String),
}

/// Postgres' view of a lease length.
fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn fresh_version(key: &JobKey, at: DateTime<Utc>, attempt: i32) -> String {
    nadir_contract::layout::version(
        at,
        &format!(
            "{}/{}/{}/{attempt}",
            key.run_id,
            key.stage.name(),
            key.input_version
        ),
    )
}

/// Takes up a job: creates its run when the run is new, refuses when the
/// run or the job is over or another attempt holds the lease, and starts a
/// new attempt otherwise. A lease that expired without a hand-back means
/// the previous owner died: that spends the retry budget and counts a death.
pub async fn claim(
    pool: &Pool,
    key: &JobKey,
    trigger: &str,
    request: &Value,
    worker: &str,
    lease: Duration,
    budget: Budget,
) -> Result<Claim, DbError> {
    let request = safe::json(request);
    let worker = safe::text(worker);
    let trigger = safe::text(trigger);
    let stage = key.stage.name();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO pipeline_runs (run_id, trigger, request, status, stage)
         VALUES ($1, $2, $3, 'running', $4) ON CONFLICT (run_id) DO NOTHING",
        &[&key.run_id, &trigger, &*request, &stage],
    )
    .await?;
    let run = tx
        .query_one(
            "SELECT status FROM pipeline_runs WHERE run_id = $1 FOR UPDATE",
            &[&key.run_id],
        )
        .await?;
    let run_status: String = run.get(0);
    let job = tx
        .query_opt(
            "SELECT status, lease_until > now(), lease_until IS NULL, attempts, worker,
                    next_subject, next_message, published_at IS NOT NULL, worker_deaths,
                    extract(epoch FROM now() - first_error_at)::float8
               FROM stage_jobs WHERE run_id = $1 AND stage = $2 AND input_version = $3
               FOR UPDATE",
            &[&key.run_id, &stage, &key.input_version],
        )
        .await?;
    if let Some(job) = &job {
        let status: String = job.get(0);
        match status.as_str() {
            "succeeded" => {
                let published: bool = job.get(7);
                let unpublished = match (published, job.get(5), job.get(6)) {
                    (false, Some(subject), Some(message)) => Some(Pending {
                        key: key.clone(),
                        subject,
                        message,
                    }),
                    _ => None,
                };
                return Ok(Claim::Done { unpublished });
            }
            "running" => {}
            other => {
                return Ok(Claim::Over {
                    why: format!("the job is {other}"),
                });
            }
        }
    }
    if run_status != "running" {
        return Ok(Claim::Over {
            why: format!("run {} is {run_status}", key.run_id),
        });
    }
    let now = Utc::now();
    let (number, version, give_up) = match &job {
        None => {
            let version = fresh_version(key, now, 1);
            tx.execute(
                "INSERT INTO stage_jobs (run_id, stage, input_version, status, output_version,
                                         attempts, worker, request, lease_until)
                 VALUES ($1, $2, $3, 'running', $4, 1, $5, $6,
                         now() + make_interval(secs => $7))",
                &[
                    &key.run_id,
                    &stage,
                    &key.input_version,
                    &version,
                    &worker,
                    &*request,
                    &interval(lease),
                ],
            )
            .await?;
            (1, version, None)
        }
        Some(job) => {
            let leased: Option<bool> = job.get(1);
            if leased == Some(true) {
                return Ok(Claim::Busy);
            }
            let handed_back: bool = job.get(2);
            let number: i32 = job.get::<_, i32>(3) + 1;
            let previous_worker: String = job.get(4);
            let died = !handed_back;
            let deaths: i32 = job.get::<_, i32>(8) + i32::from(died);
            let spent: Option<f64> = job.get(9);
            let death_note = died.then(|| {
                format!(
                    "worker {previous_worker} stopped during attempt {} without finishing it",
                    number - 1
                )
            });
            let version = fresh_version(key, now, number);
            tx.execute(
                "UPDATE stage_jobs
                    SET attempts = $4, output_version = $5, worker = $6, attempt_started_at = now(),
                        lease_until = now() + make_interval(secs => $7),
                        worker_deaths = $8,
                        first_error_at = CASE WHEN $9 THEN coalesce(first_error_at, now()) ELSE first_error_at END,
                        error = coalesce($10, error)
                  WHERE run_id = $1 AND stage = $2 AND input_version = $3",
                &[
                    &key.run_id,
                    &stage,
                    &key.input_version,
                    &number,
                    &version,
                    &worker,
                    &interval(lease),
                    &deaths,
                    &died,
                    &death_note,
                ],
            )
            .await?;
            let give_up = match (&death_note, spent) {
                (Some(note), _) if deaths >= budget.worker_deaths => Some(format!(
                    "{note}: {deaths} workers died working on this job (NADIR_MAX_WORKER_DEATHS={}); its input may exhaust a worker's memory, see the workers' logs",
                    budget.worker_deaths
                )),
                (Some(note), Some(spent)) if spent > budget.retry.as_secs_f64() => Some(format!(
                    "{note}, and its retry budget is spent ({spent:.0} s since its first error; NADIR_RETRY_BUDGET_SECS={})",
                    budget.retry.as_secs()
                )),
                _ => None,
            };
            (number, version, give_up)
        }
    };
    tx.execute(
        "UPDATE pipeline_runs SET stage = $2 WHERE run_id = $1",
        &[&key.run_id, &stage],
    )
    .await?;
    tx.commit().await?;
    Ok(Claim::Started {
        attempt: Attempt {
            key: key.clone(),
            number,
            version,
            lease,
        },
        give_up,
    })
}

const OWNED: &str =
    "run_id = $1 AND stage = $2 AND input_version = $3 AND attempts = $4 AND status = 'running'";

/// Extends the attempt's lease; `false` when another attempt owns the job
/// or the job ended.
pub async fn renew(pool: &Pool, attempt: &Attempt) -> Result<bool, DbError> {
    let k = &attempt.key;
    let n = pool
        .get()
        .await?
        .execute(
            &format!(
                "UPDATE stage_jobs SET lease_until = now() + make_interval(secs => $5) WHERE {OWNED}"
            ),
            &[
                &k.run_id,
                &k.stage.name(),
                &k.input_version,
                &attempt.number,
                &interval(attempt.lease),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Gives the job back without an outcome (SIGTERM): the next delivery
/// takes it over at once, and it does not count as a worker death.
pub async fn release(pool: &Pool, attempt: &Attempt) -> Result<(), DbError> {
    let k = &attempt.key;
    pool.get()
        .await?
        .execute(
            &format!("UPDATE stage_jobs SET lease_until = NULL WHERE {OWNED}"),
            &[
                &k.run_id,
                &k.stage.name(),
                &k.input_version,
                &attempt.number,
            ],
        )
        .await?;
    Ok(())
}

/// Records that the attempt is about to write `bucket/key`, and extends
/// its lease; `false` (nothing recorded) when it no longer owns the job.
/// `removable` is false for content-versioned artifacts shared across runs
/// (the RAW manifest): those are written once and never removed.
pub async fn register_artifact(
    pool: &Pool,
    attempt: &Attempt,
    bucket: &str,
    key: &str,
    removable: bool,
) -> Result<bool, DbError> {
    let k = &attempt.key;
    let row = pool
        .get()
        .await?
        .query_opt(
            &format!(
                "WITH owned AS (
                     UPDATE stage_jobs SET lease_until = now() + make_interval(secs => $5)
                      WHERE {OWNED} RETURNING run_id)
                 INSERT INTO stage_artifacts (bucket, key, run_id, stage, input_version, attempt, removed_at, swept_at)
                 SELECT $6, $7, $1, $2, $3, $4,
                        CASE WHEN $8 THEN NULL ELSE now() END, CASE WHEN $8 THEN NULL ELSE now() END
                   FROM owned
                 ON CONFLICT (bucket, key) DO UPDATE SET written_at = now()
                 RETURNING 1"
            ),
            &[
                &k.run_id,
                &k.stage.name(),
                &k.input_version,
                &attempt.number,
                &interval(attempt.lease),
                &bucket,
                &key,
                &removable,
            ],
        )
        .await?;
    Ok(row.is_some())
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
    /// and the run, with the dead letter to publish.
    Failed {
        item: &'a str,
        inputs: &'a Value,
        error: &'a str,
        /// True when the input is wrong, false when the retry budget ran out.
        rejected: bool,
        dead_letter: &'a Value,
    },
}

/// Writes the attempt's outcome in one transaction: audit rows, registry
/// changes, job, run and the outbox. Fenced: nothing is written unless the
/// attempt still owns the job, and a success is not recorded for a run
/// that has ended.
pub async fn finish(
    pool: &Pool,
    attempt: &Attempt,
    started_at: DateTime<Utc>,
    worker: &str,
    finish: Finish<'_>,
) -> Result<Committed, DbError> {
    let key = &attempt.key;
    let worker = safe::text(worker);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let run_status: Option<String> = tx
        .query_opt(
            "SELECT status FROM pipeline_runs WHERE run_id = $1 FOR UPDATE",
            &[&key.run_id],
        )
        .await?
        .map(|r| r.get(0));
    let stage = key.stage.name();
    let owned = |set: &str| {
        format!(
            "UPDATE stage_jobs SET {set}, finished_at = now(), lease_until = NULL WHERE {OWNED}"
        )
    };
    let run_status = run_status.unwrap_or_else(|| "missing".into());
    if run_status != "running" && matches!(finish, Finish::Succeeded { .. }) {
        let n = tx
            .execute(
                &owned("status = 'cancelled', error = $5"),
                &[
                    &key.run_id,
                    &stage,
                    &key.input_version,
                    &attempt.number,
                    &format!("the run is {run_status}"),
                ],
            )
            .await?;
        tx.commit().await?;
        return Ok(if n == 1 {
            Committed::RunOver(run_status)
        } else {
            Committed::Fenced
        });
    }
    match finish {
        Finish::Succeeded {
            records,
            next_subject,
            next_message,
            run_report,
            registry,
        } => {
            let n = tx
                .execute(
                    &owned(
                        "status = 'succeeded', error = NULL, next_subject = $5, next_message = $6",
                    ),
                    &[
                        &key.run_id,
                        &stage,
                        &key.input_version,
                        &attempt.number,
                        &next_subject,
                        &*safe::json(next_message),
                    ],
                )
                .await?;
            if n != 1 {
                return Ok(Committed::Fenced);
            }
            for r in records {
                insert_row(
                    &tx,
                    key,
                    &safe::bounded(&r.item, safe::MAX_ITEM_BYTES),
                    "succeeded",
                    started_at,
                    [&r.inputs, &r.outputs, &r.parameters, &r.metrics],
                    &worker,
                    None,
                )
                .await?;
            }
            crate::registry::apply(&tx, key.run_id, &worker, registry).await?;
            if let Some(report) = run_report {
                tx.execute(
                    "UPDATE pipeline_runs SET status = 'succeeded', finished_at = now(), report = $2
                      WHERE run_id = $1 AND status = 'running'",
                    &[&key.run_id, &*safe::json(report)],
                )
                .await?;
            }
        }
        Finish::Failed {
            item,
            inputs,
            error,
            rejected,
            dead_letter,
        } => {
            let error = safe::bounded(error, safe::MAX_ERROR_BYTES);
            let failure = if rejected { "rejected" } else { "transient" };
            let n = tx
                .execute(
                    &owned("status = 'failed', error = $5, failure = $6, dead_letter = $7"),
                    &[
                        &key.run_id,
                        &stage,
                        &key.input_version,
                        &attempt.number,
                        &error,
                        &failure,
                        &*safe::json(dead_letter),
                    ],
                )
                .await?;
            if n != 1 {
                return Ok(Committed::Fenced);
            }
            let empty = Value::Object(Default::default());
            insert_row(
                &tx,
                key,
                &safe::bounded(item, safe::MAX_ITEM_BYTES),
                "failed",
                started_at,
                [inputs, &empty, &empty, &empty],
                &worker,
                Some(&error),
            )
            .await?;
            tx.execute(
                "UPDATE pipeline_runs SET status = 'failed', finished_at = now(), error = $2,
                        error_stage = $3, failure = $4
                  WHERE run_id = $1 AND status = 'running'",
                &[&key.run_id, &error, &stage, &failure],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(Committed::Yes)
}

#[allow(clippy::too_many_arguments)]
async fn insert_row(
    tx: &Transaction<'_>,
    key: &JobKey,
    item: &str,
    status: &str,
    started_at: DateTime<Utc>,
    [inputs, outputs, parameters, metrics]: [&Value; 4],
    worker: &str,
    error: Option<&str>,
) -> Result<(), DbError> {
    let table = key.stage.table();
    tx.execute(
        &format!(
            "INSERT INTO {table} (run_id, input_version, item, status, started_at, finished_at,
                                  inputs, outputs, parameters, metrics, worker, attempts, error)
             SELECT $1, $2, $3, $4, $5, now(), $6, $7, $8, $9, $10, j.attempts, $11
               FROM stage_jobs j WHERE j.run_id = $1 AND j.stage = $12 AND j.input_version = $2
             ON CONFLICT (run_id, input_version, item) DO NOTHING"
        ),
        &[
            &key.run_id,
            &key.input_version,
            &item,
            &status,
            &started_at,
            &*safe::json(inputs),
            &*safe::json(outputs),
            &*safe::json(parameters),
            &*safe::json(metrics),
            &worker,
            &error,
            &key.stage.name(),
        ],
    )
    .await?;
    Ok(())
}

/// How a transient error was recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// Retry after a back-off; this is the job's `n`th transient error.
    Later(i32),
    /// The retry budget is spent: fail the job.
    Exhausted {
        seconds: u64,
    },
    Fenced,
}

/// Records a transient error of the attempt and hands the job back (its
/// lease released) for the retry; says whether the budget allows one.
pub async fn record_retry(
    pool: &Pool,
    attempt: &Attempt,
    error: &str,
    budget: Budget,
) -> Result<Retry, DbError> {
    let k = &attempt.key;
    let row = pool
        .get()
        .await?
        .query_opt(
            &format!(
                "UPDATE stage_jobs SET error = $5, retries = retries + 1, lease_until = NULL,
                        first_error_at = coalesce(first_error_at, now())
                  WHERE {OWNED}
              RETURNING retries, extract(epoch FROM now() - first_error_at)::float8"
            ),
            &[
                &k.run_id,
                &k.stage.name(),
                &k.input_version,
                &attempt.number,
                &safe::bounded(error, safe::MAX_ERROR_BYTES),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Retry::Fenced);
    };
    let spent: f64 = row.get(1);
    if spent > budget.retry.as_secs_f64() {
        return Ok(Retry::Exhausted {
            seconds: spent as u64,
        });
    }
    Ok(Retry::Later(row.get(0)))
}

/// Notes JetStream has stored the job's next message, or with `dead`
/// its dead letter.
pub async fn mark_published(pool: &Pool, key: &JobKey, dead: bool) -> Result<(), DbError> {
    let column = if dead {
        "dead_published_at"
    } else {
        "published_at"
    };
    pool.get()
        .await?
        .execute(
            &format!(
                "UPDATE stage_jobs SET {column} = now()
                  WHERE run_id = $1 AND stage = $2 AND input_version = $3"
            ),
            &[&key.run_id, &key.stage.name(), &key.input_version],
        )
        .await?;
    Ok(())
}

/// The next message of a succeeded job (a message published by reference
/// names it).
pub async fn next_message(pool: &Pool, key: &JobKey) -> Result<Option<Value>, DbError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT next_message FROM stage_jobs
              WHERE run_id = $1 AND stage = $2 AND input_version = $3 AND status = 'succeeded'",
            &[&key.run_id, &key.stage.name(), &key.input_version],
        )
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

fn key_of(row: &tokio_postgres::Row, stage: StageKind) -> JobKey {
    JobKey {
        run_id: row.get(0),
        stage,
        input_version: row.get(1),
    }
}

/// The outbox of a stage: next messages and dead letters committed more
/// than `older_than` ago and not yet stored by JetStream, and next messages
/// of runs still running that no job of the next stage took up within
/// `stalled_after` (a JetStream that lost them).
pub async fn unpublished(
    pool: &Pool,
    stage: StageKind,
    older_than: Duration,
    stalled_after: Duration,
) -> Result<(Vec<Pending>, Vec<Pending>), DbError> {
    let client = pool.get().await?;
    let next_stage = stage.next().map(StageKind::name);
    let rows = client
        .query(
            "SELECT j.run_id, j.input_version, j.next_subject, j.next_message
               FROM stage_jobs j JOIN pipeline_runs r USING (run_id)
              WHERE j.stage = $1 AND j.status = 'succeeded' AND j.next_message IS NOT NULL
                AND ((j.published_at IS NULL AND j.finished_at < now() - make_interval(secs => $2))
                  OR (r.status = 'running' AND $4::text IS NOT NULL
                      AND j.published_at < now() - make_interval(secs => $3)
                      AND NOT EXISTS (SELECT 1 FROM stage_jobs n
                                       WHERE n.run_id = j.run_id AND n.stage = $4)))
              LIMIT 100",
            &[
                &stage.name(),
                &interval(older_than),
                &interval(stalled_after),
                &next_stage,
            ],
        )
        .await?;
    let next = rows
        .iter()
        .map(|r| Pending {
            key: key_of(r, stage),
            subject: r.get(2),
            message: r.get(3),
        })
        .collect();
    let rows = client
        .query(
            "SELECT run_id, input_version, dead_letter FROM stage_jobs
              WHERE stage = $1 AND status = 'failed' AND dead_letter IS NOT NULL
                AND dead_published_at IS NULL AND finished_at < now() - make_interval(secs => $2)
              LIMIT 100",
            &[&stage.name(), &interval(older_than)],
        )
        .await?;
    let dead = rows
        .iter()
        .map(|r| Pending {
            key: key_of(r, stage),
            subject: nadir_contract::messages::subject::DEAD.into(),
            message: r.get(2),
        })
        .collect();
    Ok((next, dead))
}

/// Jobs of a stage nobody works on: running, of a running run, whose lease
/// expired (or was handed back) more than `after` ago. Their requests, for
/// the reaper to run them again.
pub async fn orphans(
    pool: &Pool,
    stage: StageKind,
    after: Duration,
) -> Result<Vec<(JobKey, Value)>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT j.run_id, j.input_version, j.request
               FROM stage_jobs j JOIN pipeline_runs r USING (run_id)
              WHERE j.stage = $1 AND j.status = 'running' AND r.status = 'running'
                AND coalesce(j.lease_until, j.attempt_started_at) < now() - make_interval(secs => $2)
              LIMIT 20",
            &[&stage.name(), &interval(after)],
        )
        .await?;
    Ok(rows.iter().map(|r| (key_of(r, stage), r.get(2))).collect())
}

/// An object an attempt wrote that is not one of its job's artifacts.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub bucket: String,
    pub key: String,
    /// True on the second pass, which catches writes still in flight when
    /// the job ended.
    pub sweep: bool,
}

/// Objects to remove: those of every attempt of an ended job but the
/// committed one (all of them for a failed or cancelled job). Each is
/// returned once when the job ends and once more `sweep_after` later.
/// `job` narrows it to one job (the one just committed).
pub async fn artifacts_to_remove(
    pool: &Pool,
    job: Option<&JobKey>,
    sweep_after: Duration,
) -> Result<Vec<Leftover>, DbError> {
    let (run_id, stage, input_version) = match job {
        Some(k) => (
            Some(k.run_id),
            Some(k.stage.name()),
            Some(k.input_version.as_str()),
        ),
        None => (None, None, None),
    };
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT a.bucket, a.key, a.removed_at IS NOT NULL
               FROM stage_artifacts a
               JOIN stage_jobs j USING (run_id, stage, input_version)
              WHERE a.swept_at IS NULL AND j.status <> 'running'
                AND (j.status <> 'succeeded' OR a.attempt <> j.attempts)
                AND (a.removed_at IS NULL OR a.removed_at < now() - make_interval(secs => $4))
                AND ($1::uuid IS NULL OR (a.run_id = $1 AND a.stage = $2 AND a.input_version = $3))
              LIMIT 500",
            &[&run_id, &stage, &input_version, &interval(sweep_after)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Leftover {
            bucket: r.get(0),
            key: r.get(1),
            sweep: r.get(2),
        })
        .collect())
}

/// Notes a leftover object was deleted.
pub async fn removed(pool: &Pool, leftover: &Leftover) -> Result<(), DbError> {
    let set = if leftover.sweep {
        "swept_at = now()"
    } else {
        "removed_at = now()"
    };
    pool.get()
        .await?
        .execute(
            &format!("UPDATE stage_artifacts SET {set} WHERE bucket = $1 AND key = $2"),
            &[&leftover.bucket, &leftover.key],
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
    let excerpt = String::from_utf8_lossy(&payload[..payload.len().min(4096)]);
    let excerpt = safe::text(&excerpt);
    let error = safe::bounded(error, safe::MAX_ERROR_BYTES);
    tx.execute(
        "INSERT INTO rejected_messages (subject, stream_sequence, run_id, payload_excerpt, error, worker)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (subject, stream_sequence) DO NOTHING",
        &[
            &safe::text(subject),
            &stream_sequence,
            &run_id,
            &excerpt,
            &error,
            &safe::text(worker),
        ],
    )
    .await?;
    if let Some(run_id) = run_id {
        tx.execute(
            "UPDATE pipeline_runs SET status = 'failed', finished_at = now(), error = $2,
                    error_stage = $3, failure = 'rejected'
              WHERE run_id = $1 AND status = 'running'",
            &[&run_id, &error, &safe::text(subject)],
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
