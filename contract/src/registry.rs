//! What a stage job changes in the model registry. The change is applied by
//! `nadir-db` in the transaction that finishes the job, so a redelivered job
//! never registers or promotes twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::layout::ArtifactRef;

/// What a stage job changes in the registry, applied with its audit rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegistryChange {
    /// The train stage: a model now exists.
    Register {
        algorithm: String,
        feature_set: String,
        model: ArtifactRef,
        manifest: ArtifactRef,
        metrics: Value,
    },
    /// The eval stage: this run's evaluation promotes a model, provided the
    /// champion is still the one it was compared with.
    Promote {
        feature_set: String,
        algorithm: String,
        version: String,
        compared_with: Option<(String, String)>,
        reason: String,
        metrics: Value,
    },
}
