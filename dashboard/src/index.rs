//! A run's scored flows as the pages ask for them.
//!
//! The eval stage writes every flow's scores to `scores.parquet`; a run of a
//! million flows flags a few thousand of them. [`RunIndex::build`] reads the
//! scores once and keeps what the pages show: the flagged flows (sorted by
//! the ranking detector's score), score histograms per label, and per-host
//! activity over time, and the evidence flows of every finding. Queries ([`RunIndex::anomalies`]) then filter, sort
//! and page in memory, with no I/O: this module is pure.

use std::collections::{HashMap, HashSet};

use nadir_contract::findings::{Finding, Peer};
use nadir_detectors::metrics::Histogram;
use nadir_detectors::model::Contribution;
use nadir_detectors::profile::FeatureProfile;
use nadir_pipeline::report::{EvalReport, Role};
use polars::prelude::*;
use serde::Serialize;

/// One detector of the run, as the report describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Detector {
    /// The score column's name: the algorithm, or `champion_<algorithm>`.
    pub name: String,
    pub algorithm: String,
    pub version: String,
    /// `challenger` (trained by this run) or `champion`.
    pub role: String,
    pub threshold: f64,
    pub flagged: u64,
    /// The run's score histogram, from the report.
    pub histogram: Histogram,
}

/// A flow of the run (the pages show flagged ones).
#[derive(Debug, Clone, Serialize)]
pub struct Flow {
    pub raw_version: String,
    pub flow_id: u64,
    pub first_seen_ns: Option<i64>,
    pub last_seen_ns: Option<i64>,
    pub src_ip: Option<String>,
    pub src_port: Option<u32>,
    pub dst_ip: Option<String>,
    pub dst_port: Option<u32>,
    pub protocol: Option<u32>,
    pub packets: Option<f64>,
    pub bytes: Option<f64>,
    /// DNS query, TLS server name, HTTP host: what the flow named.
    pub names: Vec<String>,
    /// One per [`RunIndex::detectors`], in order.
    pub scores: Vec<f64>,
    pub flagged_by: Vec<bool>,
    /// Flagged in the run (the scores table's `flagged`).
    pub flagged: bool,
    pub label: Option<String>,
    /// Per detector that flagged it: the features that weighed most.
    pub explanation: Vec<(String, Vec<Contribution>)>,
}

impl Flow {
    pub fn protocol_name(&self) -> String {
        nadir_flows::dataset::protocol_name(self.protocol).into_owned()
    }

    fn hosts(&self) -> impl Iterator<Item = &str> {
        self.src_ip.iter().chain(&self.dst_ip).map(String::as_str)
    }
}

/// Score counts of one label (an attack type, or `benign`) per detector,
/// in the bins of the report's histograms.
#[derive(Debug, Clone, Serialize)]
pub struct LabelScores {
    pub label: String,
    pub flows: u64,
    pub counts: Vec<Vec<u64>>,
}

/// A host's flows and flagged flows over the run's time span.
#[derive(Debug, Clone, Serialize)]
pub struct HostActivity {
    pub host: String,
    pub flows: u64,
    pub flagged: u64,
    pub flows_per_bucket: Vec<u32>,
    pub flagged_per_bucket: Vec<u32>,
}

/// The time axis of host timelines.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timeline {
    pub start_ns: i64,
    pub bucket_ns: i64,
    pub buckets: usize,
}

/// Hosts whose timelines are kept: the most flagged, then the busiest.
pub const TIMELINE_HOSTS: usize = 100;
/// Buckets of a host timeline.
pub const TIMELINE_BUCKETS: usize = 60;

/// What the pages of one run read.
#[derive(Debug)]
pub struct RunIndex {
    pub rows: usize,
    pub detectors: Vec<Detector>,
    /// The detector flows are ranked by: the run's champion when it scored
    /// the flows, else the first detector.
    pub primary: usize,
    /// Flagged flows, highest ranking score first.
    pub anomalies: Vec<Flow>,
    /// Evidence flows of findings that no detector flagged.
    pub evidence: Vec<Flow>,
    pub labels: Vec<LabelScores>,
    pub hosts: Vec<HostActivity>,
    /// Distinct hosts seen (all of them, not only those with timelines).
    pub host_count: usize,
    pub timeline: Option<Timeline>,
    /// Feature distributions of the training window.
    pub profile: Vec<FeatureProfile>,
    /// Hosts the host-group detector singled out, and the series that
    /// made them stand out (`mad:peers`, `dbscan:flows`, ...).
    pub outlying_hosts: HashMap<String, Vec<String>>,
}

/// What is wrong with a scores table or report.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("scores.parquet: {0}")]
    Scores(String),
    #[error("report.json: {0}")]
    Report(String),
}

fn scores_err(e: PolarsError) -> IndexError {
    IndexError::Scores(e.to_string())
}

/// A column cast to `dtype`, when the table has it.
fn column(frame: &DataFrame, name: &str, dtype: &DataType) -> Option<Column> {
    frame.column(name).ok()?.cast(dtype).ok()
}

impl RunIndex {
    /// Builds the index from a run's report and scores table; the flows
    /// kept are the flagged ones and those whose `flow_id` is in `evidence`
    /// (the findings' evidence).
    pub fn build(
        report: &EvalReport,
        scores: &DataFrame,
        evidence: &HashSet<u64>,
    ) -> Result<Self, IndexError> {
        let detectors = detectors_of(report)?;
        let rows = scores.height();
        let primary = primary_detector(report, &detectors);

        let score_columns: Vec<Float64Chunked> = detectors
            .iter()
            .map(|d| {
                let c = column(scores, &format!("score_{}", d.name), &DataType::Float64)
                    .ok_or_else(|| IndexError::Scores(format!("no score_{} column", d.name)))?;
                Ok(c.f64().map_err(scores_err)?.clone())
            })
            .collect::<Result<_, IndexError>>()?;
        let flagged_columns: Vec<BooleanChunked> = detectors
            .iter()
            .map(|d| {
                let c = column(scores, &format!("flagged_{}", d.name), &DataType::Boolean)
                    .ok_or_else(|| IndexError::Scores(format!("no flagged_{} column", d.name)))?;
                Ok(c.bool().map_err(scores_err)?.clone())
            })
            .collect::<Result<_, IndexError>>()?;
        let flagged = column(scores, "flagged", &DataType::Boolean)
            .ok_or_else(|| IndexError::Scores("no flagged column".into()))?;
        let flagged = flagged.bool().map_err(scores_err)?;

        let text = |name: &str| column(scores, name, &DataType::String);
        let raw_version = text("raw_version")
            .ok_or_else(|| IndexError::Scores("no raw_version column".into()))?;
        let raw_version = raw_version.str().map_err(scores_err)?;
        let flow_id = column(scores, "flow_id", &DataType::UInt64)
            .ok_or_else(|| IndexError::Scores("no flow_id column".into()))?;
        let flow_id = flow_id.u64().map_err(scores_err)?;
        let kept_rows: Vec<usize> = flagged
            .iter()
            .zip(flow_id.iter())
            .enumerate()
            .filter_map(|(i, (f, id))| {
                (f.unwrap_or(false) || id.is_some_and(|id| evidence.contains(&id))).then_some(i)
            })
            .collect();
        let (src_ip, dst_ip, label, explanation) = (
            text("src_ip"),
            text("dst_ip"),
            text("label"),
            text("explanation"),
        );
        let names: Vec<Column> = ["dns_query", "tls_sni", "http_host"]
            .iter()
            .filter_map(|n| text(n))
            .collect();
        let u32s = |name: &str| column(scores, name, &DataType::UInt32);
        let (src_port, dst_port, protocol) = (u32s("src_port"), u32s("dst_port"), u32s("protocol"));
        let i64s = |name: &str| column(scores, name, &DataType::Int64);
        let (first_seen, last_seen) = (i64s("first_seen_ns"), i64s("last_seen_ns"));
        let f64s = |name: &str| column(scores, name, &DataType::Float64);
        let sum = |a: &str, b: &str| -> Option<Float64Chunked> {
            let (a, b) = (f64s(a)?, f64s(b)?);
            Some(a.f64().ok()? + b.f64().ok()?)
        };
        let (packets, bytes) = (
            sum("fwd_packets", "bwd_packets"),
            sum("fwd_bytes", "bwd_bytes"),
        );

        let str_at = |c: &Option<Column>, i: usize| -> Option<String> {
            c.as_ref()?.str().ok()?.get(i).map(str::to_string)
        };
        let u32_at = |c: &Option<Column>, i: usize| c.as_ref()?.u32().ok()?.get(i);
        let i64_at = |c: &Option<Column>, i: usize| c.as_ref()?.i64().ok()?.get(i);
        let kept: Vec<Flow> = kept_rows
            .iter()
            .map(|&i| {
                let explanation = str_at(&explanation, i)
                    .map(|json| parse_explanation(&json, &detectors))
                    .transpose()?
                    .unwrap_or_default();
                Ok(Flow {
                    raw_version: raw_version.get(i).unwrap_or_default().to_string(),
                    flow_id: flow_id.get(i).unwrap_or_default(),
                    first_seen_ns: i64_at(&first_seen, i),
                    last_seen_ns: i64_at(&last_seen, i),
                    src_ip: str_at(&src_ip, i),
                    src_port: u32_at(&src_port, i),
                    dst_ip: str_at(&dst_ip, i),
                    dst_port: u32_at(&dst_port, i),
                    protocol: u32_at(&protocol, i),
                    packets: packets.as_ref().and_then(|c| c.get(i)),
                    bytes: bytes.as_ref().and_then(|c| c.get(i)),
                    names: names
                        .iter()
                        .filter_map(|c| c.str().ok()?.get(i))
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect(),
                    scores: score_columns
                        .iter()
                        .map(|c| c.get(i).unwrap_or(f64::NAN))
                        .collect(),
                    flagged_by: flagged_columns
                        .iter()
                        .map(|c| c.get(i).unwrap_or(false))
                        .collect(),
                    flagged: flagged.get(i).unwrap_or(false),
                    label: str_at(&label, i),
                    explanation,
                })
            })
            .collect::<Result<_, IndexError>>()?;
        let (mut anomalies, evidence): (Vec<Flow>, Vec<Flow>) =
            kept.into_iter().partition(|f| f.flagged);
        anomalies.sort_by(|a, b| b.scores[primary].total_cmp(&a.scores[primary]));

        let labels = label
            .as_ref()
            .map(|l| label_scores(l, &score_columns, &detectors))
            .transpose()?
            .unwrap_or_default();

        let (hosts, host_count, timeline) = match (&src_ip, &first_seen) {
            (Some(src), Some(first)) => {
                let (hosts, count, timeline) = host_activity(
                    src.str().map_err(scores_err)?,
                    dst_ip.as_ref().and_then(|c| c.str().ok()),
                    first.i64().map_err(scores_err)?,
                    flagged,
                );
                (hosts, count, timeline)
            }
            _ => (Vec::new(), 0, None),
        };

        let profile = report.training_profile.clone().unwrap_or_default();
        let mut outlying_hosts: HashMap<String, Vec<String>> = HashMap::new();
        let verdicts = report
            .detectors
            .iter()
            .flat_map(|d| &d.hosts)
            .flat_map(|p| &p.outlying);
        for h in verdicts {
            let series = outlying_hosts.entry(h.host.clone()).or_default();
            for s in &h.flagged_by {
                if !series.contains(s) {
                    series.push(s.clone());
                }
            }
        }
        Ok(RunIndex {
            outlying_hosts,
            rows,
            detectors,
            primary,
            anomalies,
            evidence,
            labels,
            hosts,
            host_count,
            timeline,
            profile,
        })
    }

    /// The flagged flows that pass `filter`, sorted and paged.
    pub fn anomalies(&self, query: &AnomalyQuery) -> AnomalyPage<'_> {
        let filter = &query.filter;
        let flagged_by = filter
            .detector
            .as_ref()
            .map(|d| self.detectors.iter().position(|x| x.name == *d));
        let mut matching: Vec<&Flow> = self
            .anomalies
            .iter()
            .filter(|f| filter.matches(f, f.scores[self.primary], flagged_by))
            .collect();
        let key = query.sort.detector(&self.detectors).unwrap_or(self.primary);
        match query.sort {
            // Already in this order, highest first.
            Sort::Score => {}
            Sort::Detector(_) => matching.sort_by(|a, b| a.scores[key].total_cmp(&b.scores[key])),
            Sort::Time => matching.sort_by_key(|f| f.first_seen_ns),
            Sort::Bytes => matching.sort_by(|a, b| {
                a.bytes
                    .unwrap_or(f64::NAN)
                    .total_cmp(&b.bytes.unwrap_or(f64::NAN))
            }),
            Sort::Packets => matching.sort_by(|a, b| {
                a.packets
                    .unwrap_or(f64::NAN)
                    .total_cmp(&b.packets.unwrap_or(f64::NAN))
            }),
            Sort::Detectors => {
                matching.sort_by_key(|f| f.flagged_by.iter().filter(|x| **x).count())
            }
        }
        let already_descending = query.sort == Sort::Score;
        if query.descending != already_descending {
            matching.reverse();
        }
        let total = matching.len();
        let per_page = query.per_page.clamp(1, MAX_PER_PAGE);
        let pages = total.div_ceil(per_page).max(1);
        let page = query.page.clamp(1, pages);
        let flows = matching
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        AnomalyPage {
            total,
            page,
            pages,
            per_page,
            flows,
        }
    }

    /// One flagged flow, or evidence of a finding.
    pub fn flow(&self, raw_version: &str, flow_id: u64) -> Option<&Flow> {
        self.anomalies
            .iter()
            .chain(&self.evidence)
            .find(|f| f.flow_id == flow_id && f.raw_version == raw_version)
    }

    /// A finding's evidence flows, in time order. A `flow_id` counts from 0
    /// in each capture, so where a run holds several, the flows of that id
    /// that involve the finding's hosts are its evidence.
    pub fn evidence_of(&self, finding: &Finding) -> Vec<&Flow> {
        let wanted: HashSet<u64> = finding.evidence_flow_ids.iter().copied().collect();
        let mut by_id: HashMap<u64, Vec<&Flow>> = HashMap::new();
        for f in self.anomalies.iter().chain(&self.evidence) {
            if wanted.contains(&f.flow_id) {
                by_id.entry(f.flow_id).or_default().push(f);
            }
        }
        let peer = Peer::of(&finding.peer);
        let involved = |f: &Flow| {
            f.hosts()
                .any(|h| h == finding.src || h.parse().ok().is_some_and(|ip| peer.ip() == Some(ip)))
        };
        let mut flows: Vec<&Flow> = by_id
            .into_values()
            .flat_map(|same_id| {
                let single = same_id.len() == 1;
                same_id.into_iter().filter(move |f| single || involved(f))
            })
            .collect();
        flows.sort_by_key(|f| (f.first_seen_ns, f.flow_id));
        flows
    }

    /// The training distribution of a feature.
    pub fn profile_of(&self, feature: &str) -> Option<&FeatureProfile> {
        self.profile.iter().find(|p| p.name == feature)
    }
}

/// The most rows one page (or an export) holds.
pub const MAX_PER_PAGE: usize = 500;
/// The most rows an export holds.
pub const MAX_EXPORT: usize = 100_000;

/// How the anomaly list is ordered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sort {
    /// The ranking detector's score.
    #[default]
    Score,
    /// Another detector's score, by name.
    Detector(String),
    Time,
    Bytes,
    Packets,
    /// How many detectors flagged the flow.
    Detectors,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        Some(match s {
            "" | "score" => Sort::Score,
            "time" => Sort::Time,
            "bytes" => Sort::Bytes,
            "packets" => Sort::Packets,
            "detectors" => Sort::Detectors,
            other => Sort::Detector(other.strip_prefix("score_")?.to_string()),
        })
    }

    pub fn name(&self) -> String {
        match self {
            Sort::Score => "score".into(),
            Sort::Detector(d) => format!("score_{d}"),
            Sort::Time => "time".into(),
            Sort::Bytes => "bytes".into(),
            Sort::Packets => "packets".into(),
            Sort::Detectors => "detectors".into(),
        }
    }

    fn detector(&self, detectors: &[Detector]) -> Option<usize> {
        match self {
            Sort::Detector(name) => detectors.iter().position(|d| d.name == *name),
            _ => None,
        }
    }
}

/// Which flagged flows to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Part of the source or destination address, or of a name the flow
    /// carried (case-insensitive).
    pub host: Option<String>,
    /// Source or destination port.
    pub port: Option<u32>,
    /// Protocol name (`tcp`) or number.
    pub protocol: Option<String>,
    /// First packet at or after, ns since the epoch.
    pub from_ns: Option<i64>,
    /// First packet before, ns since the epoch.
    pub to_ns: Option<i64>,
    /// Ranking score at least.
    pub min_score: Option<f64>,
    /// Flagged by this detector (by name).
    pub detector: Option<String>,
}

impl Filter {
    /// `flagged_by`: where `detector` stands among the run's detectors
    /// (`Some(None)` when the run has no such detector).
    fn matches(&self, f: &Flow, score: f64, flagged_by: Option<Option<usize>>) -> bool {
        if let Some(host) = &self.host {
            let host = host.to_ascii_lowercase();
            let found = f
                .hosts()
                .chain(f.names.iter().map(String::as_str))
                .any(|h| h.to_ascii_lowercase().contains(&host));
            if !found {
                return false;
            }
        }
        if let Some(port) = self.port
            && f.src_port != Some(port)
            && f.dst_port != Some(port)
        {
            return false;
        }
        if let Some(protocol) = &self.protocol {
            let p = protocol.trim().to_ascii_lowercase();
            if f.protocol_name() != p && f.protocol.map(|n| n.to_string()) != Some(p) {
                return false;
            }
        }
        if let Some(from) = self.from_ns
            && f.first_seen_ns.is_none_or(|t| t < from)
        {
            return false;
        }
        if let Some(to) = self.to_ns
            && f.first_seen_ns.is_none_or(|t| t >= to)
        {
            return false;
        }
        if let Some(min) = self.min_score
            && score.partial_cmp(&min).is_none_or(|o| o.is_lt())
        {
            return false;
        }
        match flagged_by {
            Some(Some(i)) => f.flagged_by.get(i).copied().unwrap_or(false),
            Some(None) => false,
            None => true,
        }
    }
}

/// A request for one page of the anomaly list.
#[derive(Debug, Clone)]
pub struct AnomalyQuery {
    pub filter: Filter,
    pub sort: Sort,
    pub descending: bool,
    /// From 1.
    pub page: usize,
    pub per_page: usize,
}

impl Default for AnomalyQuery {
    fn default() -> Self {
        AnomalyQuery {
            filter: Filter::default(),
            sort: Sort::Score,
            descending: true,
            page: 1,
            per_page: 50,
        }
    }
}

/// One page of the anomaly list.
#[derive(Debug)]
pub struct AnomalyPage<'a> {
    /// Flows that pass the filter.
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub per_page: usize,
    pub flows: Vec<&'a Flow>,
}

/// Whether a detector scores each flow on its own features (the host-group
/// detector gives every flow of a host its host's score instead).
pub fn per_flow(algorithm: &str) -> bool {
    algorithm != "host_group"
}

/// The detector flows are ranked by: the run's champion when it scores
/// flows one by one; else the per-flow detector with the best figure on
/// the run's selection metric; else the first.
fn primary_detector(report: &EvalReport, detectors: &[Detector]) -> usize {
    let candidates = || {
        detectors
            .iter()
            .enumerate()
            .filter(|(_, d)| per_flow(&d.algorithm))
    };
    let champion = report.selection.champion.as_ref().map(|(a, _)| a.as_str());
    let by_champion = champion.and_then(|c| {
        candidates()
            .filter(|(_, d)| d.algorithm == c)
            .min_by_key(|(_, d)| d.role != "challenger")
            .map(|(i, _)| i)
    });
    let figure = |i: usize| report.detectors[i].metric(&report.selection_metric);
    let by_metric = || {
        candidates()
            .filter_map(|(i, _)| figure(i).map(|f| (i, f)))
            .fold(None::<(usize, f64)>, |best, (i, f)| match best {
                Some((_, b)) if b >= f => best,
                _ => Some((i, f)),
            })
            .map(|(i, _)| i)
    };
    by_champion
        .or_else(by_metric)
        .or_else(|| candidates().next().map(|(i, _)| i))
        .unwrap_or(0)
}

fn detectors_of(report: &EvalReport) -> Result<Vec<Detector>, IndexError> {
    if report.detectors.is_empty() {
        return Err(IndexError::Report("no detectors".into()));
    }
    Ok(report
        .detectors
        .iter()
        .map(|d| Detector {
            name: d.name.clone(),
            algorithm: d.algorithm.name().to_string(),
            version: d.version.clone(),
            role: match d.role {
                Role::Champion => "champion",
                Role::Challenger => "challenger",
            }
            .to_string(),
            threshold: d.threshold,
            flagged: d.flagged as u64,
            histogram: d.histogram.clone(),
        })
        .collect())
}

fn parse_explanation(
    json: &str,
    detectors: &[Detector],
) -> Result<Vec<(String, Vec<Contribution>)>, IndexError> {
    let mut by: HashMap<String, Vec<Contribution>> = serde_json::from_str(json)
        .map_err(|e| IndexError::Scores(format!("explanation column: {e}")))?;
    // In the run's detector order.
    Ok(detectors
        .iter()
        .filter_map(|d| by.remove(&d.name).map(|c| (d.name.clone(), c)))
        .collect())
}

fn label_scores(
    label: &Column,
    scores: &[Float64Chunked],
    detectors: &[Detector],
) -> Result<Vec<LabelScores>, IndexError> {
    let label = label.str().map_err(scores_err)?;
    let mut by: HashMap<String, LabelScores> = HashMap::new();
    for (i, l) in label.iter().enumerate() {
        let Some(l) = l else { continue };
        let name = if nadir_flows::labels::is_attack(l) {
            l
        } else {
            "benign"
        };
        let entry = by.entry(name.to_string()).or_insert_with(|| LabelScores {
            label: name.to_string(),
            flows: 0,
            counts: detectors
                .iter()
                .map(|d| vec![0; d.histogram.counts.len()])
                .collect(),
        });
        entry.flows += 1;
        for ((d, s), counts) in detectors.iter().zip(scores).zip(&mut entry.counts) {
            if let Some(b) = s.get(i).and_then(|v| d.histogram.bin(v)) {
                counts[b] += 1;
            }
        }
    }
    let mut labels: Vec<LabelScores> = by.into_values().collect();
    // Benign first, then attack types by name.
    labels.sort_by(|a, b| (a.label != "benign", &a.label).cmp(&(b.label != "benign", &b.label)));
    Ok(labels)
}

fn host_activity(
    src: &StringChunked,
    dst: Option<&StringChunked>,
    first_seen: &Int64Chunked,
    flagged: &BooleanChunked,
) -> (Vec<HostActivity>, usize, Option<Timeline>) {
    let (Some(start), Some(end)) = (first_seen.min(), first_seen.max()) else {
        return (Vec::new(), 0, None);
    };
    let bucket_ns = ((end - start) / TIMELINE_BUCKETS as i64 + 1).max(1_000_000_000);
    let buckets = ((end - start) / bucket_ns + 1) as usize;
    let timeline = Timeline {
        start_ns: start,
        bucket_ns,
        buckets,
    };
    let ends = |i: usize| {
        let s = src.get(i);
        let d = dst.and_then(|d| d.get(i)).filter(|d| Some(*d) != s);
        s.into_iter().chain(d)
    };
    // Totals for every host, then timelines for the ones shown.
    let mut totals: HashMap<&str, (u64, u64)> = HashMap::new();
    for i in 0..src.len() {
        let f = flagged.get(i).unwrap_or(false);
        for h in ends(i) {
            let t = totals.entry(h).or_default();
            t.0 += 1;
            t.1 += u64::from(f);
        }
    }
    let host_count = totals.len();
    let mut ranked: Vec<(&str, (u64, u64))> = totals.into_iter().collect();
    ranked.sort_by(|a, b| (b.1.1, b.1.0, a.0).cmp(&(a.1.1, a.1.0, b.0)));
    ranked.truncate(TIMELINE_HOSTS);
    let slot: HashMap<&str, usize> = ranked
        .iter()
        .enumerate()
        .map(|(k, (h, _))| (*h, k))
        .collect();
    let mut hosts: Vec<HostActivity> = ranked
        .iter()
        .map(|(h, (flows, flagged))| HostActivity {
            host: h.to_string(),
            flows: *flows,
            flagged: *flagged,
            flows_per_bucket: vec![0; buckets],
            flagged_per_bucket: vec![0; buckets],
        })
        .collect();
    for i in 0..src.len() {
        let Some(t) = first_seen.get(i) else { continue };
        let b = (((t - start) / bucket_ns) as usize).min(buckets - 1);
        let f = flagged.get(i).unwrap_or(false);
        for h in ends(i) {
            if let Some(k) = slot.get(h) {
                hosts[*k].flows_per_bucket[b] += 1;
                hosts[*k].flagged_per_bucket[b] += u32::from(f);
            }
        }
    }
    (hosts, host_count, Some(timeline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nadir_detectors::group::HostVerdict;
    use nadir_detectors::model::ScoreSummary;
    use nadir_detectors::profile::FeatureProfile;
    use nadir_detectors::{Algorithm, ThresholdRule};
    use nadir_pipeline::report::{
        Action, Decision, DetectorReport, HostsReport, LabelledMetrics, PrecisionAtK,
    };
    use serde_json::json;

    fn detector(algorithm: Algorithm, edges: [f64; 3], threshold: f64) -> DetectorReport {
        let quantiles = ScoreSummary {
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            max: 0.0,
        };
        DetectorReport {
            name: algorithm.name().into(),
            algorithm,
            version: "v1".into(),
            role: Role::Challenger,
            threshold,
            threshold_rule: ThresholdRule::Contamination(0.02),
            training_scores: quantiles.clone(),
            flagged: 2,
            score_quantiles: quantiles,
            histogram: Histogram {
                edges: edges.to_vec(),
                counts: vec![2, 2],
            },
            hosts: Vec::new(),
            labelled: None,
            planted: None,
        }
    }

    fn report() -> EvalReport {
        EvalReport {
            run_id: uuid::Uuid::nil(),
            rows: 4,
            partitions: Vec::new(),
            contamination: 0.02,
            selection_metric: "average_precision".into(),
            feature_set: None,
            champion: None,
            champion_not_scored: None,
            training_partitions: Vec::new(),
            holdout: None,
            labelled: false,
            labelled_rows: 0,
            attacks: None,
            attack_types: Vec::new(),
            flagged: 3,
            detectors: vec![
                detector(Algorithm::IsolationForest, [0.0, 0.5, 1.0], 0.6),
                detector(Algorithm::OneClassSvm, [-1.0, 0.0, 1.0], 0.0),
            ],
            agreement: Vec::new(),
            drift: Vec::new(),
            training_profile: Some(vec![FeatureProfile {
                name: "duration_s".into(),
                median: 1.0,
                p25: 0.5,
                p75: 2.0,
                mean: 1.2,
                std: 0.4,
                edges: vec![1.0],
                shares: vec![0.5, 0.5],
            }]),
            selection: Decision {
                action: Action::Promote,
                champion: Some(("one_class_svm".into(), "v1".into())),
                reason: String::new(),
                replaces: None,
            },
            findings_summary: None,
            version: None,
            scores: None,
            findings: None,
            seconds: None,
            planted: None,
            selection_evidence: None,
            baseline: None,
        }
    }

    /// Average precision only: what the primary detector is chosen by.
    fn with_average_precision(mut d: DetectorReport, ap: f64) -> DetectorReport {
        d.labelled = Some(LabelledMetrics {
            roc_auc: None,
            average_precision: Some(ap),
            precision_at_k: PrecisionAtK { k: 0, value: None },
            recall_at_1pct_fpr: None,
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
            by_attack_type: Default::default(),
        });
        d
    }

    fn scores() -> DataFrame {
        let explanation = json!({"one_class_svm": [
            {"feature": "duration_s", "value": 40.0, "typical": 1.0, "weight": 9.0}]})
        .to_string();
        df!(
            "raw_version" => ["r1", "r1", "r1", "r2"],
            "flow_id" => [0u64, 1, 2, 0],
            "first_seen_ns" => [0i64, 10_000_000_000, 20_000_000_000, 30_000_000_000],
            "src_ip" => ["10.0.0.1", "10.0.0.2", "<b>x</b>", "10.0.0.1"],
            "src_port" => [1000u32, 2000, 3000, 4000],
            "dst_ip" => ["10.0.0.9", "10.0.0.9", "10.0.0.9", "10.0.0.8"],
            "dst_port" => [80u32, 443, 22, 53],
            "protocol" => [6u32, 6, 6, 17],
            "fwd_packets" => [1.0, 2.0, 3.0, 4.0],
            "bwd_packets" => [1.0, 0.0, 0.0, 0.0],
            "fwd_bytes" => [100.0, 200.0, 300.0, 400.0],
            "bwd_bytes" => [0.0, 0.0, 0.0, 0.0],
            "score_isolation_forest" => [0.1, 0.7, 0.9, 0.4],
            "flagged_isolation_forest" => [false, true, true, false],
            "score_one_class_svm" => [-0.5, 0.2, 0.1, 0.9],
            "flagged_one_class_svm" => [false, true, true, true],
            "flagged" => [false, true, true, true],
            "label" => [Some("normal"), Some("port_scan"), Some("port_scan"), None],
            "explanation" => [None, Some(explanation.as_str()), None, None],
        )
        .unwrap()
    }

    #[test]
    fn flagged_flows_ranked_by_the_champion() {
        let index = RunIndex::build(&report(), &scores(), &HashSet::new()).unwrap();
        assert_eq!(index.rows, 4);
        assert_eq!(index.primary, 1, "the champion one_class_svm ranks");
        let ids: Vec<(&str, u64)> = index
            .anomalies
            .iter()
            .map(|f| (f.raw_version.as_str(), f.flow_id))
            .collect();
        assert_eq!(ids, [("r2", 0), ("r1", 1), ("r1", 2)]);
        let f = index.flow("r1", 1).unwrap();
        assert_eq!((f.packets, f.bytes), (Some(2.0), Some(200.0)));
        assert_eq!(f.explanation[0].0, "one_class_svm");
        assert_eq!(f.explanation[0].1[0].value, 40.0);
        assert_eq!(index.profile_of("duration_s").unwrap().median, 1.0);
    }

    #[test]
    fn a_host_group_champion_does_not_rank_flows() {
        let mut report = report();
        report.selection.champion = Some(("host_group".into(), "v1".into()));
        report.detectors = report
            .detectors
            .into_iter()
            .zip([0.4, 0.3])
            .map(|(d, ap)| with_average_precision(d, ap))
            .collect();
        let index = RunIndex::build(&report, &scores(), &HashSet::new()).unwrap();
        assert_eq!(
            index.primary, 0,
            "the per-flow detector with the best figure"
        );
        let verdict = |flagged_by: &[&str]| HostVerdict {
            host: "10.0.0.1".into(),
            score: 9.0,
            outlying_buckets: 1,
            flagged_by: flagged_by.iter().map(|s| s.to_string()).collect(),
        };
        report.detectors[1].hosts = vec![HostsReport {
            raw_version: "r1".into(),
            source_hosts: 3,
            buckets: 2,
            outlying: vec![
                verdict(&["mad:peers", "dbscan:flows"]),
                verdict(&["mad:peers"]),
            ],
            notes: Vec::new(),
        }];
        let index = RunIndex::build(&report, &scores(), &HashSet::new()).unwrap();
        assert_eq!(
            index.outlying_hosts["10.0.0.1"],
            ["mad:peers", "dbscan:flows"]
        );
    }

    #[test]
    fn filters_sort_and_pages() {
        let index = RunIndex::build(&report(), &scores(), &HashSet::new()).unwrap();
        let q = |filter: Filter| AnomalyQuery {
            filter,
            ..Default::default()
        };
        let ids = |p: AnomalyPage| p.flows.iter().map(|f| f.flow_id).collect::<Vec<_>>();
        let host = Filter {
            host: Some("10.0.0.2".into()),
            ..Default::default()
        };
        assert_eq!(ids(index.anomalies(&q(host))), [1]);
        let port = Filter {
            port: Some(22),
            ..Default::default()
        };
        assert_eq!(ids(index.anomalies(&q(port))), [2]);
        let udp = Filter {
            protocol: Some("UDP".into()),
            ..Default::default()
        };
        assert_eq!(ids(index.anomalies(&q(udp))), [0]);
        let time = Filter {
            from_ns: Some(10_000_000_000),
            to_ns: Some(30_000_000_000),
            ..Default::default()
        };
        assert_eq!(index.anomalies(&q(time)).total, 2);
        let score = Filter {
            min_score: Some(0.15),
            ..Default::default()
        };
        assert_eq!(index.anomalies(&q(score)).total, 2);
        let by_if = Filter {
            detector: Some("isolation_forest".into()),
            ..Default::default()
        };
        assert_eq!(index.anomalies(&q(by_if)).total, 2);

        let sorted = AnomalyQuery {
            sort: Sort::Detector("isolation_forest".into()),
            ..Default::default()
        };
        assert_eq!(ids(index.anomalies(&sorted)), [2, 1, 0]);
        let oldest = AnomalyQuery {
            sort: Sort::Time,
            descending: false,
            ..Default::default()
        };
        assert_eq!(ids(index.anomalies(&oldest)), [1, 2, 0]);
        let ascending = AnomalyQuery {
            descending: false,
            ..Default::default()
        };
        assert_eq!(ids(index.anomalies(&ascending)), [2, 1, 0]);
        let second = AnomalyQuery {
            page: 2,
            per_page: 2,
            ..Default::default()
        };
        let page = index.anomalies(&second);
        assert_eq!((page.total, page.pages, ids(page)), (3, 2, vec![2]));
    }

    #[test]
    fn label_histograms_and_host_timelines() {
        let index = RunIndex::build(&report(), &scores(), &HashSet::new()).unwrap();
        let labels: Vec<(&str, u64)> = index
            .labels
            .iter()
            .map(|l| (l.label.as_str(), l.flows))
            .collect();
        assert_eq!(labels, [("benign", 1), ("port_scan", 2)]);
        // isolation forest scores 0.7 and 0.9 fall in the upper bin.
        assert_eq!(index.labels[1].counts[0], [0, 2]);
        let top = &index.hosts[0];
        assert_eq!(
            (top.host.as_str(), top.flows, top.flagged),
            ("10.0.0.9", 3, 2)
        );
        assert_eq!(index.host_count, 5);
        let t = index.timeline.unwrap();
        assert_eq!(t.bucket_ns, 1_000_000_000);
        assert_eq!(top.flows_per_bucket.iter().sum::<u32>(), 3);
    }

    #[test]
    fn a_missing_score_column_is_named() {
        let scores = scores().drop("score_one_class_svm").unwrap();
        let err = RunIndex::build(&report(), &scores, &HashSet::new()).unwrap_err();
        assert!(err.to_string().contains("score_one_class_svm"), "{err}");
    }
}
