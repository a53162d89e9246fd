//! The training window's baseline: what each host and domain did before the
//! evaluated traffic, in the measures the behavioural detectors threshold.
//!
//! A documented default (`BehaviourParams`) is a floor: a host that touched
//! 30 ports of one server in the training window has its scan threshold
//! raised to `baseline_margin` × 30, a host unseen there keeps the default.
//! A baseline only ever raises thresholds, so a training window can make
//! findings rarer, never invent them. Volumes (sessions, bytes) are scaled
//! from the training window's length to the evaluated one's; counts of
//! distinct things (ports, hosts, names) and windowed or per-connection
//! measures (half-open connections within `flood_window_s`, a connection's
//! duration) are not. Beacons are never learned away (a command-and-control
//! channel older than the window is still one): the baseline only tells
//! the explanation whether the pair beaconed before.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use nadir_contract::params::BaselineSummary;

use super::dns::registered_domain;
use super::service::{auth_session, most_within};
use super::{BehaviourParams, Flow, TCP, group_by, span_s};

/// What the training window's flows did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Baseline {
    /// The RAW versions of the partitions it was measured on.
    pub partitions: Vec<String>,
    /// From the window's first packet to its last, seconds.
    pub window_s: f64,
    pub flows: u64,
    /// By host, as source (and as target of half-open connections).
    pub hosts: BTreeMap<String, HostBaseline>,
    /// By registered domain asked about.
    pub domains: BTreeMap<String, DomainBaseline>,
}

/// One host in the training window: the largest of each measure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostBaseline {
    /// Distinct ports it reached on one host.
    pub ports_on_one_host: usize,
    /// Distinct hosts it reached on one port.
    pub hosts_on_one_port: usize,
    /// Short sessions to one authentication service (as brute force counts them).
    pub auth_sessions: usize,
    /// Bytes it sent to one peer.
    pub bytes_to_one_peer: u64,
    /// Half-open TCP connections to one of its ports within `flood_window_s`.
    pub half_open_received: usize,
    /// Its connections open at least half of `long_min_s`: the longest, by
    /// peer service (`host:port`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub long_connections: BTreeMap<String, f64>,
    /// The peers it beaconed to, with the beacon's score.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub beacons: BTreeMap<String, f64>,
}

/// One registered domain in the training window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainBaseline {
    /// Distinct names one host asked under it.
    pub names: usize,
}

impl Baseline {
    /// Measures the training window's flows (pure).
    pub fn measure(flows: &[Flow], params: &BehaviourParams, partitions: Vec<String>) -> Baseline {
        let mut hosts: BTreeMap<String, HostBaseline> = BTreeMap::new();
        for ((src, _), rows) in group_by(flows, |f| Some((f.src.clone(), f.dst.clone()))) {
            let ports: BTreeSet<u16> = rows.iter().map(|r| flows[*r].dst_port).collect();
            let sent: u64 = rows.iter().map(|r| flows[*r].fwd_bytes).sum();
            let h = host(&mut hosts, &src);
            h.ports_on_one_host = h.ports_on_one_host.max(ports.len());
            h.bytes_to_one_peer = h.bytes_to_one_peer.max(sent);
        }
        for ((src, _, _), rows) in
            group_by(flows, |f| Some((f.src.clone(), f.protocol, f.dst_port)))
        {
            let reached: BTreeSet<&str> = rows.iter().map(|r| flows[*r].dst.as_str()).collect();
            let h = host(&mut hosts, &src);
            h.hosts_on_one_port = h.hosts_on_one_port.max(reached.len());
        }
        for ((src, _, _), rows) in group_by(flows, |f| {
            auth_session(f, params).then(|| (f.src.clone(), f.dst.clone(), f.dst_port))
        }) {
            let h = host(&mut hosts, &src);
            h.auth_sessions = h.auth_sessions.max(rows.len());
        }
        for ((dst, _), rows) in group_by(flows, |f| {
            (f.protocol == TCP && f.handshake == Some(false)).then(|| (f.dst.clone(), f.dst_port))
        }) {
            let starts: Vec<i64> = rows.iter().map(|r| flows[*r].first_ns).collect();
            let most = most_within(starts, params.flood_window_s);
            let h = host(&mut hosts, &dst);
            h.half_open_received = h.half_open_received.max(most);
        }
        for f in flows {
            let d = f.duration_s();
            if d >= params.long_min_s / 2.0 {
                let longest = host(&mut hosts, &f.src)
                    .long_connections
                    .entry(nadir_contract::findings::service_peer(&f.dst, f.dst_port))
                    .or_insert(0.0);
                *longest = longest.max(d);
            }
        }
        for b in super::beacon::beacons(flows, &super::Judging::new(params, None, flows)) {
            host(&mut hosts, &b.src).beacons.insert(b.peer, b.score);
        }
        let mut domains: BTreeMap<String, DomainBaseline> = BTreeMap::new();
        for ((_, domain), rows) in group_by(flows, |f| {
            f.dns_query
                .as_ref()
                .map(|q| (f.src.clone(), registered_domain(q)))
        }) {
            let names: BTreeSet<String> = rows
                .iter()
                .filter_map(|r| flows[*r].dns_query.as_deref())
                .map(|q| q.trim_end_matches('.').to_ascii_lowercase())
                .collect();
            let d = domains.entry(domain).or_default();
            d.names = d.names.max(names.len());
        }
        let all: Vec<usize> = (0..flows.len()).collect();
        Baseline {
            partitions,
            window_s: span_s(flows, &all),
            flows: flows.len() as u64,
            hosts,
            domains,
        }
    }

    /// What the manifest and the report say of it.
    pub fn summary(&self) -> BaselineSummary {
        BaselineSummary {
            partitions: self.partitions.clone(),
            window_s: self.window_s,
            flows: self.flows,
            hosts: self.hosts.len(),
            domains: self.domains.len(),
        }
    }
}

fn host<'h>(hosts: &'h mut BTreeMap<String, HostBaseline>, name: &str) -> &'h mut HostBaseline {
    hosts.entry(name.to_string()).or_default()
}

/// Whom a threshold is about, and what the training window knew of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Known {
    /// No training window apart from the evaluated traffic.
    NoBaseline,
    /// A baseline, without this host or domain.
    Unseen,
    /// Its figure in the training window (scaled, for a volume).
    Typical(f64),
}

/// A threshold for one host, service or domain: the default, or
/// `baseline_margin` × its figure in the training window, whichever is
/// higher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Threshold {
    pub value: f64,
    pub known: Known,
    /// The evaluated window's length over the training window's, where the
    /// figure is a volume scaled by it.
    pub scaled: Option<f64>,
}

impl Threshold {
    pub(crate) fn of(default: f64, known: Known, margin: f64) -> Threshold {
        let value = match known {
            Known::Typical(typical) => default.max(margin * typical),
            Known::NoBaseline | Known::Unseen => default,
        };
        Threshold {
            value,
            known,
            scaled: None,
        }
    }

    /// "typical for this host (its most in the training window): 3 ports;
    /// threshold 20 ports", in the unit `words` writes.
    pub(crate) fn words(&self, subject: &str, words: impl Fn(f64) -> String) -> String {
        match self.known {
            Known::NoBaseline => format!("threshold {}", words(self.value)),
            Known::Unseen => format!(
                "{subject} is not in the training window; threshold {}",
                words(self.value)
            ),
            Known::Typical(typical) => format!(
                "typical for {subject} (its most in the training window{}): {}; threshold {}",
                match self.scaled {
                    Some(scale) if (scale - 1.0).abs() > 0.05 => ", scaled to this window's length",
                    _ => "",
                },
                words(typical),
                words(self.value)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{benign, numbered, tcp};
    use super::*;

    #[test]
    fn a_window_is_measured_per_host() {
        let mut flows = benign();
        for p in 1..=30 {
            flows.push(tcp("10.0.0.70", "10.0.1.1", p, 10.0 + p as f64, 0.1));
        }
        let baseline = Baseline::measure(
            &numbered(flows),
            &BehaviourParams::default(),
            vec!["v1".into()],
        );
        let monitor = &baseline.hosts["10.0.0.70"];
        assert_eq!(monitor.ports_on_one_host, 30);
        let client = &baseline.hosts["10.0.0.10"];
        assert_eq!(client.ports_on_one_host, 1);
        let sent: u64 = benign()
            .iter()
            .filter(|f| f.src == "10.0.0.10")
            .map(|f| f.fwd_bytes)
            .sum();
        assert_eq!(client.bytes_to_one_peer, sent);
        let summary = baseline.summary();
        assert_eq!((summary.hosts, summary.flows), (9, 110));
        assert_eq!(summary.partitions, vec!["v1".to_string()]);
        let back: Baseline =
            serde_json::from_str(&serde_json::to_string(&baseline).unwrap()).unwrap();
        assert_eq!(back, baseline);
    }

    #[test]
    fn a_threshold_is_raised_by_what_was_typical_never_lowered() {
        let raised = Threshold::of(20.0, Known::Typical(30.0), 2.0);
        assert_eq!(raised.value, 60.0);
        assert_eq!(
            raised.words("this host", |v| format!("{v:.0} ports")),
            "typical for this host (its most in the training window): 30 ports; threshold 60 ports"
        );
        assert_eq!(Threshold::of(20.0, Known::Typical(3.0), 2.0).value, 20.0);
        assert_eq!(
            Threshold::of(20.0, Known::Unseen, 2.0).words("this host", |v| format!("{v:.0}")),
            "this host is not in the training window; threshold 20"
        );
    }
}
