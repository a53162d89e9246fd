//! `nadir grant-dashboard`: lets an existing PostgreSQL role serve the
//! dashboard (read every table, add analysts' feedback; nothing else).

use std::process::ExitCode;

use nadir_config::Config;

pub async fn grant_dashboard(config: &Config, role: &str) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    nadir_db::schema::grant_dashboard(&db, role)
        .await
        .map_err(super::detail)?;
    println!("role {role} may now read the audit trail and the registry, and add feedback");
    Ok(ExitCode::SUCCESS)
}
