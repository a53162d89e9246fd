//! `nadir setup`: creates the buckets, the JetStream streams and consumers,
//! and applies the database migrations (safe to run again); optionally
//! lets a role serve the dashboard too.

use std::process::ExitCode;

use nadir_bus::{ALL_CONSUMERS, Bus};
use nadir_config::Config;
use nadir_store::ObjectStore;

pub async fn setup(
    config: &Config,
    reset_streams: bool,
    grant_dashboard: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let store = ObjectStore::new(&config.s3);
    for bucket in config.buckets.all() {
        let created = store.ensure_bucket(bucket).await?;
        println!(
            "bucket {bucket}: {}",
            if created { "created" } else { "exists" }
        );
    }
    let bus = Bus::connect(&config.nats, "nadir-setup").await?;
    if reset_streams {
        bus.delete_streams().await?;
        println!("streams deleted");
    }
    bus.ensure_streams().await?;
    for spec in ALL_CONSUMERS {
        bus.consumer(spec, &config.delivery).await?;
        println!("consumer {} on {}: ready", spec.durable, spec.subject);
    }
    let db = super::db(config)?;
    let applied = nadir_db::schema::migrate(&db)
        .await
        .map_err(super::detail)?;
    println!("database: {applied} migration(s) applied");
    if let Some(role) = grant_dashboard {
        super::grant_dashboard::grant_dashboard(config, role).await?;
    }
    Ok(ExitCode::SUCCESS)
}
