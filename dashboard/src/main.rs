//! `nadir-dashboard`: the analyst dashboard. Reads its configuration
//! (`NADIR_DATABASE_URL`, `NADIR_S3_*`, `NADIR_DASHBOARD_*`), binds
//! `NADIR_DASHBOARD_ADDR` and serves until SIGTERM.

use nadir_config::DashboardConfig;
use nadir_config::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nadir_config::telemetry::init_logging();
    let config = match DashboardConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nadir-dashboard: {e}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding NADIR_DASHBOARD_ADDR={}: {e}", config.addr))?;
    nadir_dashboard::run(config, listener, Shutdown::on_signals()).await
}
