//! Findings' triage and suppression rules against a real PostgreSQL: a
//! verdict labels the finding's evidence flows for the next evaluation,
//! and rules are versioned, expire, and can be read as they stood.

use chrono::{Duration, Utc};
use nadir_contract::findings::{Finding, FindingKind, Severity};
use nadir_contract::suppression::{Matcher, hidden_by};
use nadir_contract::triage::TriageState;
use nadir_db::suppression::{self, NewRule};
use nadir_db::{feedback, triage};
use nadir_e2e::World;
use uuid::Uuid;

fn finding(kind: FindingKind, src: &str, peer: &str) -> Finding {
    Finding {
        finding_id: format!("{kind}-{src}"),
        kind,
        src: src.into(),
        peer: peer.into(),
        first_seen_ns: 0,
        last_seen_ns: 0,
        flows: 2,
        bytes: 10,
        score: 0.7,
        severity: Severity::High,
        detectors: vec![kind.name().into()],
        evidence_flow_ids: vec![1, 2],
        explanation: String::new(),
    }
}

#[tokio::test]
async fn verdicts_label_evidence_and_rules_are_versioned() {
    let world = World::new("triage").await;
    let db = &world.db;
    let run_id = Uuid::new_v4();
    world
        .query(
            "INSERT INTO pipeline_runs (run_id, trigger, request, status, stage)
             VALUES ($1, 'test', '{}', 'succeeded', 'eval')",
            &[&run_id],
        )
        .await;
    let evidence = vec![
        ("20261202T000000Z".to_string(), 1u64),
        ("20261202T000000Z".to_string(), 2),
    ];

    // Acknowledging labels nothing; a false positive labels every evidence
    // flow benign, and the history keeps both, newest first.
    let ack = triage::set(
        db,
        run_id,
        "f1",
        TriageState::Acknowledged,
        "looking",
        "ana",
        &evidence,
    )
    .await
    .unwrap();
    assert_eq!(ack.labelled, 0);
    let fp = triage::set(
        db,
        run_id,
        "f1",
        TriageState::FalsePositive,
        "backup job",
        "ana",
        &evidence,
    )
    .await
    .unwrap();
    assert_eq!(fp.labelled, 2);
    let states = triage::states(db, run_id).await.unwrap();
    assert_eq!(states.get("f1"), Some(&TriageState::FalsePositive));
    let history = triage::history(db, run_id, "f1").await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.state).collect::<Vec<_>>(),
        [TriageState::FalsePositive, TriageState::Acknowledged]
    );
    assert_eq!(history[0].note, "backup job");
    let labels = feedback::labels(db, &["20261202T000000Z".into()], None)
        .await
        .unwrap();
    assert_eq!(labels.get(&("20261202T000000Z".into(), 1)), Some(&false));
    assert_eq!(labels.get(&("20261202T000000Z".into(), 2)), Some(&false));
    // Confirming it later makes the same flows attacks.
    triage::set(
        db,
        run_id,
        "f1",
        TriageState::Confirmed,
        "",
        "bob",
        &evidence,
    )
    .await
    .unwrap();
    let labels = feedback::labels(db, &["20261202T000000Z".into()], None)
        .await
        .unwrap();
    assert_eq!(labels.get(&("20261202T000000Z".into(), 1)), Some(&true));

    // Rules: checked, versioned, removable, expiring.
    let bad = suppression::add(
        db,
        &NewRule {
            matcher: Matcher::Cidr,
            pattern: "10.0.0.0/33".into(),
            kind: None,
            owner: "soc".into(),
            reason: "x".into(),
            expires_at: None,
        },
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("10.0.0.0/33"), "{bad}");
    let before = Utc::now();
    let domain = suppression::add(
        db,
        &NewRule {
            matcher: Matcher::Domain,
            pattern: "*.example.org".into(),
            kind: Some(FindingKind::Beacon),
            owner: "soc".into(),
            reason: "our CDN".into(),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let expiring = suppression::add(
        db,
        &NewRule {
            matcher: Matcher::Port,
            pattern: "123".into(),
            kind: None,
            owner: "soc".into(),
            reason: "NTP for a day".into(),
            expires_at: Some(Utc::now() + Duration::days(1)),
        },
    )
    .await
    .unwrap();
    assert_eq!(domain.version, 1);
    let now = suppression::in_force(db, Utc::now()).await.unwrap();
    assert_eq!(
        now.iter().map(|r| r.id).collect::<Vec<_>>(),
        [domain.id, expiring.id]
    );
    let beacon = finding(FindingKind::Beacon, "10.0.1.3", "cdn.example.org");
    assert_eq!(
        hidden_by(&now, &beacon, Utc::now()).map(|r| r.id),
        Some(domain.id)
    );
    // Tomorrow the NTP rule has expired.
    let tomorrow = suppression::in_force(db, Utc::now() + Duration::days(2))
        .await
        .unwrap();
    assert_eq!(
        tomorrow.iter().map(|r| r.id).collect::<Vec<_>>(),
        [domain.id]
    );

    let removed = suppression::remove(db, domain.id, "bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.version, 2);
    assert!(
        suppression::remove(db, domain.id, "bob")
            .await
            .unwrap()
            .is_none()
    );
    let after = suppression::in_force(db, Utc::now()).await.unwrap();
    assert_eq!(
        after.iter().map(|r| r.id).collect::<Vec<_>>(),
        [expiring.id]
    );
    // As they stood before: neither rule yet.
    assert!(suppression::in_force(db, before).await.unwrap().is_empty());
    let history = suppression::history(db).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(history[0].removed && history[0].changed_by == "bob");
}
