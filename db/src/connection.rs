//! The connection pool and the one error type every statement returns.

pub use deadpool_postgres::Pool;
use deadpool_postgres::Runtime;
use tokio_postgres::NoTls;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL configuration: {0}")]
    Config(String),
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
            DbError::Config(_) => false,
        }
    }

    /// The full chain, with the server's message (a `tokio_postgres::Error`
    /// displays only "db error" on its own).
    pub fn detail(&self) -> String {
        match self {
            DbError::Db(e) => match e.as_db_error() {
                Some(db) => format!("PostgreSQL: {}: {}", db.severity(), db.message()),
                None => format!("PostgreSQL: {e}"),
            },
            other => other.to_string(),
        }
    }
}

pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    let pg: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(format!("NADIR_DATABASE_URL: {e}")))?;
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
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
