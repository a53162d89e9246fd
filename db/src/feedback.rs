//! Analysts' verdicts on flows (`feedback`): written by the dashboard, read
//! back by the dashboard and, as labels, by every later evaluation.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::connection::{DbError, Pool};

/// Analysts' latest verdict on each flow of the given partitions
/// (`true` = a real attack), as labels for an evaluation; with `until`,
/// as it stood then (to replay an evaluation).
pub async fn labels(
    pool: &Pool,
    raw_versions: &[String],
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<HashMap<(String, u64), bool>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT ON (raw_version, flow_id) raw_version, flow_id, verdict
               FROM feedback WHERE raw_version = ANY($1) AND ($2::timestamptz IS NULL OR at <= $2)
              ORDER BY raw_version, flow_id, id DESC",
            &[&raw_versions, &until],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let flow_id: i64 = r.get(1);
            (
                (r.get::<_, String>(0), flow_id as u64),
                r.get::<_, String>(2) == "true_positive",
            )
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
pub async fn verdicts(pool: &Pool, flows: &[(String, u64)]) -> Result<Vec<Verdict>, DbError> {
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
pub async fn add(
    pool: &Pool,
    run_id: Uuid,
    raw_version: &str,
    flow_id: u64,
    verdict: &str,
    comment: &str,
    analyst: &str,
) -> Result<(), DbError> {
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
