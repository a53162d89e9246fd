//! The harness of nadir's end-to-end tests: a private world per test on the
//! real services that `scripts/test` started, and the real worker binaries
//! run as child processes.
//!
//! Each test gets its own database and its own buckets, and starts from
//! empty JetStream streams. The streams and consumers are shared by
//! every test, so tests take a global lock and run one at a time. A test
//! run without the services fails at once, saying how to start them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nadir_bus::Bus;
use nadir_config::Config;
use nadir_config::Env as _;
use nadir_store::ObjectStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn required(var: &str) -> String {
    nadir_config::ProcessEnv.get(var).unwrap_or_else(|| {
        panic!("{var} is not set: the end-to-end tests need the services that `scripts/test` starts; run them with scripts/test")
    })
}

/// Directory of the workspace's binaries (`target/<profile>`), next to the
/// test executable's `deps/`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NADIR_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// A private world on the shared services.
pub struct World {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    pub name: String,
    pub vars: HashMap<String, String>,
    pub config: Config,
    pub store: ObjectStore,
    pub bus: Bus,
    pub db: deadpool_postgres_pool::Pool,
    pub logs: PathBuf,
}

/// Re-exported so tests need no direct dependency on deadpool.
pub mod deadpool_postgres_pool {
    pub type Pool = nadir_db::Pool;
}

impl World {
    /// Fresh database, buckets and streams for test `name`.
    pub async fn new(name: &str) -> World {
        let serial = SERIAL.lock().await;
        let admin_url = required("NADIR_TEST_ADMIN_URL");
        let database = format!("nadir_e2e_{}", name.replace('-', "_"));
        let client = nadir_db::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at NADIR_TEST_ADMIN_URL is not reachable: {}",
                e.detail()
            )
        });
        for statement in [
            format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            format!("CREATE DATABASE {database}"),
        ] {
            client
                .batch_execute(&statement)
                .await
                .expect("creating the test database");
        }
        // The admin URL with this test's database, its query (sslmode...) kept.
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url.as_str(), String::new()),
        };
        let database_url = match base.rfind('/') {
            Some(i) => format!("{}/{database}{query}", &base[..i]),
            None => panic!("NADIR_TEST_ADMIN_URL has no database name"),
        };
        let mut vars: HashMap<String, String> = [
            "NADIR_NATS_URL",
            "NADIR_S3_ENDPOINT",
            "NADIR_S3_REGION",
            "NADIR_S3_ACCESS_KEY",
            "NADIR_S3_SECRET_KEY",
        ]
        .into_iter()
        .map(|v| (v.to_string(), required(v)))
        .collect();
        let prefix = name.replace('_', "-");
        for (var, bucket) in [
            ("NADIR_BUCKET_RAW", "raw"),
            ("NADIR_BUCKET_SILVER", "silver"),
            ("NADIR_BUCKET_MODELS", "models"),
            ("NADIR_BUCKET_EVAL", "eval"),
        ] {
            vars.insert(
                var.into(),
                format!("{prefix}-{bucket}-{}", std::process::id()),
            );
        }
        vars.insert("NADIR_DATABASE_URL".into(), database_url);
        vars.insert("NADIR_ACK_WAIT_SECS".into(), "3".into());
        // Short budgets, so that giving up and reaping happen within a test.
        vars.insert("NADIR_RETRY_BUDGET_SECS".into(), "6".into());
        vars.insert("NADIR_REAP_AFTER_SECS".into(), "8".into());
        vars.insert("NADIR_SHUTDOWN_GRACE_SECS".into(), "5".into());
        vars.insert("NADIR_RECONCILE_INTERVAL_SECS".into(), "1".into());
        vars.insert("NADIR_METRICS_ADDR".into(), "127.0.0.1:0".into());
        let config = Config::from(&vars).expect("test configuration");
        let store = ObjectStore::new(&config.s3);
        for bucket in config.buckets.all() {
            store
                .ensure_bucket(bucket)
                .await
                .expect("creating a test bucket");
        }
        let bus = Bus::connect(&config.nats, "nadir-e2e").await.expect("NATS");
        bus.delete_streams().await.expect("deleting streams");
        bus.ensure_streams().await.expect("creating streams");
        let db = nadir_db::pool(&config.database_url, 4).expect("pool");
        nadir_db::schema::migrate(&db).await.expect("migrations");
        let logs = std::env::temp_dir().join("nadir-e2e").join(name);
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        World {
            _serial: serial,
            name: name.to_string(),
            vars,
            config,
            store,
            bus,
            db,
            logs,
        }
    }

    /// Starts `nadir-<stage>` with this world's settings plus `extra`.
    pub fn spawn(&self, stage: &str, extra: &[(&str, &str)]) -> Worker {
        let port = free_port();
        let mut env: Vec<(String, String)> = self.vars.clone().into_iter().collect();
        env.push(("NADIR_METRICS_ADDR".into(), format!("127.0.0.1:{port}")));
        env.push(("NADIR_WORKER_ID".into(), format!("{stage}-{port}")));
        launch(stage, port, env, extra, &self.logs)
    }

    /// All four workers.
    pub fn spawn_all(&self) -> Vec<Worker> {
        self.spawn_all_with(&[])
    }

    /// All four workers, with extra environment.
    pub fn spawn_all_with(&self, extra: &[(&str, &str)]) -> Vec<Worker> {
        ["ingest", "transform", "train", "eval"]
            .iter()
            .map(|s| self.spawn(s, extra))
            .collect()
    }

    /// Puts `bytes` into the RAW bucket as a user would; returns the ETag
    /// and the run id the object starts.
    pub async fn drop_raw(&self, key: &str, bytes: Vec<u8>) -> (String, Uuid) {
        let raw = &self.config.buckets.raw;
        let etag = self
            .store
            .put(raw, key, bytes.into(), "application/octet-stream")
            .await
            .unwrap();
        let run_id = nadir_contract::messages::object_run_id(raw, key, &etag);
        (etag, run_id)
    }

    /// Waits until the run is no longer running.
    pub async fn wait_run(&self, run_id: Uuid, timeout: Duration) -> nadir_db::runs::RunSummary {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(run) = nadir_db::runs::run(&self.db, run_id).await.unwrap()
                && run.status != "running"
            {
                return run;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {run_id} did not finish within {timeout:?}; worker logs are in {}",
                    self.logs.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.db
            .get()
            .await
            .unwrap()
            .query(sql, params)
            .await
            .unwrap()
    }

    pub async fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        self.query(sql, params).await[0].get(0)
    }

    /// Messages on `subject` whose `run_id` is `run_id`.
    pub async fn messages_for(&self, subject: &str, run_id: Uuid) -> Vec<serde_json::Value> {
        self.bus
            .read_subject(subject)
            .await
            .unwrap()
            .iter()
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
            .filter(|v| v["run_id"].as_str() == Some(&run_id.to_string()))
            .collect()
    }

    /// Starts `nadir-dashboard` with this world's S3 and bucket settings,
    /// the database at `database_url`, and `extra`.
    pub fn spawn_dashboard(&self, database_url: &str, extra: &[(&str, &str)]) -> Worker {
        let port = free_port();
        let mut env: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(k, _)| k.starts_with("NADIR_S3_") || k.starts_with("NADIR_BUCKET_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("NADIR_DATABASE_URL".into(), database_url.into()));
        env.push(("NADIR_DASHBOARD_ADDR".into(), format!("127.0.0.1:{port}")));
        launch("dashboard", port, env, extra, &self.logs)
    }

    /// Runs the `nadir` CLI with this world's settings.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin_dir().join("nadir"))
            .env_clear()
            .envs(&self.vars)
            .args(args)
            .output()
            .expect("running nadir")
    }
}

/// A service of the test world (`postgres`, `nats` or `s3`) stopped until
/// [`Outage::end`] (or the drop) starts it again with its data, as an
/// operator's restart would.
pub struct Outage {
    service: &'static str,
    over: bool,
}

impl Outage {
    pub fn begin(service: &'static str) -> Outage {
        service_script(&["stop", service]);
        Outage {
            service,
            over: false,
        }
    }

    pub fn end(mut self) {
        self.over = true;
        service_script(&["start"]);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over {
            eprintln!("restarting {} after a failed test", self.service);
            service_script(&["start"]);
        }
    }
}

fn service_script(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/service");
    let _ = required("NADIR_TEST_SERVICES");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("running scripts/lib/service");
    assert!(
        out.status.success(),
        "scripts/lib/service {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `nadir-<name>` with only `env` and `extra` in its environment,
/// its output in a log file; `port` is where it serves HTTP.
fn launch(
    name: &str,
    port: u16,
    env: Vec<(String, String)>,
    extra: &[(&str, &str)],
    logs: &Path,
) -> Worker {
    let binary = bin_dir().join(format!("nadir-{name}"));
    assert!(
        binary.exists(),
        "{} is missing: build the workspace first (scripts/test does)",
        binary.display()
    );
    let log_path = logs.join(format!("{name}-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(&binary)
        .env_clear()
        .envs(env)
        .env("RUST_LOG", "info")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    Worker {
        stage: name.to_string(),
        child: Some(child),
        metrics_port: port,
        log: log_path,
    }
}

/// A port no one listens on and this process has not handed out before:
/// a worker binds its port only after it starts, so the kernel may offer
/// the same free port to two spawns in a row.
pub fn free_port() -> u16 {
    static ISSUED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut issued = ISSUED.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !issued.contains(&port) {
            issued.push(port);
            return port;
        }
    }
}

/// What an HTTP request answered.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A worker process; killed when dropped.
pub struct Worker {
    pub stage: String,
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status (within `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("worker already stopped");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM; log: {}",
                    self.stage,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path` on the worker's metrics endpoint: (status code, body).
    /// Retries while the worker is still starting.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let response = self.http("GET", path, &[], "").await;
        (response.status, response.body)
    }

    /// An HTTP/1.0 request to the worker's port with `headers` and `body`.
    /// Retries while the worker is still starting.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await {
                Ok(mut stream) => {
                    let mut request = format!(
                        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
                        self.metrics_port,
                        body.len()
                    );
                    for (k, v) in headers {
                        request.push_str(&format!("{k}: {v}\r\n"));
                    }
                    request.push_str("\r\n");
                    request.push_str(body);
                    stream.write_all(request.as_bytes()).await.unwrap();
                    let mut bytes = Vec::new();
                    stream.read_to_end(&mut bytes).await.unwrap();
                    let response = String::from_utf8_lossy(&bytes).into_owned();
                    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    return HttpResponse {
                        status,
                        headers,
                        body: body.to_string(),
                    };
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!(
                    "{} metrics endpoint not reachable: {e}; log: {}",
                    self.stage,
                    self.log.display()
                ),
            }
        }
    }

    /// The value of a counter line, e.g. `nadir_jobs_total{outcome="succeeded",stage="ingest"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
