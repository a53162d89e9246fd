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
