//! Behavioural detectors: known bad behaviours, found by counting.
//!
//! Where the learned detectors say "this flow is unusual", these say "this
//! host scanned that one" or "this pair beacons every 30 s", the way RITA
//! and Zeek's notices do: each groups the flows of one host, host pair or
//! name, measures the behaviour against a threshold, and returns a
//! [`Behaviour`] with its evidence flows, a score in [0, 1] and an
//! explanation with the numbers. Pure and deterministic: flows in,
//! behaviours out, in a stable order. The thresholds are
//! [`BehaviourParams`] (recorded in each evaluation's manifest); their
//! defaults and the score formulas are in docs/findings.md.

mod beacon;
mod dns;
mod scan;
mod service;
mod volume;

use std::collections::BTreeMap;

use nadir_contract::findings::FindingKind;
pub use nadir_contract::params::BehaviourParams;

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
/// then source and peer).
pub fn detect(flows: &[Flow], params: &BehaviourParams) -> Vec<Behaviour> {
    let mut found = Vec::new();
    found.extend(scan::scans(flows, params));
    found.extend(service::floods(flows, params));
    found.extend(service::brute_force(flows, params));
    found.extend(beacon::beacons(flows, params));
    found.extend(volume::long_connections(flows, params));
    found.extend(volume::exfiltration(flows, params));
    found.extend(dns::tunnels(flows, params));
    found.sort_by(|a, b| (a.kind, &a.src, &a.peer).cmp(&(b.kind, &b.src, &b.peer)));
    found
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
            detect(&numbered(benign()), &BehaviourParams::default()),
            vec![]
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
