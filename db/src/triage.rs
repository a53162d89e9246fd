//! Findings' triage (`finding_triage`): each state change with who, when
//! and why. A verdict ("confirmed", "false positive") labels the finding's
//! evidence flows in `feedback` in the same transaction, so later
//! evaluations of those partitions read them as ground truth.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use nadir_contract::triage::TriageState;
use uuid::Uuid;

use crate::connection::{DbError, Pool};
use crate::safe;

/// Longest note kept, in bytes.
const NOTE_MAX: usize = 4_000;

/// One change of a finding's state.
#[derive(Debug, Clone)]
pub struct Change {
    pub state: TriageState,
    pub note: String,
    pub analyst: String,
    /// Evidence flows it labelled.
    pub labelled: i32,
    pub at: DateTime<Utc>,
}

fn state_of(text: &str) -> Result<TriageState, DbError> {
    text.parse()
        .map_err(|e| DbError::Config(format!("finding_triage.state: {e}")))
}

/// Records that `analyst` set the finding to `state`. For a verdict, its
/// evidence flows (`(raw_version, flow_id)`) get the matching feedback.
pub async fn set(
    pool: &Pool,
    run_id: Uuid,
    finding_id: &str,
    state: TriageState,
    note: &str,
    analyst: &str,
    evidence: &[(String, u64)],
) -> Result<Change, DbError> {
    let note = safe::bounded(note, NOTE_MAX);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut labelled = 0;
    if let Some(verdict) = state.verdict() {
        let raw_versions: Vec<&str> = evidence.iter().map(|(r, _)| r.as_str()).collect();
        let ids: Vec<i64> = evidence.iter().map(|(_, id)| *id as i64).collect();
        let comment = format!("finding {finding_id}: {}", state.words());
        labelled = tx
            .execute(
                "INSERT INTO feedback (raw_version, flow_id, run_id, verdict, comment, analyst)
                 SELECT raw_version, flow_id, $3, $4, $5, $6
                   FROM unnest($1::text[], $2::bigint[]) AS e(raw_version, flow_id)",
                &[&raw_versions, &ids, &run_id, &verdict, &comment, &analyst],
            )
            .await? as i32;
    }
    let row = tx
        .query_one(
            "INSERT INTO finding_triage (run_id, finding_id, state, note, analyst, labelled)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING at",
            &[
                &run_id,
                &safe::text(finding_id).as_ref(),
                &state.name(),
                &note,
                &analyst,
                &labelled,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(Change {
        state,
        note,
        analyst: analyst.to_string(),
        labelled,
        at: row.get(0),
    })
}

/// The state of each triaged finding of a run (findings not here are new).
pub async fn states(pool: &Pool, run_id: Uuid) -> Result<HashMap<String, TriageState>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT DISTINCT ON (finding_id) finding_id, state
               FROM finding_triage WHERE run_id = $1
              ORDER BY finding_id, id DESC",
            &[&run_id],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.get(0), state_of(r.get(1))?)))
        .collect()
}

/// A finding's changes, newest first.
pub async fn history(pool: &Pool, run_id: Uuid, finding_id: &str) -> Result<Vec<Change>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT state, note, analyst, labelled, at FROM finding_triage
              WHERE run_id = $1 AND finding_id = $2 ORDER BY id DESC",
            &[&run_id, &finding_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Change {
                state: state_of(r.get(0))?,
                note: r.get(1),
                analyst: r.get(2),
                labelled: r.get(3),
                at: r.get(4),
            })
        })
        .collect()
}
