//! The four stages of the pipeline and the audit table each writes.

use serde::{Deserialize, Serialize};

/// The four stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Ingest,
    Transform,
    Train,
    Eval,
}

impl StageKind {
    pub const ALL: [StageKind; 4] = [
        StageKind::Ingest,
        StageKind::Transform,
        StageKind::Train,
        StageKind::Eval,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Ingest => "ingest",
            StageKind::Transform => "transform",
            StageKind::Train => "train",
            StageKind::Eval => "eval",
        }
    }

    /// The audit table of the stage.
    pub fn table(self) -> &'static str {
        match self {
            StageKind::Ingest => "ingestions",
            StageKind::Transform => "transformations",
            StageKind::Train => "trainings",
            StageKind::Eval => "evaluations",
        }
    }

    /// The stage that takes a run up after this one.
    pub fn next(self) -> Option<Self> {
        match self {
            StageKind::Ingest => Some(StageKind::Transform),
            StageKind::Transform => Some(StageKind::Train),
            StageKind::Train => Some(StageKind::Eval),
            StageKind::Eval => None,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}
