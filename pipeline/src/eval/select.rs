//! The champion rule: which model a run's evaluation leaves as champion,
//! and the registry change that makes it so.

use nadir_contract::registry::RegistryChange;
use serde_json::json;

use crate::report::{Action, Decision, EvalReport};

/// The selection rule: with labels, the challenger with the best
/// `metric` (average precision by default; the first in the configured
/// order on a tie) is promoted if there is no champion or it beats the
/// champion's figure on the same flows; a challenger never replaces a
/// better or equal champion. Without figures the champion stays. `basis`
/// says, in the reason, what the figures were measured on.
pub fn select(
    metric: &str,
    basis: &str,
    challengers: &[(String, String, Option<f64>)],
    champion: Option<(&str, &str, Option<f64>)>,
) -> Decision {
    let name = metric.replace('_', " ");
    let best = challengers
        .iter()
        .filter_map(|(a, v, m)| m.map(|m| (a, v, m)))
        .fold(None::<(&String, &String, f64)>, |best, c| match best {
            Some(b) if b.2 >= c.2 => Some(b),
            _ => Some(c),
        });
    let current = champion.map(|(a, v, _)| (a.to_string(), v.to_string()));
    let Some((algorithm, version, value)) = best else {
        return Decision {
            action: if current.is_some() {
                Action::Keep
            } else {
                Action::NoChampion
            },
            reason: match &current {
                Some(_) => "no labelled flows in this run: the champion stays".into(),
                None => "no labelled flows in this run, no attacks could be planted among them, and no champion yet: promote one with `nadir promote`".into(),
            },
            champion: current,
            replaces: None,
        };
    };
    match champion {
        Some((a, v, Some(c))) if c >= value => Decision {
            action: Action::Keep,
            champion: current,
            reason: format!(
                "the champion {a} ({v}) has {name} {c:.4} {basis}; the best challenger, {algorithm}, has {value:.4}"
            ),
            replaces: None,
        },
        Some((a, v, Some(c))) => Decision {
            action: Action::Promote,
            champion: Some((algorithm.clone(), version.clone())),
            reason: format!(
                "{algorithm} has {name} {value:.4} {basis}, above the champion {a} ({v}) at {c:.4}"
            ),
            replaces: current,
        },
        Some((a, v, None)) => Decision {
            action: Action::Keep,
            champion: current,
            reason: format!(
                "the champion {a} ({v}) has no {name} on these flows to compare with; it stays (promote by hand)"
            ),
            replaces: None,
        },
        None => Decision {
            action: Action::Promote,
            champion: Some((algorithm.clone(), version.clone())),
            reason: format!(
                "no champion yet; {algorithm} has the best {name} {basis} ({value:.4})"
            ),
            replaces: None,
        },
    }
}

/// The registry change a report's decision makes, with the report's
/// metrics as evidence.
pub fn promotion(report: &EvalReport, feature_set: &str) -> Vec<RegistryChange> {
    let decision = &report.selection;
    let (Action::Promote, Some((algorithm, version))) = (decision.action, &decision.champion)
    else {
        return Vec::new();
    };
    let detectors: Vec<_> = report
        .detectors
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "version": d.version,
                "roc_auc": d.labelled.as_ref().and_then(|m| m.roc_auc),
                "average_precision": d.labelled.as_ref().and_then(|m| m.average_precision),
            })
        })
        .collect();
    vec![RegistryChange::Promote {
        feature_set: feature_set.to_string(),
        algorithm: algorithm.clone(),
        version: version.clone(),
        compared_with: decision.replaces.clone(),
        reason: decision.reason.clone(),
        metrics: json!({ "report": report.version, "detectors": detectors }),
    }]
}

#[cfg(test)]
mod selection_tests {
    use super::select;
    use crate::report::Action;

    fn c(a: &str, m: Option<f64>) -> (String, String, Option<f64>) {
        (a.into(), "v2".into(), m)
    }

    #[test]
    fn a_challenger_must_beat_the_champion_strictly() {
        let challengers = [
            c("isolation_forest", Some(0.8)),
            c("one_class_svm", Some(0.8)),
        ];
        let first = select(
            "average_precision",
            "on this run's flows",
            &challengers,
            None,
        );
        assert_eq!(first.action, Action::Promote);
        assert_eq!(
            first.champion.unwrap().0,
            "isolation_forest",
            "the first on a tie"
        );
        let tie = select(
            "average_precision",
            "on this run's flows",
            &challengers,
            Some(("lof", "v1", Some(0.8))),
        );
        assert_eq!(tie.action, Action::Keep);
        let better = select(
            "average_precision",
            "on this run's flows",
            &challengers,
            Some(("lof", "v1", Some(0.7))),
        );
        assert_eq!(
            (better.action, better.replaces),
            (Action::Promote, Some(("lof".into(), "v1".into())))
        );
        let unscored = select(
            "roc_auc",
            "on this run's flows",
            &challengers,
            Some(("lof", "v1", None)),
        );
        assert_eq!(unscored.action, Action::Keep);
        assert!(unscored.reason.contains("roc auc"), "{}", unscored.reason);
    }

    #[test]
    fn without_labels_the_champion_stays() {
        let unlabelled = [c("isolation_forest", None)];
        assert_eq!(
            select(
                "average_precision",
                "on this run's flows",
                &unlabelled,
                Some(("lof", "v1", None))
            )
            .action,
            Action::Keep
        );
        assert_eq!(
            select(
                "average_precision",
                "on this run's flows",
                &unlabelled,
                None
            )
            .action,
            Action::NoChampion
        );
    }
}
