//! Findings from `nadir analyze`: a benign day learned, a day with every
//! generated attack judged, and what the analyst would see first.
//!
//! Needs no service (analyze runs the stage cores on local files), only
//! the workspace's binaries.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use nadir_e2e::bin_dir;
use polars::prelude::*;
use serde_json::Value;
use uuid::Uuid;

fn nadir(args: &[&str]) -> std::process::Output {
    let out = Command::new(bin_dir().join("nadir"))
        .args(args)
        .output()
        .expect("nadir runs");
    assert!(
        out.status.success(),
        "nadir {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read_parquet(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().unwrap()
}

fn texts(frame: &DataFrame, column: &str) -> Vec<String> {
    frame
        .column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_generated_attack_is_one_ranked_explained_finding() {
    let dir = std::env::temp_dir().join(format!("nadir-findings-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (baseline, day, out) = (
        dir.join("baseline.pcap"),
        dir.join("day.pcap"),
        dir.join("out"),
    );
    let none = "syn_scan=0,connect_scan=0,syn_flood=0,ssh_bruteforce=0,dns_tunnel=0,c2_beacon=0,exfiltration=0";
    nadir(&[
        "gen-capture",
        "-o",
        baseline.to_str().unwrap(),
        "--duration",
        "180",
        "--hosts",
        "20",
        "--seed",
        "3",
        "--attacks",
        none,
    ]);
    nadir(&[
        "gen-capture",
        "-o",
        day.to_str().unwrap(),
        "--duration",
        "180",
        "--hosts",
        "20",
        "--seed",
        "4",
    ]);
    // The same analysis twice: as JSON, and as the table a user reads.
    let analyze = |json: bool| {
        let mut args = vec![
            "analyze",
            "--train",
            baseline.to_str().unwrap(),
            "--eval",
            day.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        nadir(&args)
    };
    let analyzed = analyze(true);
    let report: Value = serde_json::from_slice(&analyzed.stdout).unwrap();
    let version = report["version"].as_str().unwrap();
    let findings = read_parquet(&out.join(format!("eval/{version}/findings.parquet")));
    let scores = read_parquet(&out.join(format!("eval/{version}/scores.parquet")));

    // The columns DESIGN.md fixes, in rank order.
    let names: Vec<String> = findings
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "finding_id",
            "kind",
            "src",
            "peer",
            "first_seen",
            "last_seen",
            "flows",
            "bytes",
            "score",
            "severity",
            "detectors",
            "evidence_flow_ids",
            "explanation"
        ]
    );
    let score: Vec<f64> = findings
        .column("score")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(
        score.windows(2).all(|w| w[0] >= w[1]),
        "ranked by score: {score:?}"
    );
    assert!(score.iter().all(|s| (0.0..=1.0).contains(s)));
    let ids = texts(&findings, "finding_id");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "finding ids are unique"
    );

    // Each planted attack is one finding of its kind, near the top, explained.
    let kinds = texts(&findings, "kind");
    let explanations = texts(&findings, "explanation");
    let top: Vec<&str> = kinds.iter().take(10).map(String::as_str).collect();
    for kind in [
        "scan",
        "flood",
        "brute_force",
        "beacon",
        "dns_tunnel",
        "exfiltration",
    ] {
        assert!(
            top.contains(&kind),
            "{kind} not among the first ten findings: {top:?}\n{explanations:#?}"
        );
    }
    let scans = kinds.iter().filter(|k| *k == "scan").count();
    assert_eq!(
        scans, 2,
        "a SYN scan and a connect scan, one finding each: {kinds:?}"
    );
    let flows: Vec<u64> = findings
        .column("flows")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let scan_row = kinds.iter().position(|k| k == "scan").unwrap();
    assert!(
        flows[scan_row] >= 90,
        "a scan of 100 ports is one finding of its flows: {}",
        flows[scan_row]
    );
    assert!(
        explanations[scan_row].contains("ports of") && explanations[scan_row].contains("refused"),
        "{}",
        explanations[scan_row]
    );

    // The benign day is the baseline: the thresholds are held against what
    // each host did in it, and the explanations say so.
    assert_eq!(
        report["baseline"]["partitions"].as_array().unwrap().len(),
        1
    );
    assert_eq!(report["baseline"]["hosts"].as_u64(), Some(20));
    assert!(
        explanations[scan_row].contains("this host is not in the training window"),
        "the scanner is new: {}",
        explanations[scan_row]
    );
    let exfil_row = kinds.iter().position(|k| k == "exfiltration").unwrap();
    assert!(
        explanations[exfil_row].contains("typical for this host (its most in the training window"),
        "{}",
        explanations[exfil_row]
    );

    // Evidence points at flows of scores.parquet.
    let known: BTreeSet<u64> = scores
        .column("flow_id")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let attack: BTreeSet<u64> = scores
        .column("flow_id")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .zip(texts(&scores, "label"))
        .filter(|(_, label)| !label.is_empty() && label != "benign")
        .map(|(id, _)| id)
        .collect();
    let evidence = findings
        .column("evidence_flow_ids")
        .unwrap()
        .list()
        .unwrap()
        .clone();
    for (row, ids) in evidence.amortized_iter().enumerate() {
        let ids: Vec<u64> = ids
            .unwrap()
            .as_ref()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(ids.len() as u64, flows[row]);
        assert!(
            ids.iter().all(|id| known.contains(id)),
            "row {row}: evidence outside scores.parquet"
        );
        // The first five are attacks: most of their evidence is labelled so.
        if row < 5 {
            let attacks = ids.iter().filter(|id| attack.contains(id)).count();
            assert!(
                attacks * 2 > ids.len(),
                "finding {row} ({}: {}) is mostly benign flows",
                kinds[row],
                explanations[row]
            );
        }
    }
    assert!(
        findings.height() < 25,
        "{} findings on a 3-minute, 20-host day: {kinds:?}",
        findings.height()
    );

    // The report carries the summary, and analyze's table prints it first.
    let summary = &report["findings_summary"];
    assert_eq!(
        summary["findings"].as_u64().unwrap() as usize,
        findings.height()
    );
    assert_eq!(
        summary["top"][0]["finding_id"],
        Value::String(ids[0].clone())
    );
    let table = analyze(false);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("findings {}", findings.height())),
        "{text}"
    );
    assert!(text.contains(&explanations[0]), "{text}");

    // Trained on the day it judges, a run has no baseline: its scan would
    // raise its own threshold.
    let alone = nadir(&[
        "analyze",
        day.to_str().unwrap(),
        "-o",
        dir.join("alone").to_str().unwrap(),
        "--json",
    ]);
    let alone: Value = serde_json::from_slice(&alone.stdout).unwrap();
    assert!(
        alone.get("baseline").is_none(),
        "{:?}",
        alone.get("baseline")
    );
    let top = &alone["findings_summary"]["top"];
    assert!(
        top.as_array().unwrap().iter().any(|f| f["kind"] == "scan"
            && f["explanation"]
                .as_str()
                .unwrap()
                .contains("typical in this run")),
        "{top:#}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
