//! From scored flows to findings: what the analyst triages.
//!
//! The behavioural detectors (`nadir_detectors::behaviour`) find scans,
//! floods, brute force, beacons, long connections, exfiltration and DNS
//! tunnels in the run's flows; each learned detector that flagged one of a
//! behaviour's flows is named beside it and raises its score a little. The
//! flagged flows no behaviour explains are grouped by source host: one
//! `outlier_flows` finding per host for the flow-level detectors, one
//! `outlier_host` finding per host for the group detector. Ranked by score
//! (docs/findings.md gives the formulas). Pure: the scores table in, rows
//! out.

use std::collections::{BTreeMap, BTreeSet};

use nadir_contract::findings::{Finding, FindingKind, Severity, finding_id, service_peer};
use nadir_detectors::behaviour::{self, Baseline, BehaviourParams, Flow, bytes_words, median};
use polars::prelude::*;
use uuid::Uuid;

/// A detector whose flags feed the findings: its column names in the
/// scores table, and whether it judges hosts rather than flows.
pub struct Flagger {
    pub name: String,
    pub host_level: bool,
    /// The share of benign flows its threshold flags by design (the
    /// training rows above it): the baseline a host's flags are held to.
    pub training_rate: f64,
}

/// How unlikely a host's count of flagged flows must be, were all its flows
/// benign and flagged at the detectors' training rate, before they become an
/// `outlier_flows` finding.
const OUTLIER_SIGNIFICANCE: f64 = 1e-3;

/// How much agreement of the learned detectors adds to a behaviour's score:
/// at most this share of the way left to 1.
const AGREEMENT_WEIGHT: f64 = 0.25;

/// The findings of a scored run, ranked; `baseline` is the training
/// window's, where there is one apart from the scored flows.
pub fn find(
    scores: &DataFrame,
    flaggers: &[Flagger],
    run_id: Uuid,
    params: &BehaviourParams,
    baseline: Option<&Baseline>,
) -> Result<Vec<Finding>, String> {
    let flows = flows_of(scores)?;
    let flagged: Vec<(&Flagger, Vec<bool>)> = flaggers
        .iter()
        .map(|f| {
            Ok((
                f,
                bools(scores, &format!("flagged_{}", f.name))?.unwrap_or_default(),
            ))
        })
        .collect::<Result<_, String>>()?;
    let flow_level = flagged.iter().filter(|(f, _)| !f.host_level).count();
    let explanations = strings(scores, "explanation")?.unwrap_or_default();

    let mut findings = Vec::new();
    let mut explained = vec![false; flows.len()];
    if flows.iter().any(|f| !f.src.is_empty()) {
        for b in behaviour::detect(&flows, params, baseline) {
            let names: Vec<String> = flagged
                .iter()
                .filter(|(_, v)| b.flows.iter().any(|r| v.get(*r).copied().unwrap_or(false)))
                .map(|(f, _)| f.name.clone())
                .collect();
            let agreeing = flagged
                .iter()
                .filter(|(f, v)| {
                    !f.host_level && b.flows.iter().any(|r| v.get(*r).copied().unwrap_or(false))
                })
                .count();
            let agreement = if flow_level == 0 {
                0.0
            } else {
                agreeing as f64 / flow_level as f64
            };
            let score = b.score + (1.0 - b.score) * AGREEMENT_WEIGHT * agreement;
            let mut detectors = vec![b.kind.name().to_string()];
            detectors.extend(names);
            for r in &b.flows {
                explained[*r] = true;
            }
            findings.push(finding(
                run_id,
                b.kind,
                b.src,
                b.peer,
                &flows,
                &b.flows,
                score,
                detectors,
                b.explanation,
            ));
        }
    }

    // What the learned detectors flagged and no behaviour explains, by host.
    for host_level in [false, true] {
        let mut by_src: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (r, f) in flows.iter().enumerate() {
            let agreeing = flagged
                .iter()
                .filter(|(d, v)| d.host_level == host_level && v.get(r).copied().unwrap_or(false))
                .count();
            let of = flagged
                .iter()
                .filter(|(d, _)| d.host_level == host_level)
                .count();
            // A flow only a minority of the detectors flagged stays in the
            // scores, not in the queue (a majority: 1 of 1, 2 of 2 or 3).
            if agreeing > 0 && agreeing * 2 > of && !explained[r] {
                by_src.entry(f.src.clone()).or_default().push(r);
            }
        }
        // How many flows each host has that no behaviour explains.
        let mut unexplained: BTreeMap<&str, usize> = BTreeMap::new();
        for (r, f) in flows.iter().enumerate() {
            if !explained[r] {
                *unexplained.entry(f.src.as_str()).or_insert(0) += 1;
            }
        }
        let training_rate = flagged
            .iter()
            .filter(|(d, _)| d.host_level == host_level)
            .map(|(d, _)| d.training_rate)
            .fold(0.0, f64::max);
        // Where the detectors flag more of every host than they did in
        // training (drift, or a group detector that finds every host odd),
        // the typical host of this run is the baseline.
        let typical_rate = median(
            unexplained
                .iter()
                .map(|(src, n)| by_src.get(*src).map_or(0, Vec::len) as f64 / *n as f64)
                .collect(),
        );
        let rate = training_rate.max(typical_rate);
        for (src, rows) in by_src {
            let n = unexplained.get(src.as_str()).copied().unwrap_or(rows.len());
            let expected = rate * n as f64;
            let surprise = poisson_tail(rows.len(), expected);
            // As many flags as the thresholds let through on benign
            // traffic are the thresholds' cost, not a finding.
            if surprise > OUTLIER_SIGNIFICANCE {
                continue;
            }
            for r in &rows {
                explained[*r] = true;
            }
            let per_detector: Vec<(String, usize)> = flagged
                .iter()
                .filter(|(d, _)| d.host_level == host_level)
                .map(|(d, v)| {
                    (
                        d.name.clone(),
                        rows.iter()
                            .filter(|r| v.get(**r).copied().unwrap_or(false))
                            .count(),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            let peers: BTreeSet<String> = rows.iter().map(|r| peer_of(&flows[*r])).collect();
            let peer = if peers.len() == 1 {
                peers.iter().next().cloned().unwrap_or_default()
            } else {
                format!("{} peers", peers.len())
            };
            let src_name = if src.is_empty() {
                "flows without hosts".to_string()
            } else {
                src.clone()
            };
            let by = per_detector
                .iter()
                .map(|(d, n)| format!("{d} ({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            let (kind, score, explanation) = if host_level {
                (
                    FindingKind::OutlierHost,
                    0.2 + 0.2
                        * (per_detector.len() as f64 / (flagged.len() - flow_level).max(1) as f64),
                    format!(
                        "{src_name} stood out from the other hosts: {} of its {n} flows, to \
                         {peer}, in the periods the group detector flagged ({by}); at {} \
                         (the typical host here) about {} were expected",
                        rows.len(),
                        percent_words(rate),
                        count_words(expected),
                    ),
                )
            } else {
                // The flow most detectors agree on, and why they flagged it.
                let agreement = |r: usize| {
                    flagged
                        .iter()
                        .filter(|(d, v)| !d.host_level && v.get(r).copied().unwrap_or(false))
                        .count()
                };
                let top = rows
                    .iter()
                    .copied()
                    .max_by_key(|r| (agreement(*r), std::cmp::Reverse(*r)))
                    .unwrap_or(0);
                let share = agreement(top) as f64 / flow_level.max(1) as f64;
                let why = explanations
                    .get(top)
                    .and_then(|e| e.as_deref())
                    .map(features_named)
                    .filter(|f| !f.is_empty())
                    .map(|f| format!("; what stood out most: {f}"))
                    .unwrap_or_default();
                // From 0 at the significance level to 1 at a chance of
                // 1e-9, scaled by how many detectors agreed.
                let rarity =
                    ((OUTLIER_SIGNIFICANCE / surprise.max(1e-300)).log10() / 6.0).clamp(0.0, 1.0);
                (
                    FindingKind::OutlierFlows,
                    0.2 + 0.4 * rarity * share,
                    format!(
                        "{} of the {n} flows of {src_name} unusual, to {peer} ({}), flagged by \
                         {by}; at {} (the detectors' training rate, or this run's typical host \
                         if higher) about {} were expected{why}",
                        rows.len(),
                        bytes_words(rows.iter().map(|r| flows[*r].bytes() as f64).sum()),
                        percent_words(rate),
                        count_words(expected),
                    ),
                )
            };
            let detectors = per_detector.into_iter().map(|(d, _)| d).collect();
            findings.push(finding(
                run_id,
                kind,
                src_name,
                peer,
                &flows,
                &rows,
                score,
                detectors,
                explanation,
            ));
        }
    }
    findings.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.flows.cmp(&a.flows))
            .then(a.finding_id.cmp(&b.finding_id))
    });
    Ok(findings)
}

/// P(X >= k) for X ~ Poisson(lambda): how surprising k events are where
/// lambda were expected. Each term is taken from its logarithm, so a busy
/// host (lambda in the thousands, where e^-lambda is 0 in f64) is judged
/// as exactly as a quiet one.
fn poisson_tail(k: usize, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    let ln_lambda = lambda.ln();
    let mut ln_factorial = 0.0;
    let ln_term = |i: usize, ln_factorial: &mut f64| {
        if i > 0 {
            *ln_factorial += (i as f64).ln();
        }
        i as f64 * ln_lambda - lambda - *ln_factorial
    };
    if (k as f64) <= lambda {
        // A common count: 1 minus the terms below it, none of them tiny.
        let below: f64 = (0..k).map(|i| ln_term(i, &mut ln_factorial).exp()).sum();
        return (1.0 - below).clamp(0.0, 1.0);
    }
    // A rare count: the terms from k up, each smaller than the last.
    for i in 0..k {
        ln_term(i, &mut ln_factorial);
    }
    let mut term = ln_term(k, &mut ln_factorial).exp();
    let (mut tail, mut i) = (0.0, k);
    while term > tail * 1e-17 && term > 0.0 {
        tail += term;
        i += 1;
        term *= lambda / i as f64;
    }
    tail.min(1.0)
}

fn percent_words(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

fn count_words(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

#[allow(clippy::too_many_arguments)]
fn finding(
    run_id: Uuid,
    kind: FindingKind,
    src: String,
    peer: String,
    flows: &[Flow],
    rows: &[usize],
    score: f64,
    detectors: Vec<String>,
    explanation: String,
) -> Finding {
    let score = score.clamp(0.0, 1.0);
    Finding {
        finding_id: finding_id(kind, &src, &peer, run_id),
        kind,
        first_seen_ns: rows.iter().map(|r| flows[*r].first_ns).min().unwrap_or(0),
        last_seen_ns: rows.iter().map(|r| flows[*r].last_ns).max().unwrap_or(0),
        flows: rows.len() as u64,
        bytes: rows.iter().map(|r| flows[*r].bytes()).sum(),
        score,
        severity: Severity::of(score),
        detectors,
        evidence_flow_ids: rows.iter().map(|r| flows[*r].id).collect(),
        explanation,
        src,
        peer,
    }
}

/// `dst:port`, or the server's name where the flow carries one.
fn peer_of(f: &Flow) -> String {
    match &f.server_name {
        Some(name) => name.clone(),
        None if f.dst.is_empty() => format!("port {}", f.dst_port),
        None => service_peer(&f.dst, f.dst_port),
    }
}

/// The features an explanation (`{"lof": [{"feature": ...}, ...]}`) names,
/// most often named first, at most three.
fn features_named(explanation: &str) -> String {
    let Ok(serde_json::Value::Object(by_detector)) = serde_json::from_str(explanation) else {
        return String::new();
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for contributions in by_detector.values() {
        for c in contributions.as_array().into_iter().flatten() {
            if let Some(f) = c.get("feature").and_then(|f| f.as_str()) {
                *counts.entry(f.to_string()).or_insert(0) += 1;
            }
        }
    }
    let mut named: Vec<(String, usize)> = counts.into_iter().collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    named
        .into_iter()
        .take(3)
        .map(|(f, _)| f)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scores table's flows as the behavioural detectors see them; columns
/// it lacks (flow files without hosts or times) are empty or zero.
pub fn flows_of(scores: &DataFrame) -> Result<Vec<Flow>, String> {
    let n = scores.height();
    let ids = ints(scores, "flow_id")?.unwrap_or_else(|| (0..n as i64).collect());
    let text = |c: &str| -> Result<Vec<Option<String>>, String> {
        Ok(strings(scores, c)?.unwrap_or_else(|| vec![None; n]))
    };
    let num = |c: &str| -> Result<Vec<f64>, String> {
        Ok(floats(scores, c)?.unwrap_or_else(|| vec![0.0; n]))
    };
    let (src, dst) = (text("src_ip")?, text("dst_ip")?);
    let (src_port, dst_port, protocol) = (num("src_port")?, num("dst_port")?, num("protocol")?);
    let first = ints(scores, "first_seen_ns")?.unwrap_or_else(|| vec![0; n]);
    let last = ints(scores, "last_seen_ns")?.unwrap_or_else(|| first.clone());
    let (fwd_packets, bwd_packets) = (num("fwd_packets")?, num("bwd_packets")?);
    let (fwd_bytes, bwd_bytes) = (num("fwd_bytes")?, num("bwd_bytes")?);
    let handshake = floats(scores, "handshake_completed")?;
    let end = text("end_reason")?;
    let (sni, host, query) = (text("tls_sni")?, text("http_host")?, text("dns_query")?);
    let qtype = text("dns_qtype")?;
    Ok((0..n)
        .map(|i| {
            let protocol = protocol[i] as u8;
            Flow {
                id: ids[i] as u64,
                src: src[i].clone().unwrap_or_default(),
                dst: dst[i].clone().unwrap_or_default(),
                src_port: src_port[i] as u16,
                dst_port: dst_port[i] as u16,
                protocol,
                first_ns: first[i],
                last_ns: last[i],
                fwd_packets: fwd_packets[i] as u64,
                bwd_packets: bwd_packets[i] as u64,
                fwd_bytes: fwd_bytes[i] as u64,
                bwd_bytes: bwd_bytes[i] as u64,
                handshake: (protocol == behaviour::TCP)
                    .then(|| handshake.as_ref().map(|h| h[i] > 0.5))
                    .flatten(),
                still_open: end[i].as_deref() == Some("end"),
                server_name: sni[i]
                    .clone()
                    .or_else(|| host[i].clone())
                    .filter(|s| !s.is_empty()),
                dns_query: query[i].clone().filter(|s| !s.is_empty()),
                dns_qtype: qtype[i].clone().filter(|s| !s.is_empty()),
            }
        })
        .collect())
}

/// A column cast to `to`, or `None` where the table has no such column.
fn cast(frame: &DataFrame, name: &str, to: DataType) -> Result<Option<Column>, String> {
    frame
        .column(name)
        .ok()
        .map(|c| c.cast(&to).map_err(|e| format!("{name}: {e}")))
        .transpose()
}

fn floats(frame: &DataFrame, name: &str) -> Result<Option<Vec<f64>>, String> {
    cast(frame, name, DataType::Float64)?
        .map(|c| {
            Ok(c.f64()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|v| v.unwrap_or(0.0))
                .collect())
        })
        .transpose()
}

fn ints(frame: &DataFrame, name: &str) -> Result<Option<Vec<i64>>, String> {
    cast(frame, name, DataType::Int64)?
        .map(|c| {
            Ok(c.i64()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect())
        })
        .transpose()
}

fn bools(frame: &DataFrame, name: &str) -> Result<Option<Vec<bool>>, String> {
    cast(frame, name, DataType::Boolean)?
        .map(|c| {
            Ok(c.bool()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|v| v.unwrap_or(false))
                .collect())
        })
        .transpose()
}

fn strings(frame: &DataFrame, name: &str) -> Result<Option<Vec<Option<String>>>, String> {
    cast(frame, name, DataType::String)?
        .map(|c| {
            Ok(c.str()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|v| v.map(str::to_string))
                .collect())
        })
        .transpose()
}

/// `findings.parquet`: one row per finding, in rank order.
pub fn findings_frame(findings: &[Finding]) -> Result<DataFrame, String> {
    let text = |f: fn(&Finding) -> String| findings.iter().map(f).collect::<Vec<String>>();
    // Nanoseconds since the Unix epoch, as every time in SILVER and the
    // scores (polars is built without its datetime type).
    let times = |name: &str, f: fn(&Finding) -> i64| {
        Column::new(name.into(), findings.iter().map(f).collect::<Vec<i64>>())
    };
    let lists = |name: &str, f: &dyn Fn(&Finding) -> Series| {
        Column::new(name.into(), findings.iter().map(f).collect::<Vec<Series>>())
    };
    let columns = vec![
        Column::new("finding_id".into(), text(|f| f.finding_id.clone())),
        Column::new("kind".into(), text(|f| f.kind.name().to_string())),
        Column::new("src".into(), text(|f| f.src.clone())),
        Column::new("peer".into(), text(|f| f.peer.clone())),
        times("first_seen", |f| f.first_seen_ns),
        times("last_seen", |f| f.last_seen_ns),
        Column::new(
            "flows".into(),
            findings.iter().map(|f| f.flows).collect::<Vec<u64>>(),
        ),
        Column::new(
            "bytes".into(),
            findings.iter().map(|f| f.bytes).collect::<Vec<u64>>(),
        ),
        Column::new(
            "score".into(),
            findings.iter().map(|f| f.score).collect::<Vec<f64>>(),
        ),
        Column::new("severity".into(), text(|f| f.severity.name().to_string())),
        lists("detectors", &|f| {
            Series::new("".into(), f.detectors.clone())
        }),
        lists("evidence_flow_ids", &|f| {
            Series::new("".into(), f.evidence_flow_ids.clone())
        }),
        Column::new("explanation".into(), text(|f| f.explanation.clone())),
    ];
    DataFrame::new(findings.len(), columns).map_err(|e| e.to_string())
}

/// The rows of `findings.parquet`, in its order: what [`findings_frame`]
/// wrote. A column missing or a kind or severity not known is named.
pub fn read_findings(parquet: &[u8]) -> Result<Vec<Finding>, String> {
    let frame = nadir_flows::table::read_parquet(parquet).map_err(|e| e.to_string())?;
    let need = |name: &str| format!("findings.parquet has no {name} column");
    let text = |name: &str| -> Result<Vec<String>, String> {
        Ok(strings(&frame, name)?
            .ok_or_else(|| need(name))?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    };
    let int = |name: &str| ints(&frame, name)?.ok_or_else(|| need(name));
    let list = |name: &str, to: DataType| -> Result<Vec<Series>, String> {
        let c = cast(&frame, name, DataType::List(Box::new(to)))?.ok_or_else(|| need(name))?;
        let c = c.list().map_err(|e| format!("{name}: {e}"))?;
        Ok((0..c.len())
            .map(|i| {
                c.get_as_series(i)
                    .unwrap_or_else(|| Series::new_empty("".into(), &DataType::Null))
            })
            .collect())
    };
    let (ids, kinds, src, peer) = (
        text("finding_id")?,
        text("kind")?,
        text("src")?,
        text("peer")?,
    );
    let (first, last, flows, bytes) = (
        int("first_seen")?,
        int("last_seen")?,
        int("flows")?,
        int("bytes")?,
    );
    let score = floats(&frame, "score")?.ok_or_else(|| need("score"))?;
    let (severity, explanation) = (text("severity")?, text("explanation")?);
    let detectors = list("detectors", DataType::String)?;
    let evidence = list("evidence_flow_ids", DataType::UInt64)?;
    (0..frame.height())
        .map(|i| {
            let kind = FindingKind::parse(&kinds[i])
                .ok_or_else(|| format!("finding {}: unknown kind {:?}", ids[i], kinds[i]))?;
            let severity = Severity::parse(&severity[i])
                .ok_or_else(|| format!("finding {}: unknown severity {:?}", ids[i], severity[i]))?;
            let detectors = detectors[i]
                .str()
                .map(|s| s.iter().flatten().map(str::to_string).collect())
                .unwrap_or_default();
            let evidence_flow_ids = evidence[i]
                .u64()
                .map(|s| s.iter().flatten().collect())
                .unwrap_or_default();
            Ok(Finding {
                finding_id: ids[i].clone(),
                kind,
                src: src[i].clone(),
                peer: peer[i].clone(),
                first_seen_ns: first[i],
                last_seen_ns: last[i],
                flows: flows[i] as u64,
                bytes: bytes[i] as u64,
                score: score[i],
                severity,
                detectors,
                evidence_flow_ids,
                explanation: explanation[i].clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_parquet_reads_back_as_written() {
        let finding = |kind, src: &str, score| Finding {
            finding_id: finding_id(kind, src, "10.0.0.9:22", Uuid::from_u128(1)),
            kind,
            src: src.into(),
            peer: "10.0.0.9:22".into(),
            first_seen_ns: 1_700_000_000_000_000_000,
            last_seen_ns: 1_700_000_060_000_000_000,
            flows: 40,
            bytes: 12_345,
            score,
            severity: Severity::of(score),
            detectors: vec!["brute_force".into(), "lof".into()],
            evidence_flow_ids: vec![3, 5, 8],
            explanation: "40 logins <b>".into(),
        };
        let written = vec![
            finding(FindingKind::BruteForce, "10.0.0.2", 0.9),
            Finding {
                detectors: vec![],
                evidence_flow_ids: vec![],
                ..finding(FindingKind::Beacon, "10.0.0.3", 0.5)
            },
        ];
        let mut frame = findings_frame(&written).unwrap();
        let bytes = nadir_flows::table::write_parquet(&mut frame).unwrap();
        assert_eq!(read_findings(&bytes).unwrap(), written);
        let mut frame = findings_frame(&written).unwrap().drop("score").unwrap();
        let bytes = nadir_flows::table::write_parquet(&mut frame).unwrap();
        assert!(read_findings(&bytes).unwrap_err().contains("score"));
    }

    #[test]
    fn poisson_tails() {
        assert_eq!(poisson_tail(0, 3.0), 1.0);
        // P(X >= 1) = 1 - e^-2
        assert!((poisson_tail(1, 2.0) - (1.0 - (-2.0f64).exp())).abs() < 1e-12);
        // Six flags where 1.6 were expected are rarer than 1 in 100...
        assert!(poisson_tail(6, 1.6) < 0.01);
        // ...but not than 1 in 1000: the thresholds' cost, no finding.
        assert!(poisson_tail(6, 1.6) > OUTLIER_SIGNIFICANCE);
        assert!(poisson_tail(14, 1.3) < 1e-9);
        assert_eq!(poisson_tail(3, 0.0), 0.0);
        // A busy host: 2 % of 50 000 flows expected, five times that found.
        assert!(poisson_tail(5_000, 1_000.0) < OUTLIER_SIGNIFICANCE);
        assert!(poisson_tail(1_100, 1_000.0) < 0.01);
        assert!(poisson_tail(1_000, 1_000.0) > 0.4);
    }
}
