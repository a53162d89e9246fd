//! Suppression rules (`suppression_rules`), versioned: adding a rule writes
//! its version 1, removing it writes a last version marked removed, and
//! the rules in force at any time can be read back, for the findings shown
//! now and for the manifest of each evaluation.

use chrono::{DateTime, Utc};
use nadir_contract::findings::FindingKind;
use nadir_contract::suppression::{Matcher, Pattern, Rule};
use tokio_postgres::Row;

use crate::connection::{DbError, Pool};
use crate::safe;

/// Longest owner and reason kept, in bytes.
const TEXT_MAX: usize = 1_000;

/// A rule as an analyst asks for it.
#[derive(Debug, Clone)]
pub struct NewRule {
    pub matcher: Matcher,
    pub pattern: String,
    pub kind: Option<FindingKind>,
    pub owner: String,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A version of a rule, as its history lists it.
#[derive(Debug, Clone)]
pub struct Version {
    pub rule: Rule,
    pub removed: bool,
    pub changed_by: String,
}

const COLUMNS: &str =
    "rule_id, version, matcher, pattern, kind, owner, reason, expires_at, at, removed, changed_by";

fn version_of(r: &Row) -> Result<Version, DbError> {
    let matcher: String = r.get(2);
    let kind: Option<String> = r.get(4);
    Ok(Version {
        rule: Rule {
            id: r.get(0),
            version: r.get(1),
            matcher: matcher
                .parse()
                .map_err(|e| DbError::Config(format!("suppression_rules.matcher: {e}")))?,
            pattern: r.get(3),
            kind: kind.as_deref().and_then(FindingKind::parse),
            owner: r.get(5),
            reason: r.get(6),
            expires_at: r.get(7),
            at: r.get(8),
        },
        removed: r.get(9),
        changed_by: r.get(10),
    })
}

/// Checks and stores a new rule; returns it as stored.
pub async fn add(pool: &Pool, new: &NewRule) -> Result<Rule, DbError> {
    Pattern::parse(new.matcher, &new.pattern)
        .map_err(|e| DbError::Invalid(format!("suppression rule: {e}")))?;
    let owner = safe::bounded(new.owner.trim(), TEXT_MAX);
    let reason = safe::bounded(new.reason.trim(), TEXT_MAX);
    if owner.is_empty() || reason.is_empty() {
        return Err(DbError::Invalid(
            "a suppression rule needs an owner and a reason".into(),
        ));
    }
    let row = pool
        .get()
        .await?
        .query_one(
            &format!(
                "INSERT INTO suppression_rules
                     (rule_id, version, matcher, pattern, kind, owner, reason, expires_at, changed_by)
                 VALUES (nextval('suppression_rule_ids'), 1, $1, $2, $3, $4, $5, $6, $4)
                 RETURNING {COLUMNS}"
            ),
            &[
                &new.matcher.name(),
                &new.pattern.trim(),
                &new.kind.map(|k| k.name()),
                &owner,
                &reason,
                &new.expires_at,
            ],
        )
        .await?;
    Ok(version_of(&row)?.rule)
}

/// Ends a rule: its next version, marked removed by `by`. `None` when no
/// such rule is in force.
pub async fn remove(pool: &Pool, rule_id: i64, by: &str) -> Result<Option<Rule>, DbError> {
    let row = pool
        .get()
        .await?
        .query_opt(
            &format!(
                "INSERT INTO suppression_rules
                     (rule_id, version, matcher, pattern, kind, owner, reason, expires_at,
                      removed, changed_by)
                 SELECT rule_id, version + 1, matcher, pattern, kind, owner, reason, expires_at,
                        true, $2
                   FROM (SELECT * FROM suppression_rules WHERE rule_id = $1
                          ORDER BY version DESC LIMIT 1) newest
                  WHERE NOT removed
                 RETURNING {COLUMNS}"
            ),
            &[&rule_id, &safe::bounded(by, TEXT_MAX)],
        )
        .await?;
    row.map(|r| version_of(&r).map(|v| v.rule)).transpose()
}

/// The rules in force at `at`: each rule's newest version made by then, not
/// removed, not expired. Oldest rule first.
pub async fn in_force(pool: &Pool, at: DateTime<Utc>) -> Result<Vec<Rule>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            &format!(
                "SELECT {COLUMNS} FROM (
                     SELECT DISTINCT ON (rule_id) * FROM suppression_rules
                      WHERE at <= $1 ORDER BY rule_id, version DESC) newest
                  WHERE NOT removed AND (expires_at IS NULL OR expires_at > $1)
                  ORDER BY rule_id"
            ),
            &[&at],
        )
        .await?;
    rows.iter().map(|r| version_of(r).map(|v| v.rule)).collect()
}

/// Every version of every rule, newest first.
pub async fn history(pool: &Pool) -> Result<Vec<Version>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(
            &format!("SELECT {COLUMNS} FROM suppression_rules ORDER BY id DESC"),
            &[],
        )
        .await?;
    rows.iter().map(version_of).collect()
}
