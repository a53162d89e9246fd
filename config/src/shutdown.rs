//! Graceful shutdown: SIGTERM or SIGINT asks every loop to stop taking work.
//!
//! A worker that is asked to stop finishes the job in hand within its grace
//! period, or hands the message back to JetStream, and exits 0.

use tokio_util::sync::CancellationToken;

/// A cloneable "please stop" signal.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that fires on SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
            trigger.request();
        });
        shutdown
    }

    pub fn request(&self) {
        self.token.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has been requested.
    pub async fn requested(&self) {
        self.token.cancelled().await
    }
}
