//! nadir's analyst dashboard: what is unusual in the network, and why.
//!
//! A web application (axum) over what the pipeline already keeps: the
//! audit trail and the model registry in PostgreSQL, the EVAL report and
//! per-flow scores in S3. Pages are HTML rendered on the server with SVG
//! charts; there is no script and nothing is loaded from elsewhere.
//!
//! - PostgreSQL reads and the writes (flow feedback, triage, suppression
//!   rules) are `nadir_db`'s, shared with the CLI.
//! - [`artifacts`]: EVAL and SILVER artifacts, checked and cached.
//! - [`index`]: a run's scored flows, filtered, sorted and paged (pure).
//! - [`queue`]: the findings queue it opens on, a finding's page, the
//!   suppression rules (pure HTML, like [`pages`]).
//! - [`pages`], [`charts`], [`words`]: the HTML, the SVG, the words.
//! - [`web`]: routes, access control, security headers, metrics.
//!
//! [`run`] serves until shutdown; `nadir-dashboard` only reads the
//! configuration and calls it, and the tests call it the same way.

pub mod artifacts;
pub mod charts;
pub mod index;
pub mod pages;
pub mod queue;
pub mod web;
pub mod words;

use std::sync::Arc;
use std::time::Duration;

use nadir_config::DashboardConfig;
use nadir_config::shutdown::Shutdown;
use nadir_store::ObjectStore;
use tokio::net::TcpListener;

/// How often the newest runs are looked for, to index them ahead.
const WARM_INTERVAL: Duration = Duration::from_secs(5);

/// Serves the dashboard on `listener` until `shutdown` fires.
pub async fn run(
    config: DashboardConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let db = nadir_db::pool(&config.database_url, 8)?;
    let store = ObjectStore::new(&config.s3);
    let state = Arc::new(web::State {
        artifacts: artifacts::Artifacts::new(store.clone(), config.cached_runs),
        store,
        db,
        config,
        metrics: web::Metrics::new(),
    });
    let warm = {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let limit = state.config.cached_runs as i64;
                match nadir_db::runs::recent_reports(&state.db, limit).await {
                    Ok(runs) => state.artifacts.warm(&runs).await,
                    Err(e) => tracing::warn!(error = %e.detail(), "could not list recent runs"),
                }
                state
                    .metrics
                    .indexed_runs
                    .set(state.artifacts.indexed() as i64);
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = tokio::time::sleep(WARM_INTERVAL) => {}
                }
            }
        })
    };
    match &state.config.access {
        nadir_config::DashboardAccess::Credentials(c) => {
            let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(addr = %listener.local_addr()?, credentials = ?names, "dashboard listening");
        }
        nadir_config::DashboardAccess::Open => {
            tracing::warn!(addr = %listener.local_addr()?, "dashboard listening without authentication (NADIR_DASHBOARD_AUTH=none)");
        }
    }
    axum::serve(listener, web::router(state))
        .with_graceful_shutdown(async move { shutdown.requested().await })
        .await?;
    warm.abort();
    Ok(())
}
