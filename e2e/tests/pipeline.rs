//! The pipeline end to end: real worker processes, real NATS JetStream,
//! PostgreSQL and S3 (started by `scripts/test`).

use std::time::Duration;

use nadir_contract::layout::{Manifest, sha256_hex};
use nadir_contract::messages::{MinioEvent, subject};
use nadir_detectors::Model;
use nadir_e2e::World;
use nadir_trafficgen::Attack;
use nadir_trafficgen::raw::udp_pcap;
use serde_json::{Value, json};
use uuid::Uuid;

const STAGE_TABLES: [&str; 4] = ["ingestions", "transformations", "trainings", "evaluations"];
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The delivery tests on large files fit one fast detector: scoring 300 000
/// flows with every detector would stretch the eval window they time.
const ONE_DETECTOR: (&str, &str) = ("NADIR_DETECTORS", "isolation_forest");

/// Trainings rows of a run on flows without hosts and times: three models
/// and the group detector's "skipped" row.
const TRAININGS_CSV: i64 = 4;

fn sample(rows: usize) -> Vec<u8> {
    flow_csv_seeded(rows, 11)
}

fn flow_csv_seeded(rows: usize, seed: u64) -> Vec<u8> {
    nadir_flows::sample::flow_csv(rows, seed).into_bytes()
}

async fn rows_per_table(world: &World, run_id: Uuid) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in STAGE_TABLES {
        counts.push(
            world
                .count(
                    &format!("SELECT count(*) FROM {table} WHERE run_id = $1"),
                    &[&run_id],
                )
                .await,
        );
    }
    counts
}

/// Every key in a bucket.
async fn keys(world: &World, bucket: &str) -> Vec<String> {
    world
        .store
        .list(bucket, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// A MinIO `s3:ObjectCreated:Put` notification for an object, as MinIO's
/// NATS target publishes it (key URL-encoded, `+` for a space).
fn minio_event(bucket: &str, key: &str, etag: &str, size: usize) -> Vec<u8> {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    let event = json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("{bucket}/{encoded}"),
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-11-25T10:00:00.000Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "nadir"},
            "requestParameters": {"principalId": "nadir", "region": "", "sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "17A0B2C3D4E5F607"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "nadir"}, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": encoded, "size": size, "eTag": etag, "contentType": "text/csv", "userMetadata": {}, "sequencer": "17A0B2C3D4E5F608"}
            },
            "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}
        }]
    });
    let bytes = serde_json::to_vec(&event).unwrap();
    assert!(
        !MinioEvent::decode(&bytes)
            .unwrap()
            .created_objects()
            .unwrap()
            .is_empty()
    );
    bytes
}

/// Fetches an artifact a row or message refers to and checks its hash.
async fn fetch_checked(world: &World, artifact: &Value) -> bytes::Bytes {
    let (bucket, key) = (
        artifact["bucket"].as_str().unwrap(),
        artifact["key"].as_str().unwrap(),
    );
    let bytes = world.store.get(bucket, key).await.unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        artifact["sha256"].as_str().unwrap(),
        "sha256 of s3://{bucket}/{key}"
    );
    assert_eq!(
        bytes.len() as u64,
        artifact["size"].as_u64().unwrap(),
        "size of s3://{bucket}/{key}"
    );
    bytes
}

#[tokio::test]
async fn a_dropped_file_flows_through_the_four_stages() {
    let world = World::new("flow").await;
    let mut workers = world.spawn_all();
    let data = sample(3000);
    let (_, run_id) = world.drop_raw("sensor-a/flows.csv", data.clone()).await;

    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(
        run.trigger,
        subject::START,
        "s3s-fs sends no events: the reconciler started the run"
    );
    assert_eq!(
        rows_per_table(&world, run_id).await,
        [1, 1, TRAININGS_CSV, 1]
    );
    let statuses = world
        .query(
            "SELECT stage, status, attempts FROM stage_jobs WHERE run_id = $1 ORDER BY started_at",
            &[&run_id],
        )
        .await;
    let statuses: Vec<(String, String, i32)> = statuses
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(statuses.len(), 4);
    assert!(
        statuses.iter().all(|(_, s, a)| s == "succeeded" && *a == 1),
        "{statuses:?}"
    );

    // Ingest: fingerprint of the very bytes dropped, format by content.
    let ingest = &world
        .query(
            "SELECT metrics, outputs, inputs FROM ingestions WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let metrics: Value = ingest.get(0);
    assert_eq!(metrics["sha256"], sha256_hex(&data));
    assert_eq!(metrics["size"], data.len());
    assert_eq!(metrics["format"], "csv");
    let outputs: Value = ingest.get(1);
    let raw_manifest: Manifest =
        serde_json::from_slice(&fetch_checked(&world, &outputs[0]).await).unwrap();
    assert_eq!(raw_manifest.kind, nadir_contract::layout::ManifestKind::Raw);
    assert_eq!(raw_manifest.outputs[0].sha256, sha256_hex(&data));

    // Transform: a SILVER partition whose manifest names the RAW object.
    let transform = &world
        .query(
            "SELECT outputs, metrics FROM transformations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let outputs: Value = transform.get(0);
    let parquet = fetch_checked(&world, &outputs[0]).await;
    assert_eq!(&parquet[..4], b"PAR1");
    let silver_manifest: Manifest =
        serde_json::from_slice(&fetch_checked(&world, &outputs[1]).await).unwrap();
    assert_eq!(silver_manifest.inputs[0].key, "sensor-a/flows.csv");
    assert_eq!(silver_manifest.inputs[0].sha256, sha256_hex(&data));
    let metrics: Value = transform.get(1);
    assert_eq!(metrics["rows"], 3000);

    // Train: a model per detector, each with a manifest naming the SILVER
    // partition it was fitted on; the group detector is skipped on flows
    // without hosts and times, and says so.
    let trainings = world
        .query(
            "SELECT item, outputs, metrics FROM trainings WHERE run_id = $1 ORDER BY item",
            &[&run_id],
        )
        .await;
    let items: Vec<String> = trainings.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        items,
        [
            "host_group",
            "isolation_forest",
            "local_outlier_factor",
            "one_class_svm"
        ]
    );
    let skipped: Value = trainings[0].get(2);
    assert!(
        skipped["skipped"].as_str().unwrap().contains("hosts"),
        "{skipped}"
    );
    for row in &trainings[1..] {
        let outputs: Value = row.get(1);
        let model = Model::from_bytes(&fetch_checked(&world, &outputs[0]).await).unwrap();
        assert_eq!(model.algorithm(), row.get::<_, String>(0));
        let model_manifest: Manifest =
            serde_json::from_slice(&fetch_checked(&world, &outputs[1]).await).unwrap();
        assert_eq!(model_manifest.inputs[0], silver_manifest.outputs[0]);
        assert_eq!(
            model_manifest.parameters["spec"]["detector"]["params"]["seed"],
            42
        );
        let metrics: Value = row.get(2);
        assert_eq!(metrics["threshold"], model.threshold());
    }
    let ocsvm: Value = trainings[3].get(2);
    assert_eq!(
        ocsvm["fit"]["solver"], "exact",
        "3 000 rows are solved exactly"
    );

    // Eval: report and scores; the planted anomalies are found.
    let eval = &world
        .query(
            "SELECT outputs, metrics FROM evaluations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let outputs: Value = eval.get(0);
    let report: Value = serde_json::from_slice(&fetch_checked(&world, &outputs[0]).await).unwrap();
    fetch_checked(&world, &outputs[1]).await;
    fetch_checked(&world, &outputs[2]).await;
    assert_eq!(report["rows"], 3000);
    assert_eq!(report["attacks"], 3000 / nadir_flows::sample::ANOMALY_EVERY);
    let detectors = report["detectors"].as_array().unwrap();
    assert_eq!(detectors.len(), 3);
    let auc = |name: &str| {
        detectors.iter().find(|d| d["algorithm"] == name).unwrap()["roc_auc"]
            .as_f64()
            .unwrap()
    };
    assert!(
        auc("isolation_forest") > 0.95,
        "isolation forest ROC-AUC on planted anomalies: {}",
        auc("isolation_forest")
    );
    // The champion is the detector with the best average precision (the
    // first listed on a tie).
    let ap = |d: &Value| d["average_precision"].as_f64().unwrap();
    let best = detectors.iter().fold(
        &detectors[0],
        |best, d| if ap(d) > ap(best) { d } else { best },
    );
    assert_eq!(report["selection"]["action"], "promote");
    assert_eq!(report["selection"]["champion"][0], best["algorithm"]);
    for d in detectors {
        assert!(d["precision_at_k"]["value"].as_f64().is_some(), "{d}");
        assert!(d["recall_at_1pct_fpr"].as_f64().is_some(), "{d}");
        assert_eq!(
            d["histogram"]["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .sum::<u64>(),
            3000
        );
    }
    assert_eq!(
        report["agreement"].as_array().unwrap().len(),
        3,
        "three pairs of detectors"
    );
    assert!(!report["drift"].as_array().unwrap().is_empty());

    // The scores: every flow once, the flagged ones explained.
    let scores =
        nadir_flows::table::read_parquet(&fetch_checked(&world, &outputs[1]).await).unwrap();
    assert_eq!(scores.height(), 3000);
    let flagged = scores.column("flagged").unwrap().bool().unwrap();
    let explanation = scores.column("explanation").unwrap().str().unwrap();
    for (f, e) in flagged.iter().zip(explanation.iter()) {
        assert_eq!(
            f.unwrap(),
            e.is_some(),
            "exactly the flagged flows are explained"
        );
        if let Some(e) = e {
            let e: Value = serde_json::from_str(e).unwrap();
            let first = e.as_object().unwrap().values().next().unwrap();
            assert!(
                first[0]["feature"].is_string() && first[0]["typical"].is_number(),
                "{e}"
            );
        }
    }

    // The registry: three models, the best promoted by this run.
    let registered = world
        .query("SELECT algorithm FROM models ORDER BY algorithm", &[])
        .await;
    assert_eq!(registered.len(), 3);
    let champion = world
        .query(
            "SELECT algorithm, action, run_id FROM champion_history",
            &[],
        )
        .await;
    assert_eq!(champion.len(), 1);
    assert_eq!(
        champion[0].get::<_, String>(0),
        best["algorithm"].as_str().unwrap()
    );
    assert_eq!(champion[0].get::<_, Uuid>(2), run_id);

    // A changed recorded parameter no longer reproduces, and says where.
    world
        .query(
            "UPDATE trainings SET parameters = jsonb_set(parameters, '{spec,detector,params,seed}', '7')
              WHERE run_id = $1 AND item = 'isolation_forest'",
            &[&run_id],
        )
        .await;
    let replay = world.cli(&["reproduce", &run_id.to_string()]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(!replay.status.success(), "{text}");
    let model_line = text
        .lines()
        .find(|l| l.contains("isolation_forest/"))
        .unwrap();
    assert!(model_line.starts_with("DIFFERS    model s3://"), "{text}");
    assert!(
        text.contains("identical  model") && text.contains("local_outlier_factor/"),
        "{text}"
    );
    assert!(text.contains("identical  SILVER"), "{text}");

    // pipeline.done names the report.
    let done = world.messages_for(subject::DONE, run_id).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["report"], outputs[0]);
    assert_eq!(done[0]["schema"], 1);

    // The CLI reads the same trail.
    let status = world.cli(&["status", &run_id.to_string(), "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["run"]["status"], "succeeded");
    assert_eq!(
        status["stages"].as_array().unwrap().len(),
        3 + TRAININGS_CSV as usize,
        "one audit row per ingestion, transformation, training and evaluation"
    );

    // Every worker counted its job and is healthy and ready.
    for worker in &workers {
        let series = format!(
            "nadir_jobs_total{{outcome=\"succeeded\",stage=\"{}\"}}",
            worker.stage
        );
        assert_eq!(worker.metric(&series).await, 1.0, "{series}");
        assert_eq!(worker.http_get("/healthz").await.0, 200);
        let (code, body) = worker.http_get("/readyz").await;
        assert_eq!(code, 200, "{body}");
    }

    // SIGTERM: each worker stops pulling and exits 0.
    for worker in &mut workers {
        let status = worker.terminate(Duration::from_secs(20));
        assert!(status.success(), "{} exited with {status}", worker.stage);
    }
}

#[tokio::test]
async fn an_object_announced_by_an_event_and_the_reconciler_is_processed_once() {
    let world = World::new("twice").await;
    // A key that MinIO has to URL-encode: a space, a plus, parentheses.
    let key = "day one/flows+extra (1).csv";
    let data = sample(1500);
    let (etag, run_id) = world.drop_raw(key, data.clone()).await;
    // The event is on the stream before any worker runs: ingest sees it and
    // the reconciler's finding at nearly the same moment.
    let event = minio_event(
        &world.config.buckets.raw,
        key,
        &format!("\"{etag}\""),
        data.len(),
    );
    world
        .bus
        .publish(subject::MINIO_RAW, "event-1", event)
        .await
        .unwrap();
    let _workers = world.spawn_all();

    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    // Let the reconciler list the bucket a few more times.
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert_eq!(
        world.count("SELECT count(*) FROM pipeline_runs", &[]).await,
        1
    );
    assert_eq!(
        rows_per_table(&world, run_id).await,
        [1, 1, TRAININGS_CSV, 1]
    );
    let item: String = world.query("SELECT item FROM ingestions", &[]).await[0].get(0);
    assert_eq!(item, key, "the event's key was URL-decoded");
    assert_eq!(world.messages_for(subject::DONE, run_id).await.len(), 1);
    assert_eq!(
        world.messages_for(subject::TRANSFORM, run_id).await.len(),
        1
    );
    let reports = keys(&world, &world.config.buckets.eval).await;
    assert_eq!(
        reports
            .iter()
            .filter(|k| k.ends_with("report.json"))
            .count(),
        1,
        "{reports:?}"
    );
    let models = keys(&world, &world.config.buckets.models).await;
    assert_eq!(
        models.iter().filter(|k| k.ends_with("model.json")).count(),
        3,
        "one model per fitted detector, once: {models:?}"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_job_leaves_no_duplicates_and_the_run_completes() {
    let world = World::new("killed").await;
    let _ingest = world.spawn("ingest", &[]);
    let _transform = world.spawn("transform", &[]);
    let _train = world.spawn("train", &[ONE_DETECTOR]);
    let mut eval = world.spawn("eval", &[]);
    // Enough flows that scoring them takes a while in a debug build.
    let (_, run_id) = world.drop_raw("big.csv", sample(400_000)).await;

    // Kill the eval worker (SIGKILL) once it has taken up the job.
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let running = world
            .count(
                "SELECT count(*) FROM stage_jobs WHERE run_id = $1 AND stage = 'eval' AND status = 'running'",
                &[&run_id],
            )
            .await;
        if running == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "eval never started; logs in {}",
            world.logs.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eval.kill();
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM pipeline_runs WHERE run_id = $1 AND status = 'running'",
                &[&run_id]
            )
            .await,
        1,
        "the job was killed before it finished"
    );
    let _replacement = world.spawn("eval", &[]);

    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(rows_per_table(&world, run_id).await, [1, 1, 1, 1]);
    let attempts = eval_attempts(&world, run_id).await;
    assert_eq!(attempts, 2, "the redelivered job is the second attempt");
    let eval_keys = keys(&world, &world.config.buckets.eval).await;
    assert_eq!(
        eval_keys.len(),
        4,
        "one report, one scores file, one findings file, one manifest: {eval_keys:?}"
    );
    assert_eq!(world.messages_for(subject::DONE, run_id).await.len(), 1);
    assert!(world.messages_for(subject::DEAD, run_id).await.is_empty());
    // The killed attempt's objects are gone; everything recorded is there.
    let verified = world.cli(&["verify"]);
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        String::from_utf8_lossy(&verified.stdout)
            .contains("0 missing, 0 with another sha256; 0 objects no audit row names"),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

#[tokio::test]
async fn malformed_input_fails_its_run_readably_and_the_workers_keep_serving() {
    let world = World::new("malformed").await;
    let workers = world.spawn_all();

    // Not a format anyone knows: ingest fails the run.
    let elf = [0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0].repeat(8);
    let (_, bad_run) = world.drop_raw("capture.pcap", elf).await;
    let run = world.wait_run(bad_run, RUN_TIMEOUT).await;
    assert_eq!(run.status, "failed");
    assert_eq!(run.error_stage.as_deref(), Some("ingest"));
    let row = &world
        .query(
            "SELECT status, error FROM ingestions WHERE run_id = $1",
            &[&bad_run],
        )
        .await[0];
    assert_eq!(row.get::<_, String>(0), "failed");
    let error: String = row.get(1);
    assert!(
        error.contains("capture.pcap")
            && error.contains("unrecognised content")
            && error.contains("7f 45 4c 46"),
        "{error}"
    );
    let dead = world.messages_for(subject::DEAD, bad_run).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["stage"], "ingest");
    assert_eq!(dead[0]["error"], error.as_str());

    // A CSV with a typo in a numeric column: transform names the column and row.
    let mut csv = String::from_utf8(sample(200)).unwrap();
    csv = csv.replacen("\n0.", "\nzero.", 1);
    let (_, csv_run) = world.drop_raw("typo.csv", csv.into_bytes()).await;
    let run = world.wait_run(csv_run, RUN_TIMEOUT).await;
    assert_eq!(run.status, "failed");
    assert_eq!(run.error_stage.as_deref(), Some("transform"));
    let error = run.error.unwrap();
    assert!(
        error.contains("typo.csv")
            && error.contains("\"duration_s\"")
            && error.contains("not a number"),
        "{error}"
    );
    assert_eq!(world.messages_for(subject::DEAD, csv_run).await.len(), 1);

    // A message nobody can read: kept in the trail, dead-lettered, dropped.
    world
        .bus
        .publish(subject::TRANSFORM, "garbage-1", b"{not json".to_vec())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while world
        .count("SELECT count(*) FROM rejected_messages", &[])
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the unreadable message was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejected = &world
        .query("SELECT subject, error FROM rejected_messages", &[])
        .await[0];
    assert_eq!(rejected.get::<_, String>(0), subject::TRANSFORM);
    assert!(
        rejected
            .get::<_, String>(1)
            .contains("not valid JSON for pipeline.transform message")
    );

    // The same workers still serve the next, good run.
    let (_, good_run) = world.drop_raw("good.csv", sample(500)).await;
    let run = world.wait_run(good_run, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(
        rows_per_table(&world, good_run).await,
        [1, 1, TRAININGS_CSV, 1]
    );
    for worker in &workers {
        assert_eq!(
            worker.http_get("/healthz").await.0,
            200,
            "{} is still alive",
            worker.stage
        );
    }
    let ingest = &workers[0];
    assert_eq!(
        ingest
            .metric("nadir_jobs_total{outcome=\"failed\",stage=\"ingest\"}")
            .await,
        1.0
    );
    assert_eq!(
        workers[1]
            .metric("nadir_jobs_total{outcome=\"rejected\",stage=\"transform\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_worker_waits_for_its_services_alive_but_not_ready_and_stops_cleanly() {
    let world = World::new("unreachable").await;
    let mut worker = world.spawn("transform", &[("NADIR_NATS_URL", "nats://127.0.0.1:1")]);
    assert_eq!(worker.http_get("/healthz").await.0, 200);
    let (code, body) = worker.http_get("/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("still connecting"), "{body}");
    let status = worker.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_missing_setting_stops_a_worker_with_the_variable_named() {
    let world = World::new("misconfigured").await;
    let output = std::process::Command::new(nadir_e2e::bin_dir().join("nadir-ingest"))
        .env_clear()
        .envs(
            world
                .vars
                .iter()
                .filter(|(k, _)| k.as_str() != "NADIR_S3_SECRET_KEY"),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NADIR_S3_SECRET_KEY is not set"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&world.vars["NADIR_S3_ACCESS_KEY"]),
        "no credentials in the message: {stderr}"
    );
}

#[tokio::test]
async fn nadir_start_runs_named_objects_and_waits_for_the_outcome() {
    let world = World::new("start").await;
    let _workers: Vec<_> = ["ingest", "transform", "train", "eval"]
        .iter()
        .map(|s| world.spawn(s, &[("NADIR_RECONCILE_INTERVAL_SECS", "0")]))
        .collect();
    world.drop_raw("a.csv", sample(400)).await;
    world.drop_raw("b.csv", sample(600)).await;

    let output = world.cli(&["start", "a.csv", "b.csv", "--wait", "--timeout", "120"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_id: Uuid = stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(stdout.contains(&format!("run {run_id} done")), "{stdout}");

    // One run over both objects: two RAW objects, two partitions, models
    // fitted on both, one evaluation of all 1 000 flows.
    assert_eq!(
        rows_per_table(&world, run_id).await,
        [2, 2, TRAININGS_CSV, 1]
    );
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.trigger, subject::START);
    assert_eq!(run.report.unwrap()["summary"]["rows"], 1000);

    let runs = world.cli(&["runs", "--json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["run_id"], run_id.to_string());

    // A start naming an object that does not exist fails readably.
    let output = world.cli(&["start", "missing.csv", "--wait", "--timeout", "60"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("failed in ingest")
            && stdout.contains("missing.csv")
            && stdout.contains("does not exist"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_stage_that_cannot_reach_s3_waits_and_the_run_completes_once_it_can() {
    let world = World::new("retries").await;
    let _others: Vec<_> = ["ingest", "train", "eval"]
        .iter()
        .map(|s| world.spawn(s, &[ONE_DETECTOR]))
        .collect();
    // Transform's S3 endpoint is a closed port: it is not ready, so it
    // does not pull, and the run waits rather than failing.
    let blind = world.spawn("transform", &[("NADIR_S3_ENDPOINT", "http://127.0.0.1:9")]);
    let (_, run_id) = world.drop_raw("flows.csv", sample(300)).await;
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while world
        .count(
            "SELECT count(*) FROM stage_jobs WHERE run_id = $1 AND stage = 'ingest' AND status = 'succeeded'",
            &[&run_id],
        )
        .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "ingest never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(audit_status(&world, run_id).await, "running");
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM stage_jobs WHERE run_id = $1 AND stage = 'transform'",
                &[&run_id],
            )
            .await,
        0,
        "a stage that cannot reach S3 takes no job"
    );
    let (status, body) = blind.http_get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("s3"), "{body}");
    drop(blind);

    let _transform = world.spawn("transform", &[ONE_DETECTOR]);
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(rows_per_table(&world, run_id).await, [1, 1, 1, 1]);
}

/// Starts a run on a large file and returns once its eval job is running.
async fn run_until_eval_is_working(world: &World) -> Uuid {
    let (_, run_id) = world.drop_raw("large.csv", sample(300_000)).await;
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while world
        .count(
            "SELECT count(*) FROM stage_jobs WHERE run_id = $1 AND stage = 'eval' AND status = 'running'",
            &[&run_id],
        )
        .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "eval never started; logs in {}", world.logs.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run_id
}

#[tokio::test]
async fn sigterm_lets_the_job_in_hand_finish_within_the_grace_period() {
    let world = World::new("graceful").await;
    let _others: Vec<_> = ["ingest", "transform", "train"]
        .iter()
        .map(|s| world.spawn(s, &[ONE_DETECTOR]))
        .collect();
    let mut eval = world.spawn("eval", &[("NADIR_SHUTDOWN_GRACE_SECS", "120")]);
    let run_id = run_until_eval_is_working(&world).await;

    let status = eval.terminate(Duration::from_secs(120));
    assert!(status.success(), "exit status {status}");
    // The job finished before the worker exited: nothing was handed back.
    let run = world.wait_run(run_id, Duration::from_secs(5)).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    let attempts = eval_attempts(&world, run_id).await;
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn sigterm_hands_the_job_back_when_the_grace_period_is_over() {
    let world = World::new("handback").await;
    let _others: Vec<_> = ["ingest", "transform", "train"]
        .iter()
        .map(|s| world.spawn(s, &[ONE_DETECTOR]))
        .collect();
    let mut eval = world.spawn("eval", &[("NADIR_SHUTDOWN_GRACE_SECS", "0")]);
    let run_id = run_until_eval_is_working(&world).await;

    let stopped = std::time::Instant::now();
    let status = eval.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the worker waited for the job: {:?}",
        stopped.elapsed()
    );
    assert_eq!(
        audit_status(&world, run_id).await,
        "running",
        "the job was handed back, not finished"
    );

    // The nak'ed message goes to the next eval worker at once.
    let _replacement = world.spawn("eval", &[]);
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(rows_per_table(&world, run_id).await, [1, 1, 1, 1]);
    let attempts = eval_attempts(&world, run_id).await;
    assert_eq!(attempts, 2);
}

/// Attempts recorded on the run's evaluation row.
async fn eval_attempts(world: &World, run_id: Uuid) -> i32 {
    world
        .query(
            "SELECT attempts FROM evaluations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0)
}

async fn audit_status(world: &World, run_id: Uuid) -> String {
    world
        .query(
            "SELECT status FROM pipeline_runs WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0)
}

#[tokio::test]
async fn a_generated_capture_with_ground_truth_becomes_labelled_flows() {
    let world = World::new("capture").await;
    let _workers = world.spawn_all();
    // Attacks are a tenth of the flows or so: what a detector of the unusual is for.
    let config = nadir_trafficgen::Config {
        hosts: 50,
        duration_s: 120,
        sessions_per_host_minute: 20.0,
        attacks: [
            Attack::SynScan,
            Attack::SshBruteForce,
            Attack::DnsTunnel,
            Attack::Beaconing,
            Attack::SlowExfiltration,
        ]
        .into_iter()
        .map(|a| (a, 1))
        .collect(),
        ..Default::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    let generated = nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
    let local = std::env::temp_dir().join(format!("nadir-analyze-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("day1.pcap"), &pcap).unwrap();
    std::fs::write(local.join("day1.pcap.labels.csv"), &truth).unwrap();
    // Ground truth first, as `nadir upload` does, then the capture.
    world.drop_raw("sensor/day1.pcap.labels.csv", truth).await;
    let (_, run_id) = world.drop_raw("sensor/day1.pcap", pcap).await;

    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(
        world.count("SELECT count(*) FROM pipeline_runs", &[]).await,
        1,
        "the sidecar started no run"
    );
    let ingest: Value = world
        .query(
            "SELECT metrics FROM ingestions WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    assert_eq!(ingest["format"], "pcap");

    let row = &world
        .query(
            "SELECT metrics, outputs FROM transformations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let metrics: Value = row.get(0);
    assert_eq!(metrics["read"]["packets"], generated.packets);
    assert_eq!(metrics["read"]["ip_packets"], generated.packets);
    assert_eq!(metrics["labelled"], true);
    let outputs: Value = row.get(1);
    let manifest: Manifest =
        serde_json::from_slice(&fetch_checked(&world, &outputs[1]).await).unwrap();
    assert_eq!(
        manifest.inputs.len(),
        3,
        "capture, RAW manifest and ground truth"
    );
    assert_eq!(manifest.inputs[2].key, "sensor/day1.pcap.labels.csv");
    let features = manifest.parameters["features"].as_array().unwrap();
    for feature in [
        "fwd_packets",
        "bwd_iat_mean_s",
        "fwd_syn",
        "src_distinct_dst_ports_60s",
    ] {
        assert!(
            features.iter().any(|f| f == feature),
            "{feature} in {features:?}"
        );
    }

    let report: Value = {
        let outputs: Value = world
            .query(
                "SELECT outputs FROM evaluations WHERE run_id = $1",
                &[&run_id],
            )
            .await[0]
            .get(0);
        serde_json::from_slice(&fetch_checked(&world, &outputs[0]).await).unwrap()
    };
    assert_eq!(
        report["attacks"], generated.attack_flows,
        "every ground-truth row labelled exactly one flow"
    );
    let detectors = report["detectors"].as_array().unwrap();
    let names: Vec<&str> = detectors
        .iter()
        .map(|d| d["algorithm"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "isolation_forest",
            "local_outlier_factor",
            "one_class_svm",
            "host_group"
        ]
    );
    // LOF is left out: flows of a scan or a flood are many and alike, so
    // they are dense, not locally outlying (see the README's figures).
    for d in detectors {
        let auc = d["roc_auc"].as_f64().unwrap();
        eprintln!("{}: ROC-AUC {auc}", d["algorithm"]);
        if d["algorithm"] != "local_outlier_factor" {
            assert!(
                auc > 0.7,
                "{} on the generated attacks: ROC-AUC {auc}",
                d["algorithm"]
            );
        }
    }
    // The group detector singles out the scanning, brute-forcing attacker.
    let outlying = &detectors[3]["hosts"][0]["outlying"];
    assert!(
        outlying
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == "198.51.100.66"),
        "{outlying}"
    );
    // The report, the scores, the audit rows and the registry agree.
    let eval_row = &world
        .query(
            "SELECT outputs, metrics FROM evaluations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let (eval_outputs, eval_metrics): (Value, Value) = (eval_row.get(0), eval_row.get(1));
    let scores =
        nadir_flows::table::read_parquet(&fetch_checked(&world, &eval_outputs[1]).await).unwrap();
    let flagged = scores
        .column("flagged")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .filter(|f| *f == Some(true))
        .count();
    assert_eq!(report["flagged"], flagged);
    assert_eq!(eval_metrics["summary"]["flagged"], flagged);
    assert_eq!(scores.height() as u64, report["rows"].as_u64().unwrap());
    // The findings beside them: the attacker's scan and brute force, each
    // one finding, and the report's summary counting the file's rows.
    assert_eq!(eval_outputs[2]["key"], report["findings"]["key"]);
    let findings =
        nadir_flows::table::read_parquet(&fetch_checked(&world, &eval_outputs[2]).await).unwrap();
    assert_eq!(
        report["findings_summary"]["findings"].as_u64().unwrap(),
        findings.height() as u64
    );
    let found: Vec<(String, String)> = findings
        .column("kind")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .zip(findings.column("src").unwrap().str().unwrap().iter())
        .map(|(k, s)| (k.unwrap().to_string(), s.unwrap().to_string()))
        .collect();
    for kind in ["scan", "brute_force"] {
        assert!(
            found.contains(&(kind.to_string(), "198.51.100.66".to_string())),
            "no {kind} finding of the attacker: {found:?}"
        );
    }
    for d in detectors {
        let name = d["name"].as_str().unwrap();
        let column = scores
            .column(&format!("flagged_{name}"))
            .unwrap()
            .bool()
            .unwrap();
        assert_eq!(
            d["flagged"],
            column.iter().filter(|f| *f == Some(true)).count(),
            "{name}"
        );
    }
    let registered = world
        .query(
            "SELECT algorithm, model FROM models WHERE run_id = $1 ORDER BY algorithm",
            &[&run_id],
        )
        .await;
    let trained = world
        .query(
            "SELECT item, outputs FROM trainings WHERE run_id = $1 ORDER BY item",
            &[&run_id],
        )
        .await;
    assert_eq!(registered.len(), trained.len());
    for (r, t) in registered.iter().zip(&trained) {
        assert_eq!(r.get::<_, String>(0), t.get::<_, String>(0));
        assert_eq!(r.get::<_, Value>(1), t.get::<_, Value>(1)[0]);
    }
    let champion = world
        .query(
            "SELECT algorithm, version FROM champion_history WHERE run_id = $1",
            &[&run_id],
        )
        .await;
    assert_eq!(
        json!([
            champion[0].get::<_, String>(0),
            champion[0].get::<_, String>(1)
        ]),
        report["selection"]["champion"]
    );

    // Per attack type, every generated attack is reported.
    let by_type = detectors[0]["by_attack_type"].as_object().unwrap();
    assert_eq!(by_type.len(), 5, "{by_type:?}");
    eprintln!(
        "champion {} with average precision {}",
        report["selection"]["champion"],
        detectors
            .iter()
            .map(|d| d["average_precision"].as_f64().unwrap())
            .fold(0.0, f64::max)
    );

    // The run replays bit for bit from what the audit trail recorded.
    let reproduced = world.cli(&["reproduce", &run_id.to_string()]);
    let text = String::from_utf8_lossy(&reproduced.stdout);
    assert!(
        reproduced.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&reproduced.stderr)
    );
    assert!(
        text.contains("identical  SILVER")
            && text.contains("identical  model")
            && text.contains("identical  scores"),
        "{text}"
    );

    // `nadir analyze` on the same files runs the same code: same figures.
    let out = local.join("out");
    let analyzed = world.cli(&[
        "analyze",
        local.join("day1.pcap").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        analyzed.status.success(),
        "{}",
        String::from_utf8_lossy(&analyzed.stderr)
    );
    let local_report: Value = serde_json::from_slice(&analyzed.stdout).unwrap();
    assert_eq!(local_report["rows"], report["rows"]);
    for (a, b) in local_report["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .zip(detectors)
    {
        assert_eq!(a["algorithm"], b["algorithm"]);
        assert_eq!(a["roc_auc"], b["roc_auc"]);
        assert_eq!(a["average_precision"], b["average_precision"]);
        assert_eq!(a["threshold"], b["threshold"]);
    }
    // The same artifacts and manifests as the pipeline's, laid out like the buckets.
    let version = local_report["version"].as_str().unwrap();
    assert!(
        out.join(format!("eval/{version}/scores.parquet")).exists()
            && out
                .join(format!("models/isolation_forest/{version}/model.json"))
                .exists()
    );
    let pipeline_silver: Value = world
        .query(
            "SELECT parameters FROM transformations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    let raw_version = local_report["partitions"][0]["raw_version"]
        .as_str()
        .unwrap();
    let local_manifest: Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!(
            "silver/flows/{raw_version}/{version}/manifest.json"
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        local_manifest.parameters, pipeline_silver,
        "analyze records the SILVER parameters the transform worker records"
    );
    assert_eq!(
        local_manifest.kind,
        nadir_contract::layout::ManifestKind::Silver
    );
    assert!(
        local_manifest
            .inputs
            .iter()
            .any(|i| i.key.ends_with(".labels.csv")),
        "the ground truth beside the file is named as an input"
    );
    let eval_manifest: Manifest = serde_json::from_slice(
        &std::fs::read(out.join(format!("eval/{version}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let pipeline_eval: Value = world
        .query(
            "SELECT parameters FROM evaluations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    assert_eq!(eval_manifest.parameters, pipeline_eval);
    std::fs::remove_dir_all(&local).unwrap();
}

#[tokio::test]
async fn the_champion_is_kept_against_an_equal_challenger_and_changed_only_by_hand() {
    let world = World::new("registry").await;
    let _workers = world.spawn_all_with(&[("NADIR_DETECTORS", "isolation_forest,one_class_svm")]);
    let data = sample(1500);
    let (_, first) = world.drop_raw("a/flows.csv", data.clone()).await;
    assert_eq!(world.wait_run(first, RUN_TIMEOUT).await.status, "succeeded");
    // The same flows again: the same seed fits the same models, which are
    // no better than the champion, so it stays.
    let (_, second) = world.drop_raw("b/flows.csv", data).await;
    assert_eq!(
        world.wait_run(second, RUN_TIMEOUT).await.status,
        "succeeded"
    );

    let report = |run: Uuid| {
        let world = &world;
        async move {
            let row = &world
                .query("SELECT outputs FROM evaluations WHERE run_id = $1", &[&run])
                .await[0];
            let outputs: Value = row.get(0);
            serde_json::from_slice::<Value>(&fetch_checked(world, &outputs[0]).await).unwrap()
        }
    };
    let (r1, r2) = (report(first).await, report(second).await);
    assert_eq!(r1["selection"]["action"], "promote");
    let champion = r1["selection"]["champion"].clone();
    assert_eq!(r2["selection"]["action"], "keep", "{}", r2["selection"]);
    assert_eq!(r2["selection"]["champion"], champion);
    // The champion scored the second run's flows beside the challengers,
    // with the same figures as its twin.
    let detectors = r2["detectors"].as_array().unwrap();
    assert_eq!(detectors.len(), 3);
    let champ = detectors.iter().find(|d| d["role"] == "champion").unwrap();
    let twin = detectors
        .iter()
        .find(|d| d["role"] == "challenger" && d["algorithm"] == champ["algorithm"])
        .unwrap();
    assert_eq!(champ["average_precision"], twin["average_precision"]);
    assert_eq!(champ["version"], champion[1]);

    // By hand: promote the other model of the second run, then roll back.
    let other = detectors
        .iter()
        .find(|d| d["role"] == "challenger" && d["algorithm"] != champ["algorithm"])
        .unwrap();
    let (algorithm, version) = (
        other["algorithm"].as_str().unwrap(),
        other["version"].as_str().unwrap(),
    );
    let promoted = world.cli(&["promote", algorithm, version, "--reason", "analyst review"]);
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let again = world.cli(&["promote", algorithm, version, "--reason", "twice"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already the champion"));
    let unknown = world.cli(&[
        "promote",
        "isolation_forest",
        "19700101T000000Z-00000000",
        "--reason",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no model"));
    let rolled = world.cli(&["rollback", "--reason", "false positives"]);
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );

    let listed = world.cli(&["models", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed["models"].as_array().unwrap().len(),
        4,
        "two models per run"
    );
    let history: Vec<(String, String)> = listed["champion_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().into(),
                c["algorithm"].as_str().unwrap().into(),
            )
        })
        .collect();
    let first_champion = champion[0].as_str().unwrap().to_string();
    assert_eq!(
        history,
        [
            ("rollback".to_string(), first_champion.clone()),
            ("manual".to_string(), algorithm.to_string()),
            ("promote".to_string(), first_champion),
        ]
    );
    assert_eq!(listed["champion_history"][1]["reason"], "analyst review");
    assert!(
        listed["champion_history"][1]["actor"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );

    // `nadir status` shows the comparison and the decision.
    let status = world.cli(&["status", &second.to_string()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("decision keep"), "{text}");
    assert!(text.contains("champion_"), "{text}");

    // Flows with other features have a champion of their own: the first
    // run on them promotes one and leaves the other feature set's alone.
    let csv = String::from_utf8(sample(800)).unwrap();
    let (header, rest) = csv.split_once('\n').unwrap();
    let renamed = format!("{}\n{rest}", header.replacen(',', "_v2,", 1));
    let (_, third) = world
        .drop_raw("c/other-features.csv", renamed.into_bytes())
        .await;
    assert_eq!(world.wait_run(third, RUN_TIMEOUT).await.status, "succeeded");
    let r3 = report(third).await;
    assert_eq!(r3["selection"]["action"], "promote", "{}", r3["selection"]);
    assert_ne!(r3["feature_set"], r2["feature_set"]);
    let sets = world
        .query(
            "SELECT count(DISTINCT feature_set) FROM champion_history",
            &[],
        )
        .await;
    assert_eq!(sets[0].get::<_, i64>(0), 2);
}

#[tokio::test]
async fn a_start_message_sets_the_training_window_and_the_hold_out() {
    let world = World::new("window").await;
    let _workers = world.spawn_all_with(&[("NADIR_DETECTORS", "isolation_forest")]);
    let (_, first) = world.drop_raw("w/monday.csv", sample(1200)).await;
    assert_eq!(world.wait_run(first, RUN_TIMEOUT).await.status, "succeeded");
    let (_, second) = world
        .drop_raw("w/tuesday.csv", flow_csv_seeded(1200, 9))
        .await;
    assert_eq!(
        world.wait_run(second, RUN_TIMEOUT).await.status,
        "succeeded"
    );

    let started = world.cli(&[
        "start",
        "w/tuesday.csv",
        "--train-partitions",
        "2",
        "--holdout",
        "0.25",
        "--wait",
        "--timeout",
        "120",
    ]);
    let out = String::from_utf8_lossy(&started.stdout).to_string();
    assert!(
        started.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let run_id: Uuid = out
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no run id in {out:?}"));

    let training: Value = world
        .query(
            "SELECT parameters FROM trainings WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    let partitions = training["training_partitions"].as_array().unwrap();
    assert_eq!(
        partitions.len(),
        2,
        "its own partition and Monday's: {training}"
    );
    assert_eq!(training["window"]["holdout"], 0.25);
    let row = &world
        .query(
            "SELECT outputs FROM evaluations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let outputs: Value = row.get(0);
    let report: Value = serde_json::from_slice(&fetch_checked(&world, &outputs[0]).await).unwrap();
    assert_eq!(report["training_partitions"].as_array().unwrap().len(), 2);
    assert_eq!(report["holdout"], 0.25);
    // Only the held-out quarter of Tuesday's flows is judged.
    let rows = report["rows"].as_u64().unwrap();
    assert!((200..400).contains(&rows), "{rows} of 1200 flows evaluated");
    let model: Value = world
        .query(
            "SELECT metrics FROM trainings WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    let trained = model["rows"].as_u64().unwrap();
    assert_eq!(
        trained + rows,
        2400 - held_out_of_monday(&world, &report).await,
        "{model}"
    );

    // A bad window is refused before anything runs.
    let refused = world.cli(&["start", "w/tuesday.csv", "--holdout", "1.5"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holdout"));
}

/// How many of Monday's flows the run held out (the same hash decides).
async fn held_out_of_monday(world: &World, report: &Value) -> u64 {
    let monday = report["training_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["raw_version"] != report["partitions"][0]["raw_version"])
        .unwrap()
        .clone();
    let table =
        nadir_flows::table::read_parquet(&fetch_checked(world, &monday["flows"]).await).unwrap();
    let version = monday["raw_version"].as_str().unwrap();
    table
        .column("flow_id")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .filter(|id| nadir_flows::split::held_out(version, *id, 0.25))
        .count() as u64
}

#[tokio::test]
async fn analysts_feedback_labels_the_next_evaluation_of_unlabelled_flows() {
    let world = World::new("feedback").await;
    let _workers = world.spawn_all_with(&[("NADIR_DETECTORS", "isolation_forest")]);
    // The sample CSV without its label column.
    let csv = String::from_utf8(sample(900)).unwrap();
    let unlabelled: String = csv
        .lines()
        .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
        .collect();
    let (_, first) = world.drop_raw("f/flows.csv", unlabelled.into_bytes()).await;
    assert_eq!(world.wait_run(first, RUN_TIMEOUT).await.status, "succeeded");
    let eval_report = |run: Uuid| {
        let world = &world;
        async move {
            let row = &world
                .query("SELECT outputs FROM evaluations WHERE run_id = $1", &[&run])
                .await[0];
            let outputs: Value = row.get(0);
            let report: Value =
                serde_json::from_slice(&fetch_checked(world, &outputs[0]).await).unwrap();
            let scores =
                nadir_flows::table::read_parquet(&fetch_checked(world, &outputs[1]).await).unwrap();
            (report, scores)
        }
    };
    let (report, scores) = eval_report(first).await;
    assert_eq!(report["labelled"], false);
    assert_eq!(report["selection"]["action"], "none");
    assert!(report["detectors"][0].get("roc_auc").is_none());

    // An analyst marks the two highest-scored flows: one real, one not;
    // and a third flow as benign.
    let raw_version = report["partitions"][0]["raw_version"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = scores.column("flow_id").unwrap().u64().unwrap();
    let s = scores
        .column("score_isolation_forest")
        .unwrap()
        .f64()
        .unwrap();
    let mut ranked: Vec<(u64, f64)> = ids.into_no_null_iter().zip(s.into_no_null_iter()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (flow, verdict) in [
        (ranked[0].0, "true_positive"),
        (ranked[1].0, "false_positive"),
        (ranked[500].0, "false_positive"),
    ] {
        world
            .query(
                "INSERT INTO feedback (raw_version, flow_id, run_id, verdict, analyst)
                 VALUES ($1, $2, $3, $4, 'analyst@soc')",
                &[&raw_version, &(flow as i64), &first, &verdict],
            )
            .await;
    }
    // The next evaluation of the same object takes them as labels.
    let started = world.cli(&["start", "f/flows.csv", "--wait", "--timeout", "120"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let out = String::from_utf8_lossy(&started.stdout).to_string();
    let second: Uuid = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (report, scores) = eval_report(second).await;
    assert_eq!(report["labelled"], true);
    assert_eq!(report["labelled_rows"], 3);
    assert_eq!(report["attacks"], 1);
    assert_eq!(
        report["detectors"][0]["roc_auc"], 1.0,
        "the true positive scores highest"
    );
    let labels = scores.column("label").unwrap().str().unwrap();
    assert_eq!(
        labels
            .iter()
            .flatten()
            .filter(|l| l.contains("analyst"))
            .count(),
        3
    );
    assert_eq!(report["selection"]["action"], "promote");
}

/// Publishes a `pipeline.start` payload as anyone on the bus could.
async fn start_raw(world: &World, msg_id: &str, payload: Vec<u8>) {
    world
        .bus
        .publish(subject::START, msg_id, payload)
        .await
        .unwrap();
}

/// Waits for `n` rows in `rejected_messages`; returns their errors.
async fn rejections(world: &World, n: i64) -> Vec<String> {
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while world
        .count("SELECT count(*) FROM rejected_messages", &[])
        .await
        < n
    {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} rejected messages; logs in {}",
            world.logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world
        .query("SELECT error FROM rejected_messages ORDER BY id", &[])
        .await
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn hostile_messages_end_as_failed_runs_or_rejections_and_never_vanish() {
    let world = World::new("hostile").await;
    let ingest = world.spawn("ingest", &[]);

    // 25 000 keys that do not exist: the run fails, its failure row fits.
    let run_id = Uuid::new_v4();
    let keys: Vec<String> = (0..25_000).map(|i| format!("missing/{i:05}.csv")).collect();
    let start = json!({ "schema": 1, "run_id": run_id, "keys": keys });
    start_raw(&world, "many-keys", serde_json::to_vec(&start).unwrap()).await;
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "failed");
    assert!(
        run.error.as_deref().unwrap().contains("does not exist"),
        "{run:?}"
    );
    let item: String = world
        .query("SELECT item FROM ingestions WHERE run_id = $1", &[&run_id])
        .await[0]
        .get(0);
    assert!(item.ends_with("missing/00004.csv and 24995 more"), "{item}");
    assert_eq!(world.messages_for(subject::DEAD, run_id).await.len(), 1);

    // NUL in a key, JSON-escaped in `pipeline.start` and URL-encoded in a
    // bucket event; a raw NUL byte in a payload. Each is kept with a dead
    // letter.
    let nul_run = Uuid::new_v4();
    let nul_key = format!(r#"{{"schema":1,"run_id":"{nul_run}","keys":["a\u0000b.csv"]}}"#);
    start_raw(&world, "nul-key", nul_key.into_bytes()).await;
    let event = r#"{"EventName":"s3:ObjectCreated:Put","Key":"raw/x","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"raw"},"object":{"key":"a%00b.csv","size":3,"eTag":"\"e1\""}}}]}"#;
    world
        .bus
        .publish(subject::MINIO_RAW, "nul-event", event.as_bytes().to_vec())
        .await
        .unwrap();
    start_raw(&world, "nul-byte", b"{\"schema\":1,\0}".to_vec()).await;
    let errors = rejections(&world, 3).await;
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.contains("control character"))
            .count(),
        2,
        "{errors:?}"
    );
    let excerpts: Vec<String> = world
        .query("SELECT payload_excerpt FROM rejected_messages", &[])
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        excerpts.iter().any(|e| e.contains('\u{FFFD}')),
        "{excerpts:?}"
    );
    assert_eq!(world.messages_for(subject::DEAD, nul_run).await.len(), 1);
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM pipeline_runs WHERE status = 'running'",
                &[]
            )
            .await,
        0,
        "no run is left running"
    );

    // Re-ingesting an object never rewrites its RAW manifest.
    // (Only ingest runs here: the runs stop after it.)
    let manifest_of = |run: Uuid| {
        let world = &world;
        async move {
            let deadline = std::time::Instant::now() + RUN_TIMEOUT;
            loop {
                let rows = world
                    .query("SELECT outputs FROM ingestions WHERE run_id = $1", &[&run])
                    .await;
                if let Some(row) = rows.first() {
                    let outputs: Value = row.get(0);
                    return outputs[0].clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "run {run} never ingested"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (_, first) = world.drop_raw("again.csv", sample(50)).await;
    let a = manifest_of(first).await;
    let again = Uuid::new_v4();
    let start = json!({ "schema": 1, "run_id": again, "keys": ["again.csv"] });
    start_raw(&world, "again", serde_json::to_vec(&start).unwrap()).await;
    let b = manifest_of(again).await;
    assert_eq!(a, b, "both runs name the same RAW manifest");
    fetch_checked(&world, &a).await;
    assert!(
        ingest.http_get("/healthz").await.0 == 200,
        "ingest still serves"
    );
}

#[tokio::test]
async fn a_stage_message_larger_than_nats_allows_travels_by_reference() {
    let world = World::new("by-reference").await;
    let _workers = world.spawn_all_with(&[ONE_DETECTOR, ("NADIR_MAX_MESSAGE_BYTES", "1024")]);
    let (_, run_id) = world.drop_raw("flows.csv", sample(300)).await;
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(rows_per_table(&world, run_id).await, [1, 1, 1, 1]);
    // The eval message (models and partitions with their features) is over
    // 1 KiB: JetStream carried a reference, eval read it from PostgreSQL.
    // Every message over the limit went so.
    let eval = world.messages_for(subject::EVAL, run_id).await;
    assert_eq!(eval.len(), 1);
    assert_eq!(eval[0]["stored_by"], "train", "{}", eval[0]);
    assert!(eval[0]["bytes"].as_u64().unwrap() > 1024);
    for stage_subject in [subject::TRANSFORM, subject::TRAIN] {
        for sent in world.messages_for(stage_subject, run_id).await {
            assert!(
                sent.get("stored_by").is_some() || sent.to_string().len() <= 1024,
                "{sent}"
            );
        }
    }
}

#[tokio::test]
async fn the_s3_server_stopped_while_transform_streams_a_capture_fails_nothing() {
    let world = World::new("s3-outage").await;
    let _workers = world.spawn_all_with(&[ONE_DETECTOR]);
    let config = nadir_trafficgen::Config {
        hosts: 100,
        duration_s: 600,
        sessions_per_host_minute: 30.0,
        ..Default::default()
    };
    let (mut pcap, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut pcap, &mut truth).unwrap();
    let (_, run_id) = world.drop_raw("big.pcap", pcap).await;
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    while world
        .count(
            "SELECT count(*) FROM stage_jobs WHERE run_id = $1 AND stage = 'transform'",
            &[&run_id],
        )
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "transform never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outage = nadir_e2e::Outage::begin("s3");
    tokio::time::sleep(Duration::from_secs(15)).await;
    outage.end();
    let run = world.wait_run(run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(rows_per_table(&world, run_id).await, [1, 1, 1, 1]);
    // Every artifact the run recorded is there with its hash.
    let outputs: Value = world
        .query(
            "SELECT outputs FROM transformations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    for artifact in outputs.as_array().unwrap() {
        fetch_checked(&world, artifact).await;
    }
}

#[tokio::test]
async fn hostile_objects_fail_their_runs_with_the_limit_named_or_stay_bounded() {
    let world = World::new("hostile-objects").await;
    let _ingest = world.spawn("ingest", &[]);
    let transform = world.spawn("transform", &[("NADIR_MAX_OPEN_FLOWS", "500")]);

    // 64 MiB of zeros in 64 KiB of gzip: refused, not inflated.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, b"duration,label\n").unwrap();
    std::io::Write::write_all(&mut bomb, &vec![b'0'; 64 << 20]).unwrap();
    let (_, bomb_run) = world.drop_raw("bomb.csv.gz", bomb.finish().unwrap()).await;
    let run = world.wait_run(bomb_run, RUN_TIMEOUT).await;
    assert_eq!(run.status, "failed");
    let error = run.error.unwrap();
    assert!(
        error.contains("bomb.csv.gz") && error.contains("NADIR_MAX_GZIP_RATIO"),
        "{error}"
    );

    // One packet dated 2106, then 3 000 flows over an hour: the bogus
    // timestamp is skipped and counted, the meter's clock keeps moving, and
    // never more than 500 flows are open.
    let t0 = 1_767_225_600u32;
    let mut packets = vec![(t0, 999), (u32::MAX, 1000)];
    packets.extend((0..3000u32).map(|i| (t0 + 1 + i, 2000 + (i % 60000) as u16)));
    let (_, capture_run) = world.drop_raw("clock.pcap", udp_pcap(&packets)).await;
    let deadline = std::time::Instant::now() + RUN_TIMEOUT;
    let metrics: Value = loop {
        let rows = world
            .query(
                "SELECT metrics FROM transformations WHERE run_id = $1",
                &[&capture_run],
            )
            .await;
        if let Some(row) = rows.first() {
            break row.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never transformed; logs in {}",
            world.logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let read = &metrics["read"];
    assert_eq!(read["flows"], 3001, "{metrics}");
    assert_eq!(
        read["skipped"]["timestamp far after the packets before it (max_clock_jump)"], 1,
        "{metrics}"
    );
    assert_eq!(
        read["evicted_flows"], 0,
        "idle flows expired on time: {metrics}"
    );
    assert!(transform.http_get("/healthz").await.0 == 200);
}

#[tokio::test]
async fn wide_cut_and_empty_inputs_fail_their_runs_with_readable_reasons() {
    let world = World::new("readable-inputs").await;
    let _ingest = world.spawn("ingest", &[]);
    let _transform = world.spawn("transform", &[]);
    let _train = world.spawn("train", &[]);

    // 100 000 columns: recognised as a CSV, refused by the column limit.
    let header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let row = vec!["1"; 100_000].join(",");
    let wide = format!("{}\n{row}\n{row}\n", header.join(","));
    let (_, wide_run) = world.drop_raw("wide.csv", wide.into_bytes()).await;
    // A capture cut inside its file header.
    let cut = udp_pcap(&[(1_767_225_600, 1000)])[..10].to_vec();
    let (_, cut_run) = world.drop_raw("cut.pcap", cut).await;
    // A capture with a header and no packets: no flows, and no hold-out.
    let empty = udp_pcap(&[]);
    let (_, empty_run) = world.drop_raw("empty.pcap", empty).await;

    for (run_id, stage, says) in [
        (wide_run, "transform", "NADIR_MAX_COLUMNS"),
        (
            cut_run,
            "transform",
            "the capture ends inside its file header (10 bytes",
        ),
        (empty_run, "train", "no flows to train on"),
    ] {
        let run = world.wait_run(run_id, RUN_TIMEOUT).await;
        assert_eq!(run.status, "failed", "{run:?}");
        assert_eq!(run.error_stage.as_deref(), Some(stage), "{run:?}");
        let error = run.error.unwrap();
        assert!(error.contains(says), "{error}");
        assert!(
            !error.contains("unrecognised content") && !error.contains("after the hold-out"),
            "{error}"
        );
    }
}
