//! How a stage job fails: bad input (the run fails now) or a transient
//! error (the job is retried), and CPU-bound work run off the async threads.

/// Why a stage job did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The input itself is wrong (corrupt capture, malformed CSV, a missing
    /// artifact): retrying cannot help, the run fails now.
    #[error("{0}")]
    Rejected(String),
    /// A service failed (S3 unreachable, a connection reset mid-stream,
    /// ...): the job is retried while its retry budget lasts.
    #[error("{0}")]
    Transient(String),
    /// Another attempt owns the job now (this one's lease ran out): stop,
    /// write nothing more.
    #[error("{0}")]
    Superseded(String),
}

impl StageError {
    pub fn rejected(e: impl std::fmt::Display) -> Self {
        StageError::Rejected(e.to_string())
    }
    pub fn transient(e: impl std::fmt::Display) -> Self {
        StageError::Transient(e.to_string())
    }
}

impl From<nadir_store::StoreError> for StageError {
    /// A missing, altered or replaced object is bad input (the bytes the
    /// run was about are gone); anything else S3 says is worth a retry.
    fn from(e: nadir_store::StoreError) -> Self {
        match e {
            nadir_store::StoreError::NotFound { .. }
            | nadir_store::StoreError::Tampered { .. }
            | nadir_store::StoreError::Changed { .. } => StageError::Rejected(e.to_string()),
            nadir_store::StoreError::Failed { .. } => StageError::Transient(e.to_string()),
        }
    }
}

impl From<nadir_db::DbError> for StageError {
    /// PostgreSQL unreachable under a job is worth a retry; a statement it
    /// refuses is not.
    fn from(e: nadir_db::DbError) -> Self {
        if e.is_transient() {
            StageError::Transient(e.detail())
        } else {
            StageError::Rejected(e.detail())
        }
    }
}

/// Runs CPU-bound work off the async threads, so in-progress acks and
/// health checks keep flowing while a model fits.
pub async fn compute<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StageError::Transient(format!("computation panicked: {e}")))
}

/// Runs `work` over an object read as ranged GETs, off the async threads.
/// A read that failed is the transfer's fault, whatever `work` made of the
/// short stream: retried, or rejected when the object was replaced; only
/// what `work` returns from a whole read is its verdict on the content.
pub async fn compute_reading<T: Send + 'static>(
    reader: nadir_store::RangeReader,
    work: impl FnOnce(nadir_store::RangeReader) -> T + Send + 'static,
) -> Result<T, StageError> {
    let fault = reader.fault();
    let result = compute(move || work(reader)).await?;
    match fault.get() {
        Some(fault) => Err(fault.clone().into()),
        None => Ok(result),
    }
}
