//! The shipped Job and CronJob, run exactly as their manifests say, against
//! a pipeline whose reconciler has already ingested every RAW object (the
//! case in which "every object not yet ingested" has nothing to do): the
//! backfill Job re-runs them as a new run, the nightly retrain trains on
//! the SILVER partitions already there. Both must succeed.

use std::time::Duration;

use nadir_e2e::World;
use serde_json::Value;
use uuid::Uuid;

/// The `command` and `args` of the one container of a manifest, as the
/// JSON-style flow sequences the manifests write them in.
fn command_line(manifest: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/jobs")
        .join(manifest);
    let text = std::fs::read_to_string(&path).unwrap();
    let field = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{manifest} has no {name}"));
        serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("{manifest}: {name} is not a flow sequence: {e}"))
    };
    let mut line = field("command");
    line.extend(field("args"));
    line
}

/// Runs a manifest's command line with the world's settings; its run id.
fn run_manifest(world: &World, manifest: &str) -> Uuid {
    let line = command_line(manifest);
    assert_eq!(line[0], "nadir", "{manifest}: {line:?}");
    let args: Vec<&str> = line[1..].iter().map(String::as_str).collect();
    let output = world.cli(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{manifest} ({line:?}) failed:\n{stdout}{}\nworker logs in {}",
        String::from_utf8_lossy(&output.stderr),
        world.logs.display()
    );
    stdout
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no run id in: {stdout}"))
}

async fn count(world: &World, table: &str, run_id: Uuid) -> i64 {
    world
        .count(
            &format!("SELECT count(*) FROM {table} WHERE run_id = $1"),
            &[&run_id],
        )
        .await
}

#[tokio::test]
async fn the_shipped_job_and_cronjob_succeed_once_everything_is_ingested() {
    let world = World::new("jobs").await;
    let _workers = world.spawn_all();
    let captures = [("site-a/monday.csv", 11), ("site-b/monday.csv", 12)];
    let mut first_runs = Vec::new();
    for (key, seed) in captures {
        let bytes = nadir_flows::sample::flow_csv(800, seed).into_bytes();
        let (_, run_id) = world.drop_raw(key, bytes).await;
        first_runs.push(run_id);
    }
    for run_id in &first_runs {
        let run = world.wait_run(*run_id, Duration::from_secs(180)).await;
        assert_eq!(run.status, "succeeded", "the reconciler's run: {run:?}");
    }
    // What the old Job did (every object not yet ingested) now has nothing
    // to do, and says so.
    let nothing = world.cli(&["start", "--wait", "--timeout", "120"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&nothing.stdout),
        String::from_utf8_lossy(&nothing.stderr)
    );
    assert!(!nothing.status.success(), "{said}");
    assert!(said.contains("no RAW objects to ingest"), "{said}");

    // The Job: a backfill of everything, ingested before or not.
    let backfill = run_manifest(&world, "pipeline-run.yaml");
    assert!(!first_runs.contains(&backfill));
    assert_eq!(count(&world, "ingestions", backfill).await, 2);
    assert_eq!(count(&world, "transformations", backfill).await, 2);
    assert_eq!(count(&world, "evaluations", backfill).await, 1);

    // The CronJob: a retrain on the last 24 hours of SILVER, no RAW object.
    let retrain = run_manifest(&world, "pipeline-run-cronjob.yaml");
    assert_eq!(count(&world, "evaluations", retrain).await, 1);
    let reused = world
        .query(
            "SELECT parameters FROM transformations WHERE run_id = $1",
            &[&retrain],
        )
        .await;
    assert_eq!(reused.len(), 2, "both partitions of the last day");
    for row in &reused {
        let parameters: Value = row.get(0);
        assert_eq!(parameters["reused_by"], "retrain", "{parameters}");
    }
    let ingest = world
        .query(
            "SELECT item, metrics FROM ingestions WHERE run_id = $1",
            &[&retrain],
        )
        .await;
    assert_eq!(ingest.len(), 1);
    assert_eq!(ingest[0].get::<_, String>(0), "retrain");
    let trained = world
        .query(
            "SELECT parameters FROM trainings WHERE run_id = $1 AND status = 'succeeded'",
            &[&retrain],
        )
        .await;
    assert!(!trained.is_empty(), "models were fitted");
    let report = world.wait_run(retrain, Duration::from_secs(10)).await;
    assert_eq!(report.status, "succeeded");
    let rows = report.report.unwrap()["summary"]["rows"].clone();
    assert!(
        rows.as_u64().unwrap() > 0,
        "evaluated on the hold-out: {rows}"
    );

    // A retrain's reuse is no new partition: a second one finds the same two.
    let again = run_manifest(&world, "pipeline-run-cronjob.yaml");
    assert_eq!(count(&world, "transformations", again).await, 2);
}

/// Every stage job of `run_id` done once, by its first attempt; one audit
/// row per object in ingest and transform, one evaluation.
async fn assert_once(world: &World, run_id: Uuid, objects: i64) {
    let jobs = world
        .query(
            "SELECT stage, status, attempts FROM stage_jobs WHERE run_id = $1",
            &[&run_id],
        )
        .await;
    let jobs: Vec<(String, String, i32)> = jobs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    assert!(
        jobs.iter().all(|(_, s, a)| s == "succeeded" && *a == 1),
        "{jobs:?}"
    );
    assert_eq!(count(world, "ingestions", run_id).await, objects);
    assert_eq!(count(world, "transformations", run_id).await, objects);
    assert_eq!(count(world, "evaluations", run_id).await, 1);
}

#[tokio::test]
async fn nadir_pipeline_runs_a_capture_alone_and_beside_the_workers() {
    let world = World::new("one-pod").await;
    let config = nadir_trafficgen::Config {
        hosts: 12,
        duration_s: 60,
        ..Default::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
    world
        .store
        .put(
            &world.config.buckets.raw,
            "pod/a.pcap",
            pcap.into(),
            "application/vnd.tcpdump.pcap",
        )
        .await
        .unwrap();

    // No worker runs: the one process does all four stages.
    let alone = world.cli(&["pipeline", "pod/a.pcap", "--timeout", "300"]);
    let said = String::from_utf8_lossy(&alone.stdout).into_owned();
    assert!(
        alone.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    let first: Uuid = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(said.contains(&format!("run {first} done")), "{said}");
    assert_once(&world, first, 1).await;

    // Beside running workers: whoever takes a job, it is done once.
    let _workers = world.spawn_all();
    let beside = world.cli(&[
        "pipeline",
        "--mode",
        "backfill",
        "--prefix",
        "pod/",
        "--timeout",
        "300",
    ]);
    let said = String::from_utf8_lossy(&beside.stdout).into_owned();
    assert!(
        beside.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&beside.stderr)
    );
    let second: Uuid = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(first, second);
    assert_once(&world, second, 1).await;
    // The workers' reconciler found nothing new: the object was seen.
    assert_eq!(
        world.count("SELECT count(*) FROM pipeline_runs", &[]).await,
        2
    );

    // A run that fails ends the process with 1 and the reason.
    let failed = world.cli(&["pipeline", "pod/missing.pcap", "--timeout", "120"]);
    assert_eq!(failed.status.code(), Some(1));
    let said = String::from_utf8_lossy(&failed.stdout);
    assert!(said.contains("failed in ingest"), "{said}");
}
