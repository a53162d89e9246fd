//! The connections a worker holds (NATS, S3, PostgreSQL) and the start-up
//! sequence every worker shares: configuration, logs, signals, connections
//! with retries, migrations, streams, and the metrics endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::FutureExt;

use crate::audit;
use crate::bus::Bus;
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::store::ObjectStore;
use crate::telemetry::{self, Metrics, ReadinessProbe};

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
        shutdown: &Shutdown,
    ) -> anyhow::Result<Arc<Self>> {
        let store = ObjectStore::new(&config.s3);
        let db = audit::pool(&config.database_url, 8)?;
        let bus = retry("NATS", shutdown, || {
            let (url, name) = (config.nats_url.clone(), name.to_string());
            async move { Bus::connect(&url, &name).await.map_err(anyhow::Error::from) }.boxed()
        })
        .await?;
        retry("PostgreSQL migrations", shutdown, || {
            let db = db.clone();
            async move {
                audit::migrate(&db)
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
            metrics: Metrics::new(),
        }))
    }

    /// The checks behind `/readyz`: NATS connected, PostgreSQL answering,
    /// the `raw` bucket reachable.
    pub fn readiness_probes(self: &Arc<Self>) -> Vec<(&'static str, ReadinessProbe)> {
        let nats = self.clone();
        let pg = self.clone();
        let s3 = self.clone();
        vec![
            (
                "nats",
                Arc::new(move || {
                    let ok = nats.bus.is_connected();
                    async move {
                        if ok {
                            Ok(())
                        } else {
                            Err("not connected".to_string())
                        }
                    }
                    .boxed()
                }) as ReadinessProbe,
            ),
            (
                "postgresql",
                Arc::new(move || {
                    let db = pg.db.clone();
                    async move {
                        let client = db.get().await.map_err(|e| e.to_string())?;
                        client
                            .simple_query("SELECT 1")
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    }
                    .boxed()
                }),
            ),
            (
                "s3",
                Arc::new(move || {
                    let s3 = s3.clone();
                    async move {
                        s3.store
                            .check_bucket(&s3.config.buckets.raw)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    .boxed()
                }),
            ),
        ]
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
/// ends the process with the variable's name), signals, connections, and the
/// metrics endpoint.
pub async fn start_worker(name: &'static str) -> anyhow::Result<Worker> {
    telemetry::init_logging();
    let config = Config::from_env()?;
    tracing::info!(worker = name, id = %config.worker_id, config = ?config, "starting");
    let shutdown = Shutdown::on_signals();
    let services = Services::connect(config, name, &shutdown).await?;
    let metrics_addr = telemetry::serve(
        services.config.metrics_addr,
        services.metrics.clone(),
        services.readiness_probes(),
        shutdown.clone(),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "NADIR_METRICS_ADDR={}: cannot listen: {e}",
            services.config.metrics_addr
        )
    })?;
    tracing::info!(worker = name, %metrics_addr, "serving /metrics, /healthz and /readyz");
    Ok(Worker {
        services,
        shutdown,
        metrics_addr,
    })
}
