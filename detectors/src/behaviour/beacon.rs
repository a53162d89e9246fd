//! Beacons: a host calling the same peer, or the same name, at regular
//! intervals with regular sizes, over much of the window (after RITA).
//!
//! Keyed twice: by (source, destination, port), and by (source, server
//! name), since proxies and CDNs give one server many addresses; a
//! name's beacon made of the same flows as an address's is not repeated.
//! A DNS question is keyed by the registered domain it asks about, never
//! by the resolver's address: the resolver is every client's proxy.

use std::collections::{BTreeMap, BTreeSet};

use nadir_contract::findings::FindingKind;
use nadir_contract::findings::service_peer;

use super::dns::registered_domain;
use super::{Behaviour, Flow, Judging, group_by, median, score, seconds_words, span_s};

/// Command and control: high from the start.
const BASE: f64 = 0.6;
/// Calls closer together than this are bursts (brute force, tunnels), not beacons.
const MIN_INTERVAL_S: f64 = 2.0;
/// Below this regularity of intervals nothing is a beacon, however alike
/// its sizes and long its span.
const MIN_INTERVAL_REGULARITY: f64 = 0.7;
/// Connections at which the count no longer adds to the score.
const FULL_COUNT: f64 = 20.0;

/// Regularity of some values in [0, 1]: 1 minus their median absolute
/// deviation over their median, and, with six values or more, also 1 minus
/// the absolute Bowley skewness, averaged.
fn regularity(values: &[f64]) -> f64 {
    let mid = median(values.to_vec());
    if mid <= 0.0 {
        return 0.0;
    }
    let madm = median(values.iter().map(|v| (v - mid).abs()).collect());
    let spread = 1.0 - (madm / mid).min(1.0);
    if values.len() < 6 {
        return spread;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let (q1, q2, q3) = (q(0.25), q(0.5), q(0.75));
    // Skewness means nothing where the values hardly vary at all.
    let skew = if q3 - q1 > 0.1 * mid {
        (q1 + q3 - 2.0 * q2) / (q3 - q1)
    } else {
        0.0
    };
    (spread + 1.0 - skew.abs()) / 2.0
}

struct Measured {
    score: f64,
    interval: f64,
    interval_regularity: f64,
    size: f64,
    size_regularity: f64,
    coverage: f64,
}

fn measure(flows: &[Flow], rows: &[usize], window_s: f64) -> Option<Measured> {
    let mut starts: Vec<i64> = rows.iter().map(|r| flows[*r].first_ns).collect();
    starts.sort_unstable();
    let intervals: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .collect();
    let interval = median(intervals.clone());
    if interval < MIN_INTERVAL_S {
        return None;
    }
    let sizes: Vec<f64> = rows.iter().map(|r| flows[*r].fwd_bytes as f64).collect();
    let interval_regularity = regularity(&intervals);
    let size_regularity = regularity(&sizes);
    let coverage = if window_s > 0.0 {
        (span_s(flows, rows) / window_s).min(1.0)
    } else {
        0.0
    };
    let count = (rows.len() as f64 / FULL_COUNT).min(1.0);
    Some(Measured {
        score: (interval_regularity + size_regularity + count.max(coverage)) / 3.0,
        interval,
        interval_regularity,
        size: median(sizes),
        size_regularity,
        coverage,
    })
}

/// The name a flow is addressed by: its TLS SNI or HTTP host, or the
/// registered domain of its DNS question.
fn name_of(f: &Flow) -> Option<String> {
    f.server_name
        .clone()
        .or_else(|| f.dns_query.as_deref().map(registered_domain))
}

pub(super) fn beacons(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let all: Vec<usize> = (0..flows.len()).collect();
    let window_s = span_s(flows, &all);
    // How many of the sources that talk at all reach each destination or
    // name: what most hosts do is infrastructure, not command and control.
    let sources: BTreeSet<&str> = flows.iter().map(|f| f.src.as_str()).collect();
    let mut reach: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in flows {
        reach.entry(f.dst.as_str()).or_default().insert(&f.src);
    }
    let names: Vec<Option<String>> = flows.iter().map(name_of).collect();
    for (f, name) in flows.iter().zip(&names) {
        if let Some(name) = name {
            reach.entry(name.as_str()).or_default().insert(&f.src);
        }
    }
    let prevalence = |peer: &str| -> f64 {
        let n = reach.get(peer).map_or(0, |s| s.len());
        if sources.len() < 3 {
            0.0
        } else {
            n as f64 / sources.len() as f64
        }
    };
    let mut found = Vec::new();
    let mut beaconing = vec![false; flows.len()];
    let judge = |src: String,
                 peer: String,
                 key: &str,
                 rows: Vec<usize>,
                 found: &mut Vec<Behaviour>|
     -> bool {
        if rows.len() < params.beacon_min_connections {
            return false;
        }
        let Some(m) = measure(flows, &rows, window_s) else {
            return false;
        };
        if m.score < params.beacon_min_score || m.interval_regularity < MIN_INTERVAL_REGULARITY {
            return false;
        }
        let share = prevalence(key);
        let strength =
            (m.score - params.beacon_min_score) / (1.0 - params.beacon_min_score).max(1e-9);
        // Never learned away, only told: a channel older than the
        // training window is still one.
        let before = match judging.host(&src) {
            None => String::new(),
            Some(None) => "; this host is not in the training window".to_string(),
            Some(Some(h)) => match h.beacons.get(&peer) {
                Some(s) => format!("; it beaconed to it in the training window too (score {s:.2})"),
                None => "; it did not beacon to it in the training window".to_string(),
            },
        };
        found.push(Behaviour {
            kind: FindingKind::Beacon,
            explanation: format!(
                "{} connections of {src} to {peer}, one every {} (interval regularity {:.0} %), \
                 {:.0} bytes each (size regularity {:.0} %), over {:.0} % of the window; \
                 {:.0} % of the hosts here talk to it; threshold score {:.2}, {} connections{before}",
                rows.len(),
                seconds_words(m.interval),
                m.interval_regularity * 100.0,
                m.size,
                m.size_regularity * 100.0,
                m.coverage * 100.0,
                share * 100.0,
                params.beacon_min_score,
                params.beacon_min_connections
            ),
            src,
            peer,
            score: score(BASE, strength) * (1.0 - 0.5 * share),
            flows: rows,
        });
        true
    };
    for ((src, dst, port), rows) in group_by(flows, |f| {
        f.dns_query
            .is_none()
            .then(|| (f.src.clone(), f.dst.clone(), f.dst_port))
    }) {
        if judge(
            src,
            service_peer(&dst, port),
            &dst,
            rows.clone(),
            &mut found,
        ) {
            for r in rows {
                beaconing[r] = true;
            }
        }
    }
    let mut by_name: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (r, (f, name)) in flows.iter().zip(&names).enumerate() {
        if let Some(name) = name {
            by_name
                .entry((f.src.clone(), name.clone()))
                .or_default()
                .push(r);
        }
    }
    for ((src, name), rows) in by_name {
        let known = rows.iter().filter(|r| beaconing[**r]).count();
        if known * 5 >= rows.len() * 4 {
            continue;
        }
        judge(src, name.clone(), &name, rows, &mut found);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::tests::{benign, numbered, tcp};
    use super::*;

    fn beacon(every: f64, n: usize, jitter: f64) -> Vec<Flow> {
        (0..n)
            .map(|i| {
                let wobble = if i % 2 == 0 { jitter } else { -jitter };
                let mut f = tcp(
                    "10.0.0.14",
                    "203.0.113.9",
                    443,
                    5.0 + i as f64 * every + wobble,
                    0.2,
                );
                f.fwd_bytes = 520;
                f.bwd_bytes = 330;
                f
            })
            .collect()
    }

    #[test]
    fn a_regular_caller_is_a_beacon() {
        let mut flows = benign();
        flows.extend(beacon(30.0, 12, 0.5));
        let found = beacons(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].src.as_str(), found[0].peer.as_str()),
            ("10.0.0.14", "203.0.113.9:443")
        );
        let text = &found[0].explanation;
        assert!(
            text.starts_with("12 connections of 10.0.0.14 to 203.0.113.9:443, one every 29 s"),
            "{text}"
        );
        assert!(text.contains("interval regularity 100 %"), "{text}");
    }

    #[test]
    fn irregular_calls_are_no_beacon() {
        let mut flows = benign();
        let times = [5.0, 9.0, 60.0, 61.0, 150.0, 160.0, 300.0, 420.0];
        flows.extend(
            times
                .iter()
                .map(|t| tcp("10.0.0.14", "203.0.113.9", 443, *t, 0.2)),
        );
        let found = beacons(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn a_beacon_behind_rotating_addresses_is_found_by_its_name() {
        let mut flows = benign();
        for (i, mut f) in beacon(30.0, 12, 0.5).into_iter().enumerate() {
            f.dst = format!("198.51.100.{}", i % 6);
            f.server_name = Some("updates.example.net".into());
            flows.push(f);
        }
        let found = beacons(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].peer, "updates.example.net");
    }

    /// Benign traffic, and one client asking its resolver every 6 s, the
    /// i-th time for `name(i)`.
    fn asking_every_6_s(name: impl Fn(usize) -> String) -> Vec<Flow> {
        let mut flows = benign();
        for i in 0..30 {
            let mut f = tcp("10.0.0.14", "10.0.0.53", 53, 5.0 + i as f64 * 6.0, 0.01);
            f.protocol = crate::behaviour::UDP;
            f.fwd_bytes = 62;
            f.dns_query = Some(name(i));
            flows.push(f);
        }
        numbered(flows)
    }

    #[test]
    fn a_client_asking_its_resolver_often_is_no_beacon() {
        let flows = asking_every_6_s(|i| format!("www.example{i}.org"));
        let found = beacons(&flows, &Judging::defaults(&flows));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn the_same_name_asked_on_a_clock_is_a_beacon_by_its_domain() {
        let flows = asking_every_6_s(|_| "check.c2.example.net".into());
        let found = beacons(&flows, &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].peer, "example.net");
    }

    #[test]
    fn bursts_are_no_beacon() {
        let flows = numbered(beacon(0.5, 60, 0.0));
        assert!(beacons(&flows, &Judging::defaults(&flows)).is_empty());
    }
}
