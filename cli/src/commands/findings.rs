//! The findings queue on the terminal: `nadir findings` shows a run's
//! findings as the dashboard does (suppression rules in force applied,
//! triage states joined); `nadir suppress add|list|remove` manages the
//! rules, `list` with how many findings each hides in recent runs.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use nadir_config::Config;
use nadir_contract::findings::{Finding, FindingKind};
use nadir_contract::layout::ArtifactRef;
use nadir_contract::queue::{self, Queued};
use nadir_contract::suppression::{Matcher, Rule};
use nadir_db::suppression::{self, NewRule};
use nadir_pipeline::report::EvalReport;
use nadir_store::ObjectStore;
use serde_json::Value;
use uuid::Uuid;

use super::{actor, detail};
use crate::output::{finding_line, print_json, shown};

/// The findings of a run whose `pipeline_runs.report` is `report`: read
/// from EVAL, checked against their recorded sha256. A run evaluated
/// before findings existed has none.
pub async fn of_run(store: &ObjectStore, report: &Value) -> anyhow::Result<Vec<Finding>> {
    let report_ref: ArtifactRef = serde_json::from_value(report["report"].clone())
        .context("the run's audit row names no report")?;
    let bytes = store.get_artifact(&report_ref).await?;
    let report: EvalReport =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", report_ref.uri()))?;
    let Some(findings_ref) = report.findings else {
        return Ok(Vec::new());
    };
    let bytes = store.get_artifact(&findings_ref).await?;
    nadir_pipeline::eval::findings::read_findings(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", findings_ref.uri()))
}

/// `nadir findings [RUN]`: the newest evaluated run when none is named.
pub async fn findings(
    config: &Config,
    run_id: Option<Uuid>,
    all: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let (run_id, report) = match run_id {
        Some(id) => {
            let run = nadir_db::runs::run(&db, id).await.map_err(detail)?;
            match run.and_then(|r| r.report) {
                Some(report) => (id, report),
                None => bail!("run {id} has no evaluation report (`nadir status {id}`)"),
            }
        }
        None => match nadir_db::runs::recent_reports(&db, 1)
            .await
            .map_err(detail)?
            .pop()
        {
            Some(newest) => newest,
            None => bail!("no run has been evaluated yet"),
        },
    };
    let store = ObjectStore::new(&config.s3);
    let found = of_run(&store, &report).await?;
    let now = Utc::now();
    let rules = suppression::in_force(&db, now).await.map_err(detail)?;
    let states = nadir_db::triage::states(&db, run_id)
        .await
        .map_err(detail)?;
    let queue = queue::queue(&found, &rules, &states, now);
    let shown_rows: Vec<&Queued> = queue
        .iter()
        .filter(|q| all || (q.hidden_by.is_none() && q.state.open()))
        .collect();
    if json {
        let rows: Vec<Value> = shown_rows
            .iter()
            .map(|q| {
                serde_json::json!({
                    "finding": q.finding,
                    "state": q.state,
                    "hidden_by_rule": q.hidden_by.map(|r| r.id),
                })
            })
            .collect();
        print_json(&serde_json::json!({ "run_id": run_id, "findings": rows }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let hidden = queue.iter().filter(|q| q.hidden_by.is_some()).count();
    let closed = queue
        .iter()
        .filter(|q| q.hidden_by.is_none() && !q.state.open())
        .count();
    println!(
        "run {run_id}: {} findings, {hidden} hidden by suppression rules, {closed} triaged and closed{}",
        queue.len(),
        if all { "" } else { " (--all shows them)" }
    );
    for (rank, q) in shown_rows.iter().take(limit).enumerate() {
        let f = q.finding;
        let mut marks = Vec::new();
        if q.state != nadir_contract::triage::TriageState::New {
            marks.push(q.state.words().to_string());
        }
        if let Some(rule) = q.hidden_by {
            marks.push(format!("hidden by rule {}", rule.id));
        }
        println!(
            "{}{}",
            finding_line(rank + 1, f.severity, f.score, f.kind, &f.src, &f.peer),
            if marks.is_empty() {
                String::new()
            } else {
                format!("  [{}]", marks.join(", "))
            }
        );
        println!("     {}", shown(&f.explanation));
        println!("     id {}", f.finding_id);
    }
    Ok(ExitCode::SUCCESS)
}

/// When a rule given as `--expires` ends: a date (the end of that day,
/// UTC), a time, or a number of days from now (`30d`).
pub fn expiry(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix('d').and_then(|d| d.parse::<u32>().ok()) {
        return Ok(now + chrono::Duration::days(days.into()));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let end = d.and_hms_opt(23, 59, 59).expect("a valid time of day");
        return Ok(end.and_utc());
    }
    bail!("--expires {text:?} is neither a date (2026-12-31), a time (RFC 3339) nor days (30d)")
}

pub struct Add {
    pub matcher: Matcher,
    pub pattern: String,
    pub kind: Option<FindingKind>,
    pub reason: String,
    pub owner: Option<String>,
    pub expires: Option<String>,
}

pub async fn add(config: &Config, add: Add) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let expires_at = add.expires.as_deref().map(|e| expiry(e, now)).transpose()?;
    if expires_at.is_some_and(|e| e <= now) {
        bail!("--expires is in the past: the rule would never apply");
    }
    let db = super::db(config)?;
    let rule = suppression::add(
        &db,
        &NewRule {
            matcher: add.matcher,
            pattern: add.pattern,
            kind: add.kind,
            owner: add.owner.unwrap_or_else(actor),
            reason: add.reason,
            expires_at,
        },
    )
    .await
    .map_err(detail)?;
    println!("rule {} added: {}", rule.id, shown(&rule.describe()));
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(config: &Config, rule_id: i64) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    match suppression::remove(&db, rule_id, &actor())
        .await
        .map_err(detail)?
    {
        Some(rule) => {
            println!("rule {rule_id} removed: {}", shown(&rule.describe()));
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("no suppression rule {rule_id} is in force (`nadir suppress list`)"),
    }
}

/// The rules in force, with how many findings each hides in the newest
/// `runs` evaluated runs.
pub async fn list(config: &Config, runs: i64, json: bool) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let now = Utc::now();
    let rules = suppression::in_force(&db, now).await.map_err(detail)?;
    let store = ObjectStore::new(&config.s3);
    let mut hidden: BTreeMap<i64, usize> = BTreeMap::new();
    let reports = nadir_db::runs::recent_reports(&db, runs)
        .await
        .map_err(detail)?;
    for (run_id, report) in &reports {
        let found = of_run(&store, report)
            .await
            .with_context(|| format!("reading the findings of run {run_id}"))?;
        let q = queue::queue(&found, &rules, &HashMap::new(), now);
        for (rule, n) in queue::hidden_per_rule(&q) {
            *hidden.entry(rule).or_insert(0) += n;
        }
    }
    if json {
        let rows: Vec<Value> = rules
            .iter()
            .map(|r| {
                serde_json::json!({ "rule": r, "hides": hidden.get(&r.id).copied().unwrap_or(0) })
            })
            .collect();
        print_json(&serde_json::json!({ "runs": reports.len(), "rules": rows }))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_rules(&rules, &hidden, reports.len());
    Ok(ExitCode::SUCCESS)
}

fn print_rules(rules: &[Rule], hidden: &BTreeMap<i64, usize>, runs: usize) {
    if rules.is_empty() {
        println!("no suppression rule is in force (`nadir suppress add`)");
        return;
    }
    println!(
        "{:>5}  {:<40} {:>6}  {:<20} {:<16} reason",
        "rule", "matches", "hides", "owner", "expires"
    );
    for r in rules {
        println!(
            "{:>5}  {:<40} {:>6}  {:<20} {:<16} {}",
            r.id,
            shown(&r.describe()),
            hidden.get(&r.id).copied().unwrap_or(0),
            shown(&r.owner),
            r.expires_at
                .map(|e| e.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "never".into()),
            shown(&r.reason)
        );
    }
    println!("(hides: findings hidden in the newest {runs} evaluated runs)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_read_as_dates_times_or_days() {
        let now = "2026-12-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            expiry("30d", now).unwrap(),
            "2026-12-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            expiry("2027-01-15", now).unwrap(),
            "2027-01-15T23:59:59Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            expiry("2027-01-15T08:00:00+01:00", now).unwrap(),
            "2027-01-15T07:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(expiry("soon", now).unwrap_err().to_string().contains("30d"));
    }
}
