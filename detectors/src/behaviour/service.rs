//! Attacks on one service: floods (half-open connections at a high rate)
//! and brute force (many short, alike sessions to an authentication port).

use std::collections::BTreeSet;

use nadir_contract::findings::FindingKind;
use nadir_contract::findings::service_peer;

use super::baseline::{Known, Threshold};
use super::{
    Behaviour, BehaviourParams, Flow, Judging, TCP, bytes_words, excess, group_by, mean_cv, score,
    seconds_words, span_s,
};

/// A flood takes a service down: high from the start.
const FLOOD_BASE: f64 = 0.6;
/// Brute force may succeed: above a scan.
const BRUTE_BASE: f64 = 0.55;

/// The most of some start times within any `window_s` seconds.
pub(super) fn most_within(mut starts: Vec<i64>, window_s: f64) -> usize {
    starts.sort_unstable();
    let window_ns = (window_s * 1e9) as i64;
    let (mut best, mut start) = (0, 0);
    for end in 0..starts.len() {
        while starts[end] - starts[start] > window_ns {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// A completed, short TCP session to an authentication port: what brute
/// force repeats.
pub(super) fn auth_session(f: &Flow, params: &BehaviourParams) -> bool {
    f.protocol == TCP
        && f.handshake == Some(true)
        && f.duration_s() <= params.brute_max_session_s
        && params.auth_ports.contains(&f.dst_port)
}

pub(super) fn floods(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let half_open = group_by(flows, |f| {
        (f.protocol == TCP && f.handshake == Some(false)).then(|| (f.dst.clone(), f.dst_port))
    });
    let mut found = Vec::new();
    for ((dst, port), mut rows) in half_open {
        // A target that received no half-open connection in the training
        // window had none: it is known as a target, with zero.
        let known = match judging.host(&dst) {
            None => Known::NoBaseline,
            Some(h) => Known::Typical(h.map_or(0.0, |h| h.half_open_received as f64)),
        };
        let threshold = Threshold::of(
            params.flood_min_half_open as f64,
            known,
            params.baseline_margin,
        );
        if (rows.len() as f64) < threshold.value {
            continue;
        }
        rows.sort_by_key(|r| flows[*r].first_ns);
        let best = most_within(
            rows.iter().map(|r| flows[*r].first_ns).collect(),
            params.flood_window_s,
        );
        if (best as f64) < threshold.value {
            continue;
        }
        let sources: BTreeSet<&str> = rows.iter().map(|r| flows[*r].src.as_str()).collect();
        let src = if sources.len() == 1 {
            sources
                .iter()
                .next()
                .map(|s| s.to_string())
                .unwrap_or_default()
        } else {
            format!("{} sources", sources.len())
        };
        let span = span_s(flows, &rows).max(1e-3);
        let window = seconds_words(params.flood_window_s);
        found.push(Behaviour {
            kind: FindingKind::Flood,
            explanation: format!(
                "{} half-open TCP connections to {dst}:{port} from {src} in {} ({:.0} a second); {}",
                rows.len(),
                seconds_words(span),
                rows.len() as f64 / span,
                threshold.words("this target", |v| format!("{v:.0} within {window}"))
            ),
            src,
            peer: service_peer(&dst, port),
            score: score(FLOOD_BASE, excess(best as f64, threshold.value / 2.0)),
            flows: rows,
        });
    }
    found
}

pub(super) fn brute_force(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let sessions = group_by(flows, |f| {
        auth_session(f, params).then(|| (f.src.clone(), f.dst.clone(), f.dst_port))
    });
    let mut found = Vec::new();
    for ((src, dst, port), rows) in sessions {
        let threshold = judging.volume(&src, params.brute_min_sessions as f64, |h| {
            h.auth_sessions as f64
        });
        if (rows.len() as f64) < threshold.value {
            continue;
        }
        let sizes: Vec<f64> = rows.iter().map(|r| flows[*r].fwd_bytes as f64).collect();
        let (mean, cv) = mean_cv(&sizes);
        if cv > params.brute_max_size_cv {
            continue;
        }
        let strength = excess(rows.len() as f64, threshold.value / 2.0) * (1.0 - cv);
        found.push(Behaviour {
            kind: FindingKind::BruteForce,
            explanation: format!(
                "{} sessions of {src} to the authentication service {dst}:{port} in {}, \
                 alike in size ({} sent on average, varying {:.0} %); {}",
                rows.len(),
                seconds_words(span_s(flows, &rows)),
                bytes_words(mean),
                cv * 100.0,
                threshold.words("this host", |v| format!(
                    "{v:.0} sessions to one authentication service"
                ))
            ),
            src,
            peer: service_peer(&dst, port),
            score: score(BRUTE_BASE, strength),
            flows: rows,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::tests::{benign, numbered, tcp};
    use super::*;

    #[test]
    fn a_syn_flood_from_spoofed_sources_is_one_finding() {
        let mut flows = benign();
        for i in 0..150 {
            let mut f = tcp(
                &format!("198.51.{}.{}", i / 200, i % 200 + 1),
                "10.0.1.80",
                80,
                50.0 + i as f64 * 0.1,
                0.0,
            );
            f.handshake = Some(false);
            f.fwd_packets = 1;
            f.bwd_packets = 1;
            flows.push(f);
        }
        let found = floods(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].src, "150 sources");
        assert_eq!(found[0].peer, "10.0.1.80:80");
        assert!(
            found[0]
                .explanation
                .starts_with("150 half-open TCP connections to 10.0.1.80:80"),
            "{}",
            found[0].explanation
        );
    }

    #[test]
    fn half_open_connections_spread_over_hours_are_no_flood() {
        let flows: Vec<Flow> = (0..150)
            .map(|i| {
                let mut f = tcp("10.0.0.9", "10.0.1.80", 80, i as f64 * 120.0, 0.0);
                f.handshake = Some(false);
                f
            })
            .collect();
        assert!(floods(&numbered(flows.clone()), &Judging::defaults(&flows)).is_empty());
    }

    #[test]
    fn alike_ssh_sessions_are_brute_force_and_varied_ones_are_not() {
        let mut flows = benign();
        flows
            .extend((0..60).map(|i| tcp("10.0.0.66", "10.0.1.22", 22, 10.0 + i as f64 * 0.6, 0.4)));
        let found = brute_force(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].peer, "10.0.1.22:22");
        assert!(
            found[0].explanation.starts_with("60 sessions of 10.0.0.66"),
            "{}",
            found[0].explanation
        );

        // An administrator's sessions: sizes all over the place.
        for (i, f) in flows.iter_mut().filter(|f| f.dst_port == 22).enumerate() {
            f.fwd_bytes = 500 + (i as u64 % 7) * 40_000;
        }
        assert!(brute_force(&numbered(flows.clone()), &Judging::defaults(&flows)).is_empty());
    }
}
