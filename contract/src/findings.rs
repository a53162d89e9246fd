//! Findings: what an analyst triages, the columns of `findings.parquet`.
//!
//! A finding is one behaviour of one host (or pair of hosts) in one run: a
//! scan is one finding however many flows it took. Eval writes them beside
//! `scores.parquet`, ranked by score; `nadir analyze` prints the same rows.
//! docs/findings.md gives the scoring formulas.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Many ports of one host, or one port of many hosts, probed.
    Scan,
    /// Half-open connections to one service at a high rate.
    Flood,
    /// Many short, alike sessions to one authentication service.
    BruteForce,
    /// Connections at regular intervals and of regular sizes.
    Beacon,
    /// A connection open for a long time, or still open at the end.
    LongConnection,
    /// Many distinct, long or random names under one domain.
    DnsTunnel,
    /// Far more bytes out of a host to one peer than it received.
    Exfiltration,
    /// A host that stopped behaving like its peers (the group detector).
    OutlierHost,
    /// Flows the learned detectors flagged that no behaviour explains.
    OutlierFlows,
}

impl FindingKind {
    pub const ALL: [FindingKind; 9] = [
        FindingKind::Scan,
        FindingKind::Flood,
        FindingKind::BruteForce,
        FindingKind::Beacon,
        FindingKind::LongConnection,
        FindingKind::DnsTunnel,
        FindingKind::Exfiltration,
        FindingKind::OutlierHost,
        FindingKind::OutlierFlows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Scan => "scan",
            FindingKind::Flood => "flood",
            FindingKind::BruteForce => "brute_force",
            FindingKind::Beacon => "beacon",
            FindingKind::LongConnection => "long_connection",
            FindingKind::DnsTunnel => "dns_tunnel",
            FindingKind::Exfiltration => "exfiltration",
            FindingKind::OutlierHost => "outlier_host",
            FindingKind::OutlierFlows => "outlier_flows",
        }
    }

    pub fn parse(name: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How urgent a finding is, from its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Critical from 0.85, high from 0.65, medium from 0.4.
    pub fn of(score: f64) -> Severity {
        if score >= 0.85 {
            Severity::Critical
        } else if score >= 0.65 {
            Severity::High
        } else if score >= 0.4 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(name: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// What a finding's peer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Host(IpAddr),
    Service(IpAddr, u16),
    /// A sweep of one port over many hosts.
    Port(u16),
    /// A domain, TLS SNI or HTTP host, lower-case.
    Name(String),
    /// `N peers`, `N sources`: many, none named.
    Many,
}

impl Peer {
    /// Reads a finding's `peer` (or `src`) as written by eval.
    pub fn of(text: &str) -> Peer {
        let text = text.trim();
        if let Ok(ip) = text.parse() {
            return Peer::Host(ip);
        }
        if let Some(port) = text.strip_prefix("port ").and_then(|p| p.parse().ok()) {
            return Peer::Port(port);
        }
        if let Some((host, port)) = text.rsplit_once(':') {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let (Ok(ip), Ok(port)) = (host.parse(), port.parse()) {
                return Peer::Service(ip, port);
            }
        }
        let many = text
            .split_once(' ')
            .is_some_and(|(n, _)| n.parse::<u64>().is_ok());
        if many || text.is_empty() {
            Peer::Many
        } else {
            Peer::Name(text.trim_end_matches('.').to_ascii_lowercase())
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Host(ip) | Peer::Service(ip, _) => Some(*ip),
            _ => None,
        }
    }

    pub fn port(&self) -> Option<u16> {
        match self {
            Peer::Service(_, port) | Peer::Port(port) => Some(*port),
            _ => None,
        }
    }
}

/// `host:port` as a finding's peer writes it (IPv6 in brackets).
pub fn service_peer(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One row of `findings.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// [`finding_id`] of kind, entities and run.
    pub finding_id: String,
    pub kind: FindingKind,
    /// The host the behaviour is about (a flood's: its sources, or how many).
    pub src: String,
    /// A host, `host:port`, `port N`, or a name (domain, SNI, HTTP host).
    pub peer: String,
    /// Of its evidence, nanoseconds since the Unix epoch.
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub flows: u64,
    pub bytes: u64,
    /// In [0, 1], comparable across kinds (docs/findings.md).
    pub score: f64,
    pub severity: Severity,
    /// The behavioural detector and every learned detector that flagged
    /// one of its flows.
    pub detectors: Vec<String>,
    /// `flow_id`s of its evidence in `scores.parquet`.
    pub evidence_flow_ids: Vec<u64>,
    /// In words, with the numbers against the baseline.
    pub explanation: String,
}

/// The stable id of a finding: the first 16 bytes of SHA-256 over kind,
/// source, peer and run, in hex. The same behaviour in the same run keeps
/// its id however often eval runs again.
pub fn finding_id(kind: FindingKind, src: &str, peer: &str, run_id: Uuid) -> String {
    let mut hash = Sha256::new();
    for part in [kind.name(), src, peer, &run_id.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

/// The findings of a run in the report: counts and where the rows are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingsSummary {
    pub findings: usize,
    /// By kind name, kinds with none left out.
    pub by_kind: std::collections::BTreeMap<String, usize>,
    /// By severity name.
    pub by_severity: std::collections::BTreeMap<String, usize>,
    /// Flows flagged by a learned detector that are evidence of a finding.
    pub flagged_flows_in_findings: usize,
    /// The first ten, ranked: kind, src, peer, score, explanation.
    pub top: Vec<FindingHeadline>,
}

/// A finding in one line, for reports and terminals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingHeadline {
    pub finding_id: String,
    pub kind: FindingKind,
    pub src: String,
    pub peer: String,
    pub score: f64,
    pub severity: Severity,
    pub explanation: String,
}

impl FindingsSummary {
    /// The summary of findings already ranked.
    pub fn of(findings: &[Finding], flagged_flows_in_findings: usize) -> Self {
        let mut by_kind = std::collections::BTreeMap::new();
        let mut by_severity = std::collections::BTreeMap::new();
        for f in findings {
            *by_kind.entry(f.kind.name().to_string()).or_insert(0) += 1;
            *by_severity
                .entry(f.severity.name().to_string())
                .or_insert(0) += 1;
        }
        FindingsSummary {
            findings: findings.len(),
            by_kind,
            by_severity,
            flagged_flows_in_findings,
            top: findings
                .iter()
                .take(10)
                .map(|f| FindingHeadline {
                    finding_id: f.finding_id.clone(),
                    kind: f.kind,
                    src: f.src.clone(),
                    peer: f.peer.clone(),
                    score: f.score,
                    severity: f.severity,
                    explanation: f.explanation.clone(),
                })
                .collect(),
        }
    }
}

/// A finding for tests: `kind` from `src` to `peer`, one flow, medium.
#[cfg(test)]
pub(crate) fn test_finding(kind: FindingKind, src: &str, peer: &str) -> Finding {
    Finding {
        finding_id: format!("{kind}-{src}-{peer}"),
        kind,
        src: src.into(),
        peer: peer.into(),
        first_seen_ns: 0,
        last_seen_ns: 0,
        flows: 1,
        bytes: 1,
        score: 0.5,
        severity: Severity::Medium,
        detectors: vec![],
        evidence_flow_ids: vec![],
        explanation: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_tell_entities_apart() {
        let run = Uuid::from_u128(7);
        let a = finding_id(FindingKind::Scan, "10.0.0.1", "10.0.0.2", run);
        assert_eq!(
            a,
            finding_id(FindingKind::Scan, "10.0.0.1", "10.0.0.2", run)
        );
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            finding_id(FindingKind::Scan, "10.0.0.1", "10.0.0.3", run)
        );
        assert_ne!(
            a,
            finding_id(FindingKind::Flood, "10.0.0.1", "10.0.0.2", run)
        );
        assert_ne!(
            a,
            finding_id(
                FindingKind::Scan,
                "10.0.0.1",
                "10.0.0.2",
                Uuid::from_u128(8)
            )
        );
        // The separator keeps "a" + "bc" apart from "ab" + "c".
        assert_ne!(
            finding_id(FindingKind::Scan, "a", "bc", run),
            finding_id(FindingKind::Scan, "ab", "c", run)
        );
    }

    #[test]
    fn severity_follows_the_score() {
        assert_eq!(Severity::of(0.9), Severity::Critical);
        assert_eq!(Severity::of(0.7), Severity::High);
        assert_eq!(Severity::of(0.5), Severity::Medium);
        assert_eq!(Severity::of(0.1), Severity::Low);
        assert!(Severity::Critical > Severity::Low);
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::parse(k.name()), Some(k));
        }
        assert_eq!(FindingKind::parse("nothing"), None);
    }
}
