//! The stage runtime's rules, in-process against the real NATS JetStream,
//! PostgreSQL and S3: a toy stage behind `nadir_runtime::stage::run`, the
//! same entry point every worker calls. Dedupe, the job lock, bad input,
//! transient errors up to `max_deliver`, and the hand-back at shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nadir_config::shutdown::Shutdown;
use nadir_config::telemetry::Metrics;
use nadir_contract::audit::AuditRecord;
use nadir_contract::layout::ArtifactRef;
use nadir_contract::messages::{
    Message, RawObject, SCHEMA_VERSION, TrainJob, TransformJob, subject,
};
use nadir_contract::stage::StageKind;
use nadir_db::jobs::{JobKey, try_lock};
use nadir_e2e::World;
use nadir_runtime::Services;
use nadir_runtime::stage::{self, Job, JobContext, Outcome, Source, Stage, StageError};
use serde_json::json;
use uuid::Uuid;

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Reject,
    Transient,
    /// The first call takes this long; later ones succeed at once.
    SlowFirst(Duration),
}

/// A stage that writes nothing and does what it is told.
struct Toy {
    calls: Arc<AtomicUsize>,
    behaviour: Behaviour,
}

impl Stage for Toy {
    const KIND: StageKind = StageKind::Transform;
    const NEXT_SUBJECT: &'static str = subject::TRAIN;
    type Input = TransformJob;
    type Output = TrainJob;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        _job: &TransformJob,
    ) -> Result<Outcome<TrainJob>, StageError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.behaviour {
            Behaviour::Reject => return Err(StageError::Rejected("the toy input is bad".into())),
            Behaviour::Transient => {
                return Err(StageError::Transient("the toy service is down".into()));
            }
            Behaviour::SlowFirst(pause) if call == 1 => tokio::time::sleep(pause).await,
            _ => {}
        }
        Ok(Outcome {
            records: vec![AuditRecord {
                item: "toy".into(),
                inputs: json!([]),
                outputs: json!([]),
                parameters: json!({ "attempt": ctx.attempt }),
                metrics: json!({}),
            }],
            next: TrainJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: Vec::new(),
                training: None,
            },
            rows: 1,
            bytes: 0,
            registry: Vec::new(),
        })
    }
}

struct Running {
    services: Arc<Services>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn count(&self, outcome: &str) -> u64 {
        self.services
            .metrics
            .jobs
            .with_label_values(&["transform", outcome])
            .get()
    }

    async fn stop(self) {
        self.shutdown.request();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the runtime stops within the grace period")
            .unwrap()
            .unwrap();
    }
}

async fn start(world: &World, calls: &Arc<AtomicUsize>, behaviour: Behaviour) -> Running {
    let shutdown = Shutdown::new();
    let services = Services::connect(
        world.config.clone(),
        "nadir-runtime-test",
        Metrics::new(),
        &shutdown,
    )
    .await
    .expect("services");
    let toy = Toy {
        calls: calls.clone(),
        behaviour,
    };
    let task = tokio::spawn(stage::run(
        Arc::new(toy),
        services.clone(),
        vec![Source::messages(nadir_bus::TRANSFORM)],
        shutdown.clone(),
    ));
    Running {
        services,
        shutdown,
        task,
    }
}

fn job(run_id: Uuid) -> TransformJob {
    TransformJob {
        schema: SCHEMA_VERSION,
        run_id,
        raw: vec![RawObject {
            key: "toy.csv".into(),
            etag: "e1".into(),
            version: "20261201T000000Z-00000000".into(),
            sha256: "0".repeat(64),
            size: 1,
            format: "csv".parse().unwrap(),
            manifest: ArtifactRef::of("silver", "m".into(), "v", b""),
        }],
        training: None,
    }
}

async fn publish(world: &World, job: &TransformJob, msg_id: &str) {
    world
        .bus
        .publish(subject::TRANSFORM, msg_id, job.encode())
        .await
        .unwrap();
}

/// The job's status in `stage_jobs` once it is `want`.
async fn wait_status(world: &World, run_id: Uuid, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows = world
            .query(
                "SELECT status FROM stage_jobs WHERE run_id = $1",
                &[&run_id],
            )
            .await;
        let status: Option<String> = rows.first().map(|r| r.get(0));
        if status.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job of run {run_id} is {status:?}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One audit row and one next message: the job was done exactly once.
async fn assert_done_once(world: &World, run_id: Uuid) {
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM transformations WHERE run_id = $1",
                &[&run_id]
            )
            .await,
        1
    );
    assert_eq!(world.messages_for(subject::TRAIN, run_id).await.len(), 1);
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_job_delivered_twice_is_processed_once() {
    let world = World::new("runtime-dedupe").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Succeed).await;
    let run_id = Uuid::new_v4();
    let job = job(run_id);
    publish(&world, &job, "first").await;
    wait_status(&world, run_id, "succeeded", Duration::from_secs(20)).await;
    // The same job again under another message id: JetStream stores it,
    // the runtime must not do it again.
    publish(&world, &job, "second").await;
    wait_until("the duplicate's ack", Duration::from_secs(20), || {
        running.count("duplicate") == 1
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(running.count("succeeded"), 1);
    assert_done_once(&world, run_id).await;
    running.stop().await;
}

#[tokio::test]
async fn a_job_locked_elsewhere_waits_for_the_lock() {
    let world = World::new("runtime-lock").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Succeed).await;
    let run_id = Uuid::new_v4();
    let job = job(run_id);
    let key = JobKey {
        run_id,
        stage: StageKind::Transform,
        input_version: job.input_version(),
    };
    let held = try_lock(&world.db, &key)
        .await
        .unwrap()
        .expect("the lock is free");
    publish(&world, &job, "locked").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing runs while another holds the lock"
    );
    drop(held);
    wait_status(&world, run_id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(world.messages_for(subject::TRAIN, run_id).await.len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn bad_input_fails_the_run_at_once_with_a_dead_letter() {
    let world = World::new("runtime-reject").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Reject).await;
    let run_id = Uuid::new_v4();
    publish(&world, &job(run_id), "bad").await;
    wait_status(&world, run_id, "failed", Duration::from_secs(20)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "bad input is not retried");
    let row = &world
        .query(
            "SELECT status, error FROM transformations WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, String>(1), "the toy input is bad");
    let run = world.wait_run(run_id, Duration::from_secs(5)).await;
    assert_eq!(run.status, "failed");
    assert_eq!(run.error_stage.as_deref(), Some("transform"));
    let dead = world.messages_for(subject::DEAD, run_id).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["error"], "the toy input is bad");
    assert!(world.messages_for(subject::TRAIN, run_id).await.is_empty());
    running.stop().await;
}

#[tokio::test]
async fn a_transient_error_is_retried_until_max_deliver_then_dead_lettered() {
    let world = World::new("runtime-transient").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Transient).await;
    let run_id = Uuid::new_v4();
    publish(&world, &job(run_id), "flaky").await;
    wait_status(&world, run_id, "failed", Duration::from_secs(40)).await;
    // NADIR_MAX_DELIVER=3 in the test world.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(running.count("retried"), 2);
    let error: String = world
        .query("SELECT error FROM stage_jobs WHERE run_id = $1", &[&run_id])
        .await[0]
        .get(0);
    assert_eq!(error, "gave up after 3 deliveries: the toy service is down");
    assert_eq!(world.messages_for(subject::DEAD, run_id).await.len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn past_the_grace_period_a_job_is_handed_back_and_finished_by_the_next_runtime() {
    let world = World::new("runtime-handback").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let first = start(
        &world,
        &calls,
        Behaviour::SlowFirst(Duration::from_secs(120)),
    )
    .await;
    let run_id = Uuid::new_v4();
    publish(&world, &job(run_id), "slow").await;
    wait_until("the first attempt", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let handed_back = first.services.clone();
    // NADIR_SHUTDOWN_GRACE_SECS=5: the runtime gives up the job and stops.
    first.stop().await;
    assert_eq!(
        handed_back
            .metrics
            .jobs
            .with_label_values(&["transform", "handed_back"])
            .get(),
        1
    );
    let second = start(&world, &calls, Behaviour::Succeed).await;
    wait_status(&world, run_id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let attempts: i32 = world
        .query(
            "SELECT attempts FROM stage_jobs WHERE run_id = $1",
            &[&run_id],
        )
        .await[0]
        .get(0);
    assert_eq!(attempts, 2);
    assert_done_once(&world, run_id).await;
    second.stop().await;
}
