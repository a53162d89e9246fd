//! One module per command (or group of related commands), each with the
//! function `main` dispatches to; and the few helpers several share.

pub mod analyze;
pub mod findings;
pub mod flows;
pub mod gen_capture;
pub mod grant_dashboard;
pub mod models;
pub mod pipeline;
pub mod probe;
pub mod runs;
pub mod sample;
pub mod setup;
pub mod start;
pub mod upload;
pub mod variables;
pub mod verify;

use std::path::Path;

use anyhow::Context;
use nadir_config::Config;

/// The one-connection pool a command reads or writes the database with.
fn db(config: &Config) -> anyhow::Result<nadir_db::Pool> {
    Ok(nadir_db::pool(&config.database_url, 1)?)
}

/// Who changes the registry or the suppression rules by hand:
/// `cli:<user>@<host>`.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("cli:{user}@{host}")
}

/// A database error with the server's message (`.map_err(detail)`).
fn detail(e: nadir_db::DbError) -> anyhow::Error {
    anyhow::anyhow!(e.detail())
}

/// Creates (or truncates) the output file `path`, buffered.
fn create(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}
