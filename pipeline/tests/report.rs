//! Reports written before the report had types (by the eval worker of
//! commit c0a6595 in the end-to-end tests) read with the typed
//! `EvalReport` and write back the same JSON: the shape is the contract.

use nadir_pipeline::report::{Action, EvalReport, Role, RunFigures};
use serde_json::Value;

fn round_trip(name: &str) -> EvalReport {
    let path = format!("{}/tests/reports/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let report: EvalReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let original: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        original,
        "{name} does not write back as it was read"
    );
    report
}

#[test]
fn an_unlabelled_report_reads_and_writes_back_unchanged() {
    let report = round_trip("unlabelled.json");
    assert!(!report.labelled);
    assert_eq!(report.attacks, None);
    assert!(report.detectors.iter().all(|d| d.labelled.is_none()));
    assert_eq!(report.selection.action, Action::NoChampion);
    assert_eq!(report.detectors[0].metric("average_precision"), None);
}

#[test]
fn a_report_that_kept_its_champion_reads_and_writes_back_unchanged() {
    let report = round_trip("champion-kept.json");
    assert_eq!(report.selection.action, Action::Keep);
    let champion = report.detectors.iter().find(|d| d.is_champion()).unwrap();
    assert_eq!(champion.role, Role::Champion);
    assert!(champion.name.starts_with("champion_"));
    assert!(champion.metric(&report.selection_metric).is_some());
    let figures = RunFigures::of(&report);
    assert_eq!(figures.decision, Action::Keep);
    assert_eq!(figures.detectors.len(), report.detectors.len());
}

#[test]
fn a_capture_report_with_host_verdicts_reads_and_writes_back_unchanged() {
    let report = round_trip("capture-with-hosts.json");
    let group = report
        .detectors
        .iter()
        .find(|d| !d.hosts.is_empty())
        .expect("the group detector's hosts");
    assert!(!group.hosts[0].outlying.is_empty());
    let labelled = group.labelled.as_ref().unwrap();
    assert!(!labelled.by_attack_type.is_empty());
    assert!(
        report
            .training_profile
            .as_ref()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(!report.drift.is_empty());
}
