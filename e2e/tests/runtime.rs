//! The stage runtime's rules, in-process against the real NATS JetStream,
//! PostgreSQL and S3: a toy stage behind `nadir_runtime::stage::run`, the
//! same entry point every worker calls. Dedupe, leases and fencing, bad
//! input, the retry budget, the hand-back at shutdown, runs that are over,
//! the reaper and the outbox, and PostgreSQL and NATS going away.

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
use nadir_db::jobs::{self, Budget, Claim, Committed, Finish, JobKey};
use nadir_e2e::{Outage, World};
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
            sha256_from: Default::default(),
            size: 1,
            format: "csv".parse().unwrap(),
            manifest: ArtifactRef::of("silver", "m".into(), "v", b""),
        }],
        silver: Vec::new(),
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

fn key_of(job: &TransformJob) -> JobKey {
    JobKey {
        run_id: job.run_id,
        stage: StageKind::Transform,
        input_version: job.input_version(),
    }
}

const BUDGET: Budget = Budget {
    retry: Duration::from_secs(6),
    worker_deaths: 3,
};

/// An attempt taken by hand, as another worker would.
async fn claim_by_hand(world: &World, job: &TransformJob, lease: Duration) -> jobs::Attempt {
    let request = serde_json::to_value(job).unwrap();
    match jobs::claim(
        &world.db,
        &key_of(job),
        subject::TRANSFORM,
        &request,
        "another-worker",
        lease,
        BUDGET,
    )
    .await
    .unwrap()
    {
        Claim::Started { attempt, give_up } => {
            assert!(give_up.is_none());
            attempt
        }
        other => panic!("claimed {other:?}"),
    }
}

/// Commits an attempt taken by hand as another worker would, with an
/// empty next message of the train stage.
async fn commit_by_hand(
    world: &World,
    attempt: &jobs::Attempt,
    next: &serde_json::Value,
) -> Committed {
    jobs::finish(
        &world.db,
        attempt,
        chrono::Utc::now(),
        "another-worker",
        Finish::Succeeded {
            records: &[],
            next_subject: subject::TRAIN,
            next_message: next,
            run_report: None,
            registry: &[],
        },
    )
    .await
    .unwrap()
}

/// (attempts, retries, worker deaths, transient error recorded) of the job.
async fn spent(world: &World, run_id: Uuid) -> (i32, i32, i32, bool) {
    let row = &world
        .query(
            "SELECT attempts, retries, worker_deaths, first_error_at IS NOT NULL FROM stage_jobs WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn a_job_another_attempt_holds_waits_for_its_lease_and_spends_nothing() {
    let world = World::new("runtime-lease").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Succeed).await;
    let run_id = Uuid::new_v4();
    let job = job(run_id);
    let held = claim_by_hand(&world, &job, Duration::from_secs(60)).await;
    publish(&world, &job, "held").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing runs while another attempt holds the lease"
    );
    assert!(running.count("busy") >= 1);
    // The other worker hands the job back (as at SIGTERM).
    jobs::release(&world.db, &held).await.unwrap();
    wait_status(&world, run_id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        spent(&world, run_id).await,
        (2, 0, 0, false),
        "waiting and a hand-back spend no retry budget"
    );
    assert_done_once(&world, run_id).await;
    running.stop().await;
}

#[tokio::test]
async fn two_replicas_and_a_job_longer_than_ack_wait_make_one_commit() {
    let world = World::new("runtime-replicas").await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Four times this world's NADIR_ACK_WAIT_SECS (3 s): without progress
    // acks JetStream would hand the message to the other replica.
    let pause = Duration::from_secs(12);
    let first = start(&world, &calls, Behaviour::SlowFirst(pause)).await;
    let second = start(&world, &calls, Behaviour::SlowFirst(pause)).await;
    let run_id = Uuid::new_v4();
    let job = job(run_id);
    publish(&world, &job, "replicas").await;
    wait_until("the job in flight", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // The same job delivered again, as a reconciler or a republish would:
    // whichever replica takes it finds the lease held and waits.
    publish(&world, &job, "replicas-again").await;
    wait_status(&world, run_id, "succeeded", Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one attempt did the work");
    assert_eq!(
        spent(&world, run_id).await,
        (1, 0, 0, false),
        "one attempt, no retry, no worker death"
    );
    assert_done_once(&world, run_id).await;
    let failed = first.count("failed") + second.count("failed");
    assert_eq!(failed, 0, "no message exhausted or failed");
    let spec = nadir_bus::TRANSFORM;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = world
        .bus
        .jetstream
        .get_stream(spec.stream)
        .await
        .unwrap()
        .get_consumer(spec.durable)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "nothing pending or unacknowledged"
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_dead_owner_s_job_is_taken_over_and_its_stale_attempt_is_fenced_out() {
    let world = World::new("runtime-fence").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Succeed).await;
    let run_id = Uuid::new_v4();
    let job = job(run_id);
    // A worker took the job and died: its lease runs out unrenewed.
    let stale = claim_by_hand(&world, &job, Duration::from_secs(2)).await;
    publish(&world, &job, "orphaned").await;
    wait_status(&world, run_id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let (attempts, retries, deaths, _) = spent(&world, run_id).await;
    assert_eq!((attempts, retries, deaths), (2, 0, 1));

    // The stale attempt comes back to life: it can renew nothing, write
    // nothing and commit nothing.
    assert!(!jobs::renew(&world.db, &stale).await.unwrap());
    let silver = &world.config.buckets.silver;
    assert!(
        !jobs::register_artifact(&world.db, &stale, silver, "stale/flows.parquet", true)
            .await
            .unwrap()
    );
    let committed = commit_by_hand(&world, &stale, &json!({})).await;
    assert_eq!(committed, Committed::Fenced);
    assert_done_once(&world, run_id).await;
    running.stop().await;
}

#[tokio::test]
async fn a_message_for_a_run_that_failed_is_not_worked_on() {
    let world = World::new("runtime-over").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Succeed).await;
    let run_id = Uuid::new_v4();
    world
        .query(
            "INSERT INTO pipeline_runs (run_id, trigger, request, status, stage, error)
             VALUES ($1, 'test', '{}', 'failed', 'ingest', 'failed elsewhere')",
            &[&run_id],
        )
        .await;
    publish(&world, &job(run_id), "late").await;
    wait_until("the skip", Duration::from_secs(20), || {
        running.count("skipped") == 1
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(world.messages_for(subject::TRAIN, run_id).await.is_empty());
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
async fn a_transient_error_is_retried_with_back_off_until_the_retry_budget_is_spent() {
    let world = World::new("runtime-transient").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::Transient).await;
    let run_id = Uuid::new_v4();
    publish(&world, &job(run_id), "flaky").await;
    wait_status(&world, run_id, "failed", Duration::from_secs(40)).await;
    // NADIR_RETRY_BUDGET_SECS=6 in the test world; back-offs of 2, 4, 8 s.
    let calls = calls.load(Ordering::SeqCst);
    assert!((3..=4).contains(&calls), "{calls} attempts");
    assert_eq!(running.count("retried") as usize, calls - 1);
    let row = &world
        .query(
            "SELECT error, failure FROM stage_jobs WHERE run_id = $1",
            &[&run_id],
        )
        .await[0];
    let (error, failure): (String, String) = (row.get(0), row.get(1));
    assert!(
        error.starts_with("gave up after ")
            && error.ends_with("s of retries (NADIR_RETRY_BUDGET_SECS=6): the toy service is down"),
        "{error}"
    );
    assert_eq!(failure, "transient");
    let run = world.wait_run(run_id, Duration::from_secs(5)).await;
    assert_eq!(run.status, "failed");
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
    assert_eq!(spent(&world, run_id).await, (2, 0, 0, false));
    assert_done_once(&world, run_id).await;
    second.stop().await;
}

#[tokio::test]
async fn the_reaper_runs_a_job_nobody_works_on_and_publishes_what_was_never_published() {
    let world = World::new("runtime-reaper").await;
    let calls = Arc::new(AtomicUsize::new(0));
    // A job whose owner died and whose message is gone (a JetStream that
    // lost it): only the reaper can finish it.
    let orphan = job(Uuid::new_v4());
    claim_by_hand(&world, &orphan, Duration::from_secs(1)).await;
    // A job committed whose next message never reached JetStream.
    let committed = job(Uuid::new_v4());
    let attempt = claim_by_hand(&world, &committed, Duration::from_secs(60)).await;
    let next = TrainJob {
        schema: SCHEMA_VERSION,
        run_id: committed.run_id,
        silver: Vec::new(),
        training: None,
    };
    let next = serde_json::to_value(&next).unwrap();
    let done = commit_by_hand(&world, &attempt, &next).await;
    assert_eq!(done, Committed::Yes);
    let running = start(&world, &calls, Behaviour::Succeed).await;
    // NADIR_REAP_AFTER_SECS=8; the reaper looks every 10 s once the
    // services have answered for two lease lengths.
    wait_status(&world, orphan.run_id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        world
            .messages_for(subject::TRAIN, orphan.run_id)
            .await
            .len(),
        1
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while world
        .messages_for(subject::TRAIN, committed.run_id)
        .await
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox was never published"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(running.count("reaped_job") >= 1);
    running.stop().await;
}

/// Jobs whose first attempt takes `pause`, queued behind each other.
async fn slow_jobs(world: &World, n: usize) -> Vec<TransformJob> {
    let jobs: Vec<TransformJob> = (0..n).map(|_| job(Uuid::new_v4())).collect();
    for (i, job) in jobs.iter().enumerate() {
        publish(world, job, &format!("queued-{i}")).await;
    }
    jobs
}

#[tokio::test]
async fn a_postgres_outage_longer_than_any_retry_budget_fails_nothing() {
    let world = World::new("runtime-pg-outage").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::SlowFirst(Duration::from_secs(5))).await;
    let jobs = slow_jobs(&world, 3).await;
    wait_until("the first job in flight", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // Down for longer than the whole retry budget of the old runtime
    // (five deliveries, about 30 s) and than this world's (6 s).
    let outage = Outage::begin("postgres");
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "nothing is pulled while PostgreSQL is away"
    );
    outage.end();
    for job in &jobs {
        wait_status(&world, job.run_id, "succeeded", Duration::from_secs(60)).await;
        assert_done_once(&world, job.run_id).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(running.count("failed"), 0);
    let first = spent(&world, jobs[0].run_id).await;
    assert_eq!(
        first.0, 1,
        "the job in flight was committed by its own attempt"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_nats_restart_mid_job_loses_and_duplicates_nothing() {
    let world = World::new("runtime-nats-outage").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::SlowFirst(Duration::from_secs(4))).await;
    let jobs = slow_jobs(&world, 2).await;
    wait_until("the first job in flight", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // The job finishes while NATS is away: its commit stands, its next
    // message waits in the outbox.
    let outage = Outage::begin("nats");
    tokio::time::sleep(Duration::from_secs(10)).await;
    outage.end();
    for job in &jobs {
        wait_status(&world, job.run_id, "succeeded", Duration::from_secs(60)).await;
    }
    for job in &jobs {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let published = world
                .count(
                    "SELECT count(*) FROM stage_jobs WHERE run_id = $1 AND published_at IS NOT NULL",
                    &[&job.run_id],
                )
                .await;
            if published == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the next message was never published"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_done_once(&world, job.run_id).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    running.stop().await;
}

#[tokio::test]
async fn connections_killed_under_a_job_neither_duplicate_nor_fail_it() {
    let world = World::new("runtime-terminate").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let running = start(&world, &calls, Behaviour::SlowFirst(Duration::from_secs(6))).await;
    let run_id = Uuid::new_v4();
    publish(&world, &job(run_id), "terminated").await;
    wait_until("the job in flight", Duration::from_secs(20), || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // Every connection of the runtime to its database, as an operator's
    // pg_terminate_backend or a failover would.
    let killed = world
        .count(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .await;
    assert!(killed >= 1);
    wait_status(&world, run_id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(spent(&world, run_id).await.0, 1);
    assert_done_once(&world, run_id).await;
    running.stop().await;
}
