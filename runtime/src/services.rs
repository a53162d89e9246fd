//! The connections a worker holds (NATS, S3, PostgreSQL) and the start-up
//! sequence every worker shares: configuration, logs, signals, connections
//! with retries, migrations, streams, and the metrics endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::FutureExt;

use nadir_bus::Bus;
use nadir_config::Config;
use nadir_config::shutdown::Shutdown;
use nadir_config::telemetry::{self, Metrics, ReadinessProbe};
use nadir_store::ObjectStore;

/// Everything a stage job may touch, shared by all of a worker's loops.
pub struct Services {
    pub config: Config,
    pub bus: Bus,
    pub store: ObjectStore,
    pub db: Pool,
    pub metrics: Metrics,
}

impl Services {
    /// Connects to NATS, S3 and PostgreSQL, applies migrations and creates the
    /// streams. Retries (with a log line each time) until it succeeds or
    /// shutdown is requested, so a worker started before its services waits.
    pub async fn connect(
        config: Config,
        name: &str,
        metrics: Metrics,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Arc<Self>> {
        let store = ObjectStore::new(&config.s3);
        let db = nadir_db::pool(&config.database_url, 8)?;
        let bus = retry("NATS", shutdown, || {
            let (nats, name) = (config.nats.clone(), name.to_string());
            async move {
                Bus::connect(&nats, &name)
                    .await
                    .map_err(anyhow::Error::from)
            }
            .boxed()
        })
        .await?;
        retry("PostgreSQL migrations", shutdown, || {
            let db = db.clone();
            async move {
                nadir_db::schema::migrate(&db)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.detail()))
            }
            .boxed()
        })
        .await?;
        retry("JetStream streams", shutdown, || {
            let bus = bus.clone();
            async move { bus.ensure_streams().await.map_err(anyhow::Error::from) }.boxed()
        })
        .await?;
        Ok(Arc::new(Services {
            config,
            bus,
            store,
            db,
            metrics,
        }))
    }

    /// The check behind `/readyz`: NATS connected, PostgreSQL answering,
    /// the `raw` bucket reachable. The error names every service that failed.
    pub async fn check_ready(&self) -> Result<(), String> {
        let mut failures = Vec::new();
        if !self.bus.is_connected() {
            failures.push("nats: not connected".to_string());
        }
        let pg = async {
            let client = self.db.get().await.map_err(|e| e.to_string())?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        if let Err(e) = pg.await {
            failures.push(format!("postgresql: {e}"));
        }
        if let Err(e) = self.store.check_bucket(&self.config.buckets.raw).await {
            failures.push(format!("s3: {e}"));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

async fn retry<T>(
    what: &str,
    shutdown: &Shutdown,
    mut attempt: impl FnMut() -> futures::future::BoxFuture<'static, anyhow::Result<T>>,
) -> anyhow::Result<T>
where
    T: 'static,
{
    let mut delay = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(service = what, error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "not reachable yet");
            }
        }
        tokio::select! {
            _ = shutdown.requested() => anyhow::bail!("shutdown requested while waiting for {what}"),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A started worker: its services, its shutdown signal, where its metrics are.
pub struct Worker {
    pub services: Arc<Services>,
    pub shutdown: Shutdown,
    pub metrics_addr: SocketAddr,
}

/// The start of every worker's `main`: logs, configuration (a bad setting
/// ends the process with the variable's name), signals, the metrics endpoint
/// (up at once: `/healthz` answers and `/readyz` says what is still being
/// waited for), then the connections. `None` when shutdown was requested
/// before the services could be reached: the worker has nothing to finish.
pub async fn start_worker(name: &'static str) -> anyhow::Result<Option<Worker>> {
    telemetry::init_logging();
    let config = Config::from_env()?;
    tracing::info!(worker = name, id = %config.worker_id, config = ?config, "starting");
    let shutdown = Shutdown::on_signals();
    let metrics = Metrics::new();
    let connected: Arc<OnceLock<Arc<Services>>> = Arc::default();
    let probe: ReadinessProbe = {
        let connected = connected.clone();
        Arc::new(move || {
            let services = connected.get().cloned();
            async move {
                match services {
                    Some(services) => services.check_ready().await,
                    None => Err("still connecting to NATS, S3 and PostgreSQL".into()),
                }
            }
            .boxed()
        })
    };
    let metrics_addr = telemetry::serve(
        config.metrics_addr,
        metrics.clone(),
        probe,
        shutdown.clone(),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "NADIR_METRICS_ADDR={}: cannot listen: {e}",
            config.metrics_addr
        )
    })?;
    tracing::info!(worker = name, %metrics_addr, "serving /metrics, /healthz and /readyz");
    let services = match Services::connect(config, name, metrics, &shutdown).await {
        Ok(services) => services,
        Err(_) if shutdown.is_requested() => return Ok(None),
        Err(e) => return Err(e),
    };
    let _ = connected.set(services.clone());
    tracing::info!(worker = name, "connected to NATS, S3 and PostgreSQL");
    Ok(Some(Worker {
        services,
        shutdown,
        metrics_addr,
    }))
}

/// A worker's whole `main`: builds the runtime, starts the worker, runs
/// `body` until shutdown, and exits without waiting for a computation that
/// was handed back to JetStream at shutdown and still runs on a blocking
/// thread (its message is already nak'ed; another replica redoes it).
pub fn run_worker<F, Fut>(name: &'static str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Worker) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match start_worker(name).await? {
            Some(worker) => body(worker).await,
            None => Ok(()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = &result {
        tracing::error!(worker = name, error = %format!("{e:#}"), "stopped with an error");
    }
    result
}
