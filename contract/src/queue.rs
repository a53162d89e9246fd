//! The findings queue: a run's findings as an analyst sees them, wherever
//! they are shown or exported (dashboard, `nadir findings`), with the
//! suppression rules in force applied and each finding's triage state.
//! Pure: findings, rules and states in; the queue out.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::findings::Finding;
use crate::suppression::{Rule, hidden_by};
use crate::triage::TriageState;

/// A finding in the queue.
#[derive(Debug, Clone, Copy)]
pub struct Queued<'a> {
    pub finding: &'a Finding,
    /// `new` until an analyst changes it.
    pub state: TriageState,
    /// The first rule in force that hides it.
    pub hidden_by: Option<&'a Rule>,
}

/// Every finding in rank order, with its state and the rule hiding it.
pub fn queue<'a>(
    findings: &'a [Finding],
    rules: &'a [Rule],
    states: &HashMap<String, TriageState>,
    now: DateTime<Utc>,
) -> Vec<Queued<'a>> {
    findings
        .iter()
        .map(|finding| Queued {
            finding,
            state: states
                .get(&finding.finding_id)
                .copied()
                .unwrap_or(TriageState::New),
            hidden_by: hidden_by(rules, finding, now),
        })
        .collect()
}

/// How many findings each rule hides (rules hiding none left out).
pub fn hidden_per_rule(queue: &[Queued<'_>]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for rule in queue.iter().filter_map(|q| q.hidden_by) {
        *counts.entry(rule.id).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::FindingKind;
    use crate::suppression::Matcher;

    fn finding(id: &str, src: &str, peer: &str) -> Finding {
        Finding {
            finding_id: id.into(),
            ..crate::findings::test_finding(FindingKind::Beacon, src, peer)
        }
    }

    #[test]
    fn rules_hide_and_states_join() {
        let now = Utc::now();
        let findings = [
            finding("a", "10.0.0.1", "updates.example.org"),
            finding("b", "10.0.0.2", "10.9.9.9:443"),
            finding("c", "10.0.0.3", "example.org"),
        ];
        let rule = |id, expires_at| Rule {
            id,
            version: 1,
            matcher: Matcher::Domain,
            pattern: "*.example.org".into(),
            kind: None,
            owner: "soc".into(),
            reason: "updates".into(),
            expires_at,
            at: now,
        };
        let rules = [
            rule(1, Some(now - chrono::Duration::hours(1))),
            rule(2, None),
        ];
        let states = HashMap::from([("b".to_string(), TriageState::FalsePositive)]);
        let q = queue(&findings, &rules, &states, now);
        let hidden: Vec<Option<i64>> = q.iter().map(|q| q.hidden_by.map(|r| r.id)).collect();
        assert_eq!(
            hidden,
            [Some(2), None, Some(2)],
            "the expired rule hides nothing"
        );
        assert_eq!(q[1].state, TriageState::FalsePositive);
        assert_eq!(q[0].state, TriageState::New);
        assert_eq!(hidden_per_rule(&q), BTreeMap::from([(2, 2)]));
    }
}
