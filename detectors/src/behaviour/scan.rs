//! Scans: one host probing many ports of another (vertical), or one port
//! of many hosts (horizontal), most probes refused or unanswered.

use std::collections::BTreeSet;

use nadir_contract::findings::FindingKind;

use super::{
    Behaviour, Flow, Judging, UDP, excess, group_by, median, score, seconds_words, span_s,
};

/// Scans start at medium: loud, common, rarely the worst of a day.
const BASE: f64 = 0.5;

fn probe_failed(f: &Flow) -> bool {
    f.failed() || (f.protocol == UDP && f.bwd_packets == 0)
}

pub(super) fn scans(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let mut found = Vec::new();
    let by_pair = group_by(flows, |f| Some((f.src.clone(), f.dst.clone())));
    let typical = median(
        by_pair
            .values()
            .map(|rows| {
                rows.iter()
                    .map(|r| flows[*r].dst_port)
                    .collect::<BTreeSet<_>>()
                    .len() as f64
            })
            .collect(),
    );
    let mut in_vertical = vec![false; flows.len()];
    for ((src, dst), rows) in &by_pair {
        let ports: BTreeSet<u16> = rows.iter().map(|r| flows[*r].dst_port).collect();
        let failed =
            rows.iter().filter(|r| probe_failed(&flows[**r])).count() as f64 / rows.len() as f64;
        let threshold = judging.count(src, params.scan_min_targets as f64, |h| {
            h.ports_on_one_host as f64
        });
        if (ports.len() as f64) < threshold.value || failed < params.scan_min_failed_share {
            continue;
        }
        for r in rows {
            in_vertical[*r] = true;
        }
        let strength = excess(ports.len() as f64, threshold.value / 2.0) * failed;
        let against = match judging.baseline {
            None => format!(
                "typical in this run: {typical:.0} port(s) per host pair; threshold {:.0} ports",
                threshold.value
            ),
            Some(_) => threshold.words("this host", |v| format!("{v:.0} port(s) of one host")),
        };
        found.push(Behaviour {
            kind: FindingKind::Scan,
            src: src.clone(),
            peer: dst.clone(),
            flows: rows.clone(),
            score: score(BASE, strength),
            explanation: format!(
                "{} ports of {dst} probed by {src} in {}, {:.0} % refused or unanswered; {against}",
                ports.len(),
                seconds_words(span_s(flows, rows)),
                failed * 100.0,
            ),
        });
    }
    let by_port = group_by(flows, |f| Some((f.src.clone(), f.protocol, f.dst_port)));
    for ((src, _, port), rows) in by_port {
        let rows: Vec<usize> = rows.into_iter().filter(|r| !in_vertical[*r]).collect();
        let hosts: BTreeSet<&str> = rows.iter().map(|r| flows[*r].dst.as_str()).collect();
        let threshold = judging.count(&src, params.scan_min_targets as f64, |h| {
            h.hosts_on_one_port as f64
        });
        if (hosts.len() as f64) < threshold.value {
            continue;
        }
        let failed =
            rows.iter().filter(|r| probe_failed(&flows[**r])).count() as f64 / rows.len() as f64;
        if failed < params.scan_min_failed_share {
            continue;
        }
        let strength = excess(hosts.len() as f64, threshold.value / 2.0) * failed;
        found.push(Behaviour {
            kind: FindingKind::Scan,
            src: src.clone(),
            peer: format!("port {port}"),
            explanation: format!(
                "port {port} of {} hosts probed by {src} in {}, {:.0} % refused or unanswered; {}",
                hosts.len(),
                seconds_words(span_s(flows, &rows)),
                failed * 100.0,
                threshold.words("this host", |v| format!("{v:.0} hosts on one port"))
            ),
            flows: rows,
            score: score(BASE, strength),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::tests::{benign, numbered, tcp};
    use super::*;

    fn vertical(ports: u16, refused: bool) -> Vec<Flow> {
        (1..=ports)
            .map(|p| {
                let mut f = tcp("10.0.0.66", "10.0.0.12", p, 100.0 + p as f64 * 0.01, 0.001);
                if refused {
                    f.handshake = Some(false);
                    f.bwd_packets = 1;
                }
                f
            })
            .collect()
    }

    #[test]
    fn a_port_scan_is_one_finding() {
        let mut flows = benign();
        flows.extend(vertical(100, true));
        let flows = numbered(flows);
        let found = scans(&flows, &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        let scan = &found[0];
        assert_eq!(
            (scan.src.as_str(), scan.peer.as_str()),
            ("10.0.0.66", "10.0.0.12")
        );
        assert_eq!(scan.flows.len(), 100);
        assert!(scan.score > 0.6 && scan.score < 1.0, "{}", scan.score);
        assert!(
            scan.explanation
                .starts_with("100 ports of 10.0.0.12 probed by 10.0.0.66"),
            "{}",
            scan.explanation
        );
        assert!(
            scan.explanation.contains("100 % refused"),
            "{}",
            scan.explanation
        );
    }

    #[test]
    fn many_answered_connections_are_not_a_scan() {
        let flows = numbered(vertical(100, false));
        assert!(scans(&flows, &Judging::defaults(&flows)).is_empty());
    }

    #[test]
    fn a_sweep_of_one_port_is_a_scan() {
        let flows = numbered(
            (0..50)
                .map(|h| {
                    let mut f = tcp("10.0.0.66", &format!("10.0.2.{h}"), 445, h as f64, 0.01);
                    f.bwd_packets = 0;
                    f.handshake = Some(false);
                    f
                })
                .collect(),
        );
        let found = scans(&flows, &Judging::defaults(&flows));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].peer, "port 445");
        assert!(
            found[0].explanation.starts_with("port 445 of 50 hosts"),
            "{}",
            found[0].explanation
        );
    }
}
