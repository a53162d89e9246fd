//! The connection pool, the one way nadir connects to PostgreSQL (plaintext
//! or TLS, as the URL's `sslmode` says: see [`crate::tls`]), and the one
//! error type every statement returns.

pub use deadpool_postgres::Pool;
use deadpool_postgres::Runtime;

use nadir_config::tls::PostgresUrl;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}", describe(.0, "PostgreSQL"))]
    Db(#[from] tokio_postgres::Error),
    #[error("{}", describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL configuration: {0}")]
    Config(String),
    /// A value refused before it was written (a rule's pattern, a state).
    #[error("{0}")]
    Invalid(String),
}

/// A tokio-postgres error in words: its causes (its Display shows only the
/// kind), or, for a refused certificate, the sentence that names the
/// server and the CA (see [`crate::tls`]).
fn describe(e: &tokio_postgres::Error, context: &str) -> String {
    if let Some(refusal) = crate::tls::refusal(e) {
        return refusal;
    }
    format!("{context}: {}", nadir_config::tls::error_chain(e))
}

fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e, "PostgreSQL connection pool"),
        other => format!("PostgreSQL connection pool: {other}"),
    }
}

impl DbError {
    /// Whether retrying the statement later can succeed: the server is
    /// unreachable, restarting or busy, or the transaction lost a race.
    /// False for errors in what was sent (a value PostgreSQL refuses, a
    /// constraint), which no retry mends.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Db(e) => match e.code() {
                None => true,
                Some(code) => {
                    let code = code.code();
                    code.starts_with("08") // connection exception
                        || code.starts_with("53") // insufficient resources
                        || code.starts_with("57") // operator intervention (shutdown)
                        || code.starts_with("58") // system error
                        || code == "40001" // serialization failure
                        || code == "40P01" // deadlock
                }
            },
            DbError::Pool(_) => true,
            DbError::Config(_) | DbError::Invalid(_) => false,
        }
    }

    /// The full chain, with the server's message (a `tokio_postgres::Error`
    /// displays only "db error" on its own).
    pub fn detail(&self) -> String {
        let e = match self {
            DbError::Db(e) | DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => e,
            other => return other.to_string(),
        };
        match e.as_db_error() {
            Some(db) => format!("PostgreSQL: {}: {}", db.severity(), db.message()),
            None => self.to_string(),
        }
    }
}

/// The pool every nadir process uses. `database_url` is a libpq-style URL
/// or key=value string; `sslmode` (disable, prefer — the default —,
/// require, verify-full) and `sslrootcert` choose TLS as libpq does. No
/// connection is made until the pool is first used.
pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    let target = parse(database_url)?;
    let tls = crate::tls::connector(&target);
    let manager = deadpool_postgres::Manager::from_config(
        target.config,
        tls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// One connection outside any pool (what an administrator's session or a
/// test needs), with the same TLS rules as [`pool`]; the connection is
/// driven on a spawned task until the client is dropped.
pub async fn connect(database_url: &str) -> Result<tokio_postgres::Client, DbError> {
    let target = parse(database_url)?;
    let tls = crate::tls::connector(&target);
    let (client, connection) = target.config.connect(tls).await?;
    tokio::spawn(async move {
        // Its errors reach the client's next statement.
        let _ = connection.await;
    });
    Ok(client)
}

fn parse(database_url: &str) -> Result<PostgresUrl, DbError> {
    PostgresUrl::parse(database_url).map_err(|e| {
        DbError::Config(format!(
            "NADIR_DATABASE_URL={}: {e}",
            nadir_config::redact_url(database_url)
        ))
    })
}
