//! Logs, Prometheus metrics, and the `/metrics`, `/healthz`, `/readyz`
//! endpoints every long-running nadir process serves.
//!
//! Metric names are defined once, here; the stage runtime updates them, the
//! stages never do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

/// Structured logs, one JSON line per event (plain text on a terminal).
/// `RUST_LOG` filters as usual; the default is `info`.
pub fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The metrics of a stage worker.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Jobs finished, by stage and outcome (`succeeded`, `failed`, `retried`,
    /// `duplicate`, `rejected`, `handed_back`).
    pub jobs: IntCounterVec,
    pub job_seconds: HistogramVec,
    pub jobs_in_flight: IntGaugeVec,
    pub rows: IntCounterVec,
    pub bytes: IntCounterVec,
    pub redeliveries: IntCounterVec,
    /// RAW objects the reconciler found without a run, and started.
    pub reconciled: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let jobs = IntCounterVec::new(
            Opts::new(
                "nadir_jobs_total",
                "Stage jobs finished, by stage and outcome",
            ),
            &["stage", "outcome"],
        )
        .unwrap();
        let job_seconds = HistogramVec::new(
            HistogramOpts::new("nadir_job_duration_seconds", "Time a stage job took").buckets(
                vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                ],
            ),
            &["stage"],
        )
        .unwrap();
        let jobs_in_flight = IntGaugeVec::new(
            Opts::new("nadir_jobs_in_flight", "Stage jobs being worked on"),
            &["stage"],
        )
        .unwrap();
        let rows = IntCounterVec::new(
            Opts::new(
                "nadir_rows_processed_total",
                "Rows (flows) a stage processed",
            ),
            &["stage"],
        )
        .unwrap();
        let bytes = IntCounterVec::new(
            Opts::new("nadir_bytes_processed_total", "Bytes a stage read"),
            &["stage"],
        )
        .unwrap();
        let redeliveries = IntCounterVec::new(
            Opts::new(
                "nadir_redeliveries_total",
                "Messages received more than once",
            ),
            &["stage"],
        )
        .unwrap();
        let reconciled = IntCounterVec::new(
            Opts::new(
                "nadir_reconciled_objects_total",
                "RAW objects the reconciler started a run for",
            ),
            &["bucket"],
        )
        .unwrap();
        for c in [&jobs, &rows, &bytes, &redeliveries, &reconciled] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        registry.register(Box::new(job_seconds.clone())).unwrap();
        registry.register(Box::new(jobs_in_flight.clone())).unwrap();
        Metrics {
            registry,
            jobs,
            job_seconds,
            jobs_in_flight,
            rows,
            bytes,
            redeliveries,
            reconciled,
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of metrics cannot fail");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/readyz` checks: `Ok` when ready, else what is not.
pub type ReadinessProbe =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone)]
struct HttpState {
    metrics: Metrics,
    probe: ReadinessProbe,
}

/// Binds `addr` and serves the endpoints until `shutdown` fires.
/// Returns the bound address (useful when the port was 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    probe: ReadinessProbe,
    shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics, probe });
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

async fn metrics_page(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(5), (state.probe)()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_string()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: checks took over 5 s\n".to_string(),
        ),
    }
}
