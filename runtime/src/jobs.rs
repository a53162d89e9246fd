//! What makes each stage message a job: its run, its idempotency key (run
//! id + stage + input version) and what a failure row is about. The wire
//! types are `nadir_contract::messages`; this is the runtime's view of them.

use nadir_contract::layout::input_version;
use nadir_contract::messages::{EvalJob, TrainJob, TransformJob};
use uuid::Uuid;

use crate::stage::Job;

/// A failure row's item when a job covers many things: the first few,
/// then how many more.
pub fn listed<'a>(items: impl ExactSizeIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let total = items.len();
    let mut out = items.take(SHOWN).collect::<Vec<_>>().join(", ");
    if total > SHOWN {
        out.push_str(&format!(" and {} more", total - SHOWN));
    }
    out
}

impl Job for TransformJob {
    fn run_id(&self) -> Uuid {
        self.run_id
    }
    fn input_version(&self) -> String {
        let raw = self.raw.iter().map(|r| r.version.as_str());
        let silver = self.silver.iter().map(|p| p.flows.version.as_str());
        input_version(raw.chain(silver))
    }
    fn item(&self) -> String {
        let raw = self.raw.iter().map(|r| r.key.as_str());
        let silver = self.silver.iter().map(|p| p.raw_version.as_str());
        listed(raw.chain(silver).collect::<Vec<_>>().into_iter())
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
        listed(self.silver.iter().map(|p| p.raw_version.as_str()))
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_list_is_cut_with_a_count() {
        let keys: Vec<String> = (0..25_000).map(|i| format!("missing/{i:05}")).collect();
        let item = super::listed(keys.iter().map(String::as_str));
        assert_eq!(
            item,
            "missing/00000, missing/00001, missing/00002, missing/00003, missing/00004 and 24995 more"
        );
        assert_eq!(super::listed(["a", "b"].into_iter()), "a, b");
    }
}
