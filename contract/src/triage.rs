//! Triage: the state an analyst gives a finding, and what a verdict says
//! about its evidence flows (labels for later evaluations).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A finding's state. Every finding starts `new`; each change is kept,
/// with who made it, when and why (`nadir-db`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriageState {
    New,
    Acknowledged,
    /// A real attack: its evidence flows become attack labels.
    Confirmed,
    Resolved,
    /// Benign: its evidence flows become benign labels.
    FalsePositive,
}

impl TriageState {
    pub const ALL: [TriageState; 5] = [
        TriageState::New,
        TriageState::Acknowledged,
        TriageState::Confirmed,
        TriageState::Resolved,
        TriageState::FalsePositive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TriageState::New => "new",
            TriageState::Acknowledged => "acknowledged",
            TriageState::Confirmed => "confirmed",
            TriageState::Resolved => "resolved",
            TriageState::FalsePositive => "false_positive",
        }
    }

    /// How the dashboard writes it.
    pub fn words(self) -> &'static str {
        match self {
            TriageState::New => "new",
            TriageState::Acknowledged => "acknowledged",
            TriageState::Confirmed => "confirmed attack",
            TriageState::Resolved => "resolved",
            TriageState::FalsePositive => "false positive",
        }
    }

    /// The flow verdict (`feedback.verdict`) this state gives the
    /// finding's evidence flows, if any.
    pub fn verdict(self) -> Option<&'static str> {
        match self {
            TriageState::Confirmed => Some("true_positive"),
            TriageState::FalsePositive => Some("false_positive"),
            _ => None,
        }
    }

    /// Still waiting for an analyst (the queue's default view).
    pub fn open(self) -> bool {
        matches!(self, TriageState::New | TriageState::Acknowledged)
    }
}

impl FromStr for TriageState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TriageState::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is no triage state (new, acknowledged, confirmed, resolved, false_positive)"
                )
            })
    }
}

impl fmt::Display for TriageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_and_verdicts_follow() {
        for s in TriageState::ALL {
            assert_eq!(s.name().parse::<TriageState>(), Ok(s));
        }
        assert!(
            "closed"
                .parse::<TriageState>()
                .unwrap_err()
                .contains("false_positive")
        );
        assert_eq!(TriageState::FalsePositive.verdict(), Some("false_positive"));
        assert_eq!(TriageState::Confirmed.verdict(), Some("true_positive"));
        assert_eq!(TriageState::Acknowledged.verdict(), None);
    }
}
