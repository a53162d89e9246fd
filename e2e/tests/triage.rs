//! Findings' triage and suppression rules against a real PostgreSQL: a
//! verdict labels the finding's evidence flows for the next evaluation,
//! and rules are versioned, expire, and can be read as they stood. Then
//! the loop over a real pipeline run: its findings shown by `nadir
//! findings`, a rule added afterwards hides one of them in that earlier
//! run, and a confirmed finding's evidence is labelled attack in the next
//! evaluation of the same capture.

use chrono::{Duration, Utc};
use nadir_contract::findings::{Finding, FindingKind, Severity};
use nadir_contract::layout::{ArtifactRef, Manifest};
use nadir_contract::suppression::{Matcher, hidden_by};
use nadir_contract::triage::TriageState;
use nadir_db::suppression::{self, NewRule};
use nadir_db::{feedback, triage};
use nadir_e2e::World;
use nadir_trafficgen::Attack;
use serde_json::Value;
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

fn cli_json(world: &World, args: &[&str]) -> Value {
    let out = world.cli(args);
    assert!(
        out.status.success(),
        "nadir {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "nadir {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What a run's eval stage wrote (report, scores, findings, manifest).
async fn eval_outputs(world: &World, run_id: Uuid) -> Vec<ArtifactRef> {
    let outputs: Value = world
        .query(
            "SELECT outputs FROM evaluations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    serde_json::from_value(outputs).unwrap()
}

/// The eval manifest's recorded suppression rules of a run.
async fn rules_recorded(world: &World, run_id: Uuid) -> Vec<Value> {
    let manifest = eval_outputs(world, run_id)
        .await
        .into_iter()
        .find(|a| a.key.ends_with("manifest.json"))
        .expect("eval records its manifest");
    let bytes = world.store.get_artifact(&manifest).await.unwrap();
    let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
    manifest.parameters["suppression_rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A run's eval report, read from EVAL and checked.
async fn eval_report(world: &World, run_id: Uuid) -> Value {
    let report_ref = eval_outputs(world, run_id).await.remove(0);
    serde_json::from_slice(&world.store.get_artifact(&report_ref).await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_real_runs_findings_are_suppressed_after_the_fact_and_verdicts_label_the_next_run() {
    let world = World::new("triage-loop").await;
    let _workers = world.spawn_all();
    // A capture with no ground truth: only an analyst can label it.
    let config = nadir_trafficgen::Config {
        hosts: 20,
        duration_s: 120,
        sessions_per_host_minute: 12.0,
        attacks: [Attack::SynScan, Attack::SshBruteForce]
            .into_iter()
            .map(|a| (a, 1))
            .collect(),
        ..Default::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
    let (_, first) = world.drop_raw("site/day.pcap", pcap).await;
    let run = world
        .wait_run(first, std::time::Duration::from_secs(240))
        .await;
    assert_eq!(run.status, "succeeded", "{:?}", run.error);
    assert!(rules_recorded(&world, first).await.is_empty());

    // No label and no verdict: the champion is chosen on attacks planted
    // among the run's flows, which reach no artifact.
    let report = eval_report(&world, first).await;
    assert_eq!(report["labelled"], false);
    assert_eq!(
        report["selection_evidence"], "planted_attacks",
        "{:#}",
        report["selection"]
    );
    assert_eq!(report["selection"]["action"], "promote");
    assert!(
        report["selection"]["reason"]
            .as_str()
            .unwrap()
            .contains("planted")
    );
    let planted = &report["planted"];
    assert!(planted["flows"].as_u64().unwrap() > 50, "{planted:#}");
    assert_eq!(planted["kinds"].as_array().unwrap().len(), 7, "{planted:#}");
    let silver_rows = report["partitions"][0]["rows"].as_u64().unwrap();
    assert_eq!(
        report["rows"], silver_rows,
        "the planted flows are not scored as the run's"
    );
    assert_eq!(planted["background_flows"], silver_rows);
    for d in report["detectors"].as_array().unwrap() {
        let recall = d["planted"]["recall"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&recall), "{d:#}");
    }

    // The run's findings, as the queue shows them.
    let run_arg = first.to_string();
    let shown = cli_json(&world, &["findings", &run_arg, "--json"]);
    let findings = shown["findings"].as_array().unwrap().clone();
    let of_kind = |list: &[Value], kind: &str| -> Vec<Value> {
        list.iter()
            .filter(|f| f["finding"]["kind"] == kind)
            .cloned()
            .collect()
    };
    let scan = of_kind(&findings, "scan")
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("a scan finding: {shown:#}"));
    let brute = of_kind(&findings, "brute_force")
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("a brute-force finding: {shown:#}"));

    // A rule added now hides the scan in the run evaluated before it.
    let pair = format!(
        "{} {}",
        scan["finding"]["src"].as_str().unwrap(),
        scan["finding"]["peer"].as_str().unwrap()
    );
    let added = world.cli(&[
        "suppress",
        "add",
        "pair",
        &pair,
        "--kind",
        "scan",
        "--reason",
        "the weekly vulnerability scan",
        "--expires",
        "30d",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let refused = world.cli(&["suppress", "add", "cidr", "10.0.0.0/33", "--reason", "x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("10.0.0.0/33"));
    let after = cli_json(&world, &["findings", &run_arg, "--json"]);
    let after = after["findings"].as_array().unwrap().clone();
    assert_eq!(after.len(), findings.len() - 1, "the scan is hidden");
    assert!(
        of_kind(&after, "scan")
            .iter()
            .all(|f| f["finding"]["finding_id"] != scan["finding"]["finding_id"])
    );
    let all = cli_json(&world, &["findings", &run_arg, "--all", "--json"]);
    let hidden: Vec<&Value> = all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["hidden_by_rule"].is_null())
        .collect();
    assert_eq!(hidden.len(), 1);
    assert_eq!(
        hidden[0]["finding"]["finding_id"],
        scan["finding"]["finding_id"]
    );
    let listed = cli_json(&world, &["suppress", "list", "--json"]);
    assert_eq!(listed["rules"].as_array().unwrap().len(), 1);
    assert_eq!(listed["rules"][0]["hides"], 1, "{listed:#}");
    let rule_id = listed["rules"][0]["rule"]["id"].as_i64().unwrap();

    // The analyst confirms the brute force: its evidence flows become
    // attack labels, in the same transaction.
    let raw_version: String = world
        .query(
            "SELECT item FROM transformations WHERE run_id = $1 AND status = 'succeeded'",
            &[&first],
        )
        .await[0]
        .get(0);
    let evidence: Vec<(String, u64)> = brute["finding"]["evidence_flow_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| (raw_version.clone(), id.as_u64().unwrap()))
        .collect();
    assert!(!evidence.is_empty());
    let change = triage::set(
        &world.db,
        first,
        brute["finding"]["finding_id"].as_str().unwrap(),
        TriageState::Confirmed,
        "password spraying from the lab",
        "ana",
        &evidence,
    )
    .await
    .unwrap();
    assert_eq!(change.labelled as usize, evidence.len());
    let open = cli_json(&world, &["findings", &run_arg, "--json"]);
    assert_eq!(
        open["findings"].as_array().unwrap().len(),
        findings.len() - 2,
        "a confirmed finding is no longer open"
    );

    // The next evaluation of the same capture reads them as labels, and
    // records the rule in force.
    let started = world.cli(&["start", "site/day.pcap", "--wait", "--timeout", "240"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let out = String::from_utf8_lossy(&started.stdout).to_string();
    let second: Uuid = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let recorded = rules_recorded(&world, second).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["id"], rule_id);
    let outputs: Value = world
        .query(
            "SELECT outputs FROM evaluations WHERE run_id = $1",
            &[&second],
        )
        .await[0]
        .get(0);
    let report_ref: ArtifactRef = serde_json::from_value(outputs[0].clone()).unwrap();
    let report: Value =
        serde_json::from_slice(&world.store.get_artifact(&report_ref).await.unwrap()).unwrap();
    assert_eq!(report["labelled"], true, "{report:#}");
    assert_eq!(report["labelled_rows"], evidence.len());
    assert_eq!(report["attacks"], evidence.len());

    // Removing the rule brings the scan back, in both runs.
    let removed = world.cli(&["suppress", "remove", &rule_id.to_string()]);
    assert!(removed.status.success());
    let back = cli_json(&world, &["findings", &run_arg, "--all", "--json"]);
    assert!(
        back["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["hidden_by_rule"].is_null())
    );
    let again = world.cli(&["suppress", "remove", &rule_id.to_string()]);
    assert!(
        !again.status.success(),
        "a removed rule is not removed twice"
    );
}

#[tokio::test]
async fn an_earlier_capture_in_the_training_window_is_the_behavioural_baseline() {
    let world = World::new("baseline").await;
    let _workers = world.spawn_all_with(&[("NADIR_DETECTORS", "isolation_forest")]);
    let day = |seed: u64, attacks: Vec<(Attack, u32)>| {
        let config = nadir_trafficgen::Config {
            seed,
            hosts: 12,
            duration_s: 90,
            sessions_per_host_minute: 12.0,
            attacks,
            ..Default::default()
        };
        let (mut pcap, mut truth) = (Vec::new(), Vec::new());
        nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
        pcap
    };
    let timeout = std::time::Duration::from_secs(240);
    let (_, monday) = world.drop_raw("site/monday.pcap", day(1, vec![])).await;
    assert_eq!(world.wait_run(monday, timeout).await.status, "succeeded");
    let (_, tuesday) = world
        .drop_raw("site/tuesday.pcap", day(2, vec![(Attack::SynScan, 1)]))
        .await;
    assert_eq!(world.wait_run(tuesday, timeout).await.status, "succeeded");
    // Trained on the capture it judges: no baseline, the defaults judge.
    let alone = eval_report(&world, tuesday).await;
    assert!(alone.get("baseline").is_none(), "{:#}", alone["baseline"]);

    // Tuesday again with Monday in the training window: Monday is the
    // baseline, Tuesday (judged) is not part of it.
    let started = world.cli(&[
        "start",
        "site/tuesday.pcap",
        "--train-partitions",
        "2",
        "--wait",
        "--timeout",
        "240",
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let out = String::from_utf8_lossy(&started.stdout).to_string();
    let run: Uuid = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let report = eval_report(&world, run).await;
    let monday_version: String = world
        .query(
            "SELECT item FROM transformations WHERE run_id = $1 AND status = 'succeeded'",
            &[&monday],
        )
        .await[0]
        .get(0);
    assert_eq!(report["training_partitions"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["baseline"]["partitions"],
        serde_json::json!([monday_version]),
        "{:#}",
        report["baseline"]
    );
    let hosts = report["baseline"]["hosts"].as_u64().unwrap();
    assert!(hosts >= 12, "at least Monday's clients: {hosts}");
    let manifest = eval_outputs(&world, run)
        .await
        .into_iter()
        .find(|a| a.key.ends_with("manifest.json"))
        .unwrap();
    let manifest: Manifest =
        serde_json::from_slice(&world.store.get_artifact(&manifest).await.unwrap()).unwrap();
    assert_eq!(manifest.parameters["baseline"], report["baseline"]);
    // The model file keeps the baseline it was trained with.
    let trained: Value = world
        .query("SELECT outputs FROM trainings WHERE run_id = $1", &[&run])
        .await[0]
        .get(0);
    let model_ref: ArtifactRef = serde_json::from_value(trained[0].clone()).unwrap();
    let model: Value =
        serde_json::from_slice(&world.store.get_artifact(&model_ref).await.unwrap()).unwrap();
    assert_eq!(
        model["metadata"]["baseline"]["partitions"],
        serde_json::json!([monday_version])
    );

    // The scan is explained against Monday: its source was not there.
    let shown = cli_json(&world, &["findings", &run.to_string(), "--json"]);
    let scan = shown["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["finding"]["kind"] == "scan")
        .unwrap_or_else(|| panic!("a scan finding: {shown:#}"))
        .clone();
    let explanation = scan["finding"]["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("this host is not in the training window"),
        "{explanation}"
    );
}
