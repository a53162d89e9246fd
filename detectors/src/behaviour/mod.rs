//! Behavioural detectors: known bad behaviours, found by counting.
//!
//! Where the learned detectors say "this flow is unusual", these say "this
//! host scanned that one" or "this pair beacons every 30 s", the way RITA
//! and Zeek's notices do: each groups the flows of one host, host pair or
//! name, measures the behaviour against a threshold, and returns a
//! [`Behaviour`] with its evidence flows, a score in [0, 1] and an
//! explanation with the numbers. Pure and deterministic: flows in,
//! behaviours out, in a stable order. The thresholds are
//! [`BehaviourParams`] (recorded in each evaluation's manifest), raised per
//! host by the training window's [`Baseline`] where there is one; their
//! defaults and the score formulas are in docs/findings.md.

mod baseline;
mod beacon;
mod dns;
mod scan;
mod service;
mod volume;

use std::collections::BTreeMap;

use nadir_contract::findings::FindingKind;
pub use nadir_contract::params::BehaviourParams;

pub use baseline::{Baseline, DomainBaseline, HostBaseline};
use baseline::{Known, Threshold};

/// One flow, as the behavioural detectors see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flow {
    pub id: u64,
    pub src: String,
    pub dst: String,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub first_ns: i64,
    pub last_ns: i64,
    pub fwd_packets: u64,
    pub bwd_packets: u64,
    pub fwd_bytes: u64,
    pub bwd_bytes: u64,
    /// TCP only: whether the three-way handshake completed.
    pub handshake: Option<bool>,
    /// Still open when the capture ended.
    pub still_open: bool,
    /// The server's name from the flow: TLS SNI, else the HTTP host.
    pub server_name: Option<String>,
    pub dns_query: Option<String>,
    /// The DNS question's record type (`A`, `TXT`, `NULL`...).
    pub dns_qtype: Option<String>,
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

impl Flow {
    pub fn duration_s(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }

    /// A TCP connection refused, reset before data, or never answered.
    pub fn failed(&self) -> bool {
        self.protocol == TCP && (self.handshake == Some(false) || self.bwd_packets == 0)
    }

    pub fn bytes(&self) -> u64 {
        self.fwd_bytes + self.bwd_bytes
    }
}

/// What one behavioural detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub kind: FindingKind,
    pub src: String,
    pub peer: String,
    /// Indices into the flows given.
    pub flows: Vec<usize>,
    /// In [0, 1] (docs/findings.md).
    pub score: f64,
    pub explanation: String,
}

/// Every behavioural detector over the flows, in a stable order (kind,
/// then source and peer); `baseline` is the training window's, where the
/// evaluated flows are not part of it.
pub fn detect(
    flows: &[Flow],
    params: &BehaviourParams,
    baseline: Option<&Baseline>,
) -> Vec<Behaviour> {
    let judging = Judging::new(params, baseline, flows);
    let mut found = Vec::new();
    found.extend(scan::scans(flows, &judging));
    found.extend(service::floods(flows, &judging));
    found.extend(service::brute_force(flows, &judging));
    found.extend(beacon::beacons(flows, &judging));
    found.extend(volume::long_connections(flows, &judging));
    found.extend(volume::exfiltration(flows, &judging));
    found.extend(dns::tunnels(flows, &judging));
    found.sort_by(|a, b| (a.kind, &a.src, &a.peer).cmp(&(b.kind, &b.src, &b.peer)));
    found
}

/// What the detectors judge by: the thresholds, and the training window's
/// baseline where there is one.
pub(crate) struct Judging<'a> {
    pub params: &'a BehaviourParams,
    pub baseline: Option<&'a Baseline>,
    /// The evaluated flows' span over the training window's (1 without a
    /// baseline): what a volume in the training window is scaled by.
    scale: f64,
}

impl<'a> Judging<'a> {
    pub(crate) fn new(
        params: &'a BehaviourParams,
        baseline: Option<&'a Baseline>,
        flows: &[Flow],
    ) -> Judging<'a> {
        let all: Vec<usize> = (0..flows.len()).collect();
        let window_s = span_s(flows, &all);
        let scale = match baseline {
            Some(b) if b.window_s > 0.0 && window_s > 0.0 => window_s / b.window_s,
            _ => 1.0,
        };
        Judging {
            params,
            baseline,
            scale,
        }
    }

    /// What the training window knew of a host.
    pub(crate) fn host(&self, host: &str) -> Option<Option<&'a HostBaseline>> {
        self.baseline.map(|b| b.hosts.get(host))
    }

    /// A host's threshold on a count of distinct things or a windowed
    /// measure: the default, or the margin over its training figure.
    pub(crate) fn count(
        &self,
        host: &str,
        default: f64,
        measure: impl Fn(&HostBaseline) -> f64,
    ) -> Threshold {
        let known = match self.host(host) {
            None => Known::NoBaseline,
            Some(None) => Known::Unseen,
            Some(Some(h)) => Known::Typical(measure(h)),
        };
        Threshold::of(default, known, self.params.baseline_margin)
    }

    /// A host's threshold on a volume (sessions, bytes): as [`Self::count`],
    /// its training figure scaled to the evaluated window's length.
    pub(crate) fn volume(
        &self,
        host: &str,
        default: f64,
        measure: impl Fn(&HostBaseline) -> f64,
    ) -> Threshold {
        let mut threshold = self.count(host, default, |h| measure(h) * self.scale);
        threshold.scaled = Some(self.scale);
        threshold
    }

    /// Judging by the defaults, with no training window.
    #[cfg(test)]
    pub(crate) fn defaults(flows: &[Flow]) -> Judging<'static> {
        static PARAMS: std::sync::LazyLock<BehaviourParams> =
            std::sync::LazyLock::new(BehaviourParams::default);
        Judging::new(&PARAMS, None, flows)
    }
}

/// How far past its threshold a measure is, in [0, 1): 0 at the threshold,
/// 0.5 at four times it, approaching 1 far beyond.
pub fn excess(value: f64, threshold: f64) -> f64 {
    if value.is_nan() || value <= threshold || threshold <= 0.0 {
        return 0.0;
    }
    let r = (value / threshold).ln();
    r / (r + 4f64.ln())
}

/// A kind's score: its base, and the rest of the way to 1 by `strength`
/// (in [0, 1]).
pub(crate) fn score(base: f64, strength: f64) -> f64 {
    (base + (1.0 - base) * strength.clamp(0.0, 1.0)).clamp(0.0, 1.0)
}

/// Flows grouped by a key, keys in order.
pub(crate) fn group_by<K: Ord>(
    flows: &[Flow],
    mut key: impl FnMut(&Flow) -> Option<K>,
) -> BTreeMap<K, Vec<usize>> {
    let mut groups: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, f) in flows.iter().enumerate() {
        if let Some(k) = key(f) {
            groups.entry(k).or_default().push(i);
        }
    }
    groups
}

/// The time from the first to the last packet of some flows, seconds.
pub(crate) fn span_s(flows: &[Flow], rows: &[usize]) -> f64 {
    let first = rows.iter().map(|r| flows[*r].first_ns).min().unwrap_or(0);
    let last = rows.iter().map(|r| flows[*r].last_ns).max().unwrap_or(0);
    last.saturating_sub(first) as f64 / 1e9
}

/// The median of some values (0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Mean and coefficient of variation (standard deviation over mean; 0 for
/// a mean of 0).
pub(crate) fn mean_cv(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, if mean > 0.0 { var.sqrt() / mean } else { 0.0 })
}

/// Seconds in words: "0.2 s", "14 s", "3.5 min", "2.0 h".
pub fn seconds_words(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Bytes in words: "830 B", "12.0 MB".
pub fn bytes_words(b: f64) -> String {
    if b < 1e3 {
        format!("{b:.0} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TCP flow of `src` to `dst:port` at `t` seconds, lasting `secs`.
    pub fn tcp(src: &str, dst: &str, port: u16, t: f64, secs: f64) -> Flow {
        Flow {
            id: 0,
            src: src.into(),
            dst: dst.into(),
            src_port: 40_000,
            dst_port: port,
            protocol: TCP,
            first_ns: (t * 1e9) as i64,
            last_ns: ((t + secs) * 1e9) as i64,
            fwd_packets: 6,
            bwd_packets: 5,
            fwd_bytes: 900,
            bwd_bytes: 700,
            handshake: Some(true),
            still_open: false,
            server_name: None,
            dns_query: None,
            dns_qtype: None,
        }
    }

    /// Ids in order, as the pipeline numbers flows.
    pub fn numbered(mut flows: Vec<Flow>) -> Vec<Flow> {
        for (i, f) in flows.iter_mut().enumerate() {
            f.id = i as u64;
        }
        flows
    }

    /// A quiet, ordinary network: clients browsing a web server.
    pub fn benign() -> Vec<Flow> {
        let mut flows = Vec::new();
        for c in 0..8 {
            for k in 0..10 {
                let mut f = tcp(
                    &format!("10.0.0.{}", 10 + c),
                    "10.0.1.1",
                    443,
                    (c * 37 + k * 13) as f64,
                    0.8,
                );
                f.fwd_bytes = 600 + 97 * ((c * 7 + k * 3) % 11) as u64;
                f.bwd_bytes = 20_000 + 1_000 * ((c + k) % 7) as u64;
                flows.push(f);
            }
        }
        flows
    }

    #[test]
    fn nothing_in_ordinary_traffic() {
        assert_eq!(
            detect(&numbered(benign()), &BehaviourParams::default(), None),
            vec![]
        );
    }

    /// `ports` probes of `src` to one server from `t`, most refused.
    fn probes(src: &str, ports: u16, t: f64) -> Vec<Flow> {
        (1..=ports)
            .map(|p| {
                let mut f = tcp(src, "10.0.1.1", 1000 + p, t + p as f64 * 0.01, 0.001);
                f.handshake = Some(false);
                f.bwd_packets = 1;
                f
            })
            .collect()
    }

    /// The benign traffic moved on by `s` seconds.
    fn later(flows: Vec<Flow>, s: f64) -> Vec<Flow> {
        let ns = (s * 1e9) as i64;
        flows
            .into_iter()
            .map(|mut f| {
                f.first_ns += ns;
                f.last_ns += ns;
                f
            })
            .collect()
    }

    #[test]
    fn a_training_window_raises_a_hosts_thresholds_and_explains_against_it() {
        let params = BehaviourParams::default();
        // Training: a monitoring host checks 30 ports of the server.
        let mut training = benign();
        training.extend(probes("10.0.0.70", 30, 50.0));
        let baseline = Baseline::measure(&numbered(training), &params, vec!["day-1".into()]);

        // Evaluated: the monitor checks 40, a client and an unknown host scan 40.
        let mut flows = later(benign(), 1000.0);
        flows.extend(probes("10.0.0.70", 40, 1050.0));
        flows.extend(probes("10.0.0.11", 40, 1060.0));
        flows.extend(probes("10.0.0.99", 40, 1070.0));
        let flows = numbered(flows);

        let without: Vec<String> = detect(&flows, &params, None)
            .into_iter()
            .map(|b| b.src)
            .collect();
        assert_eq!(without, ["10.0.0.11", "10.0.0.70", "10.0.0.99"]);

        let found = detect(&flows, &params, Some(&baseline));
        let srcs: Vec<&str> = found.iter().map(|b| b.src.as_str()).collect();
        assert_eq!(srcs, ["10.0.0.11", "10.0.0.99"], "{found:#?}");
        assert!(
            found[0].explanation.ends_with(
                "typical for this host (its most in the training window): 1 port(s) of one host; \
                 threshold 20 port(s) of one host"
            ),
            "{}",
            found[0].explanation
        );
        assert!(
            found[1].explanation.ends_with(
                "this host is not in the training window; threshold 20 port(s) of one host"
            ),
            "{}",
            found[1].explanation
        );
    }

    #[test]
    fn volumes_in_the_training_window_are_scaled_to_the_evaluated_one() {
        let params = BehaviourParams::default();
        // Training: 10 000 s in which a backup host sends 100 MB to its store.
        let mut training = benign();
        let mut backup = tcp("10.0.0.12", "10.0.9.9", 873, 10.0, 9_990.0);
        backup.fwd_bytes = 100_000_000;
        backup.bwd_bytes = 1_000;
        training.push(backup);
        let baseline = Baseline::measure(&numbered(training), &params, vec![]);
        assert!(baseline.window_s > 9_999.0);

        // Evaluated: 400 s, in which it sends 3.5 MB to a new peer and
        // another host sends 6 MB: 100 MB over 10 000 s is 4 MB in 400 s,
        // twice that is the backup host's threshold; the other keeps 5 MB.
        let mut flows = later(benign(), 20_000.0);
        for (src, bytes) in [("10.0.0.12", 7_500_000), ("10.0.0.13", 6_000_000)] {
            let mut leak = tcp(src, "203.0.113.7", 443, 20_100.0, 300.0);
            leak.fwd_bytes = bytes;
            leak.bwd_bytes = 1_000;
            flows.push(leak);
        }
        let flows = numbered(flows);
        let found = detect(&flows, &params, Some(&baseline));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].src, "10.0.0.13");
        assert!(
            found[0].explanation.contains(
                "typical for this host (its most in the training window, scaled to this window's length)"
            ),
            "{}",
            found[0].explanation
        );
        // Without the baseline both are exfiltration.
        assert_eq!(detect(&flows, &params, None).len(), 2);
    }

    #[test]
    fn a_pair_that_held_long_connections_before_is_not_news_and_a_beacon_is_still_one() {
        let params = BehaviourParams::default();
        let mut training = benign();
        training.push(tcp("10.0.0.15", "192.0.2.1", 1194, 0.0, 7_200.0));
        let c2 = |t0: f64| -> Vec<Flow> {
            (0..12)
                .map(|i| {
                    let mut f = tcp("10.0.0.14", "203.0.113.9", 443, t0 + i as f64 * 30.0, 0.2);
                    f.fwd_bytes = 520;
                    f
                })
                .collect()
        };
        training.extend(c2(10.0));
        let baseline = Baseline::measure(&numbered(training), &params, vec![]);
        assert!(
            baseline.hosts["10.0.0.14"]
                .beacons
                .contains_key("203.0.113.9:443")
        );

        let mut flows = later(benign(), 10_000.0);
        let mut vpn = tcp("10.0.0.15", "192.0.2.1", 1194, 10_000.0, 3_600.0);
        vpn.still_open = true;
        flows.push(vpn);
        flows.extend(c2(10_010.0));
        let flows = numbered(flows);
        assert_eq!(
            detect(&flows, &params, None)
                .iter()
                .map(|b| b.kind)
                .collect::<Vec<_>>(),
            [FindingKind::Beacon, FindingKind::LongConnection]
        );
        let found = detect(&flows, &params, Some(&baseline));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::Beacon);
        assert!(
            found[0]
                .explanation
                .contains("; it beaconed to it in the training window too (score 0."),
            "{}",
            found[0].explanation
        );
    }

    #[test]
    fn excess_is_zero_at_the_threshold_and_rises() {
        assert_eq!(excess(10.0, 10.0), 0.0);
        assert_eq!(excess(5.0, 10.0), 0.0);
        assert!((excess(40.0, 10.0) - 0.5).abs() < 1e-12);
        assert!(excess(1000.0, 10.0) > excess(100.0, 10.0));
        assert!(excess(1e12, 10.0) < 1.0);
    }

    #[test]
    fn words() {
        assert_eq!(seconds_words(0.25), "0.2 s");
        assert_eq!(seconds_words(95.0), "95 s");
        assert_eq!(bytes_words(12_000_000.0), "12.0 MB");
    }
}
