//! What makes each stage message a job: its run, its idempotency key (run
//! id + stage + input version) and what a failure row is about. The wire
//! types are `nadir_contract::messages`; this is the runtime's view of them.

use nadir_contract::layout::input_version;
use nadir_contract::messages::{EvalJob, TrainJob, TransformJob};
use uuid::Uuid;

use crate::stage::Job;

impl Job for TransformJob {
    fn run_id(&self) -> Uuid {
        self.run_id
    }
    fn input_version(&self) -> String {
        input_version(self.raw.iter().map(|r| r.version.as_str()))
    }
    fn item(&self) -> String {
        self.raw
            .iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Job for TrainJob {
    fn run_id(&self) -> Uuid {
        self.run_id
    }
    fn input_version(&self) -> String {
        input_version(self.silver.iter().map(|p| p.flows.version.as_str()))
    }
    fn item(&self) -> String {
        self.silver
            .iter()
            .map(|p| p.raw_version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Job for EvalJob {
    fn run_id(&self) -> Uuid {
        self.run_id
    }
    fn input_version(&self) -> String {
        let silver = self.silver.iter().map(|p| p.flows.version.as_str());
        let models = self.models.iter().map(|m| m.model.version.as_str());
        input_version(silver.chain(models))
    }
    fn item(&self) -> String {
        "run".into()
    }
}
