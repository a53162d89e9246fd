//! Group outliers over time: the hosts that stop behaving like their peers.
//!
//! Every source host becomes three time series of `bucket_secs` buckets:
//! flows started, bytes sent and received (log scale), and distinct peers.
//! `augurs-outlier` compares each host's series with the others' at every
//! bucket, by the median absolute deviation (MAD, two-sided, around the
//! median of all hosts) and by DBSCAN (a host outside the cluster the
//! others form). The score of a host in a bucket is its largest MAD score
//! in units of the MAD threshold (above 1 means MAD flags it), or 2 when
//! DBSCAN separates it from the group, whichever is higher; a flow gets the
//! score of its source host in the bucket it started in, so the result
//! joins the other detectors' in one evaluation. The comparison is between
//! peers within the data scored, so fitting learns nothing from the
//! training flows beyond checking that hosts and times are there.

use std::collections::{BTreeMap, BTreeSet};

use augurs_outlier::{DbscanDetector, MADDetector, OutlierDetector, OutlierOutput};
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::detector::ThresholdRule;
use crate::detector::{Checked, Contribution, Fit, Granularity, Input, ParamGuard, Score};
use crate::prep::Activity;
use crate::{DetectorError, bad_param};

/// Parameters of the group detector ([`ParamGuard::check`] them to fit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostGroupParams {
    pub bucket_secs: u64,
    /// MAD threshold in robust standard deviations (3.5 after Iglewicz and Hoaglin).
    pub mad_threshold: f64,
    /// DBSCAN sensitivity in (0, 1): higher flags more hosts.
    pub dbscan_sensitivity: f64,
}

impl Default for HostGroupParams {
    fn default() -> Self {
        HostGroupParams {
            bucket_secs: 60,
            mad_threshold: 3.5,
            dbscan_sensitivity: 0.5,
        }
    }
}

/// The fitted group detector: its parameters (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostGroup {
    params: HostGroupParams,
}

/// Flow scores above this are flagged.
pub const THRESHOLD: f64 = 1.0;

/// The three per-host series.
pub const METRICS: [&str; 3] = ["flows", "bytes", "peers"];

pub use crate::hosts::{GroupAnalysis, HostVerdict, no_activity};

impl ParamGuard for HostGroupParams {
    fn validate(&self) -> Result<(), DetectorError> {
        if self.bucket_secs == 0 {
            return Err(bad_param("bucket_secs", "at least 1", self.bucket_secs));
        }
        if !(self.mad_threshold > 0.0 && self.mad_threshold.is_finite()) {
            return Err(bad_param(
                "mad_threshold",
                "positive and finite",
                self.mad_threshold,
            ));
        }
        if !(self.dbscan_sensitivity > 0.0 && self.dbscan_sensitivity < 1.0) {
            return Err(bad_param(
                "dbscan_sensitivity",
                "in (0, 1)",
                self.dbscan_sensitivity,
            ));
        }
        Ok(())
    }
}

impl Fit for Checked<HostGroupParams> {
    type Fitted = HostGroup;

    /// Checks that the input has hosts and times; there is nothing else to
    /// learn (see the module docs).
    fn fit(&self, input: &Input<'_>) -> Result<HostGroup, DetectorError> {
        if input.activity()?.src.is_empty() {
            return Err(DetectorError::Empty("fit"));
        }
        Ok(HostGroup {
            params: (**self).clone(),
        })
    }
}

/// Every flow gets its source host's score; the threshold is [`THRESHOLD`]
/// whatever the rule; no per-flow explanations (the findings are per host).
impl Score for HostGroup {
    fn granularity(&self) -> Granularity {
        Granularity::Host
    }

    fn score(&self, input: &Input<'_>) -> Result<Array1<f64>, DetectorError> {
        Ok(self.analyze(input.activity()?).flow_scores)
    }

    fn explain(
        &self,
        input: &Input<'_>,
        _top: usize,
    ) -> Result<Vec<Vec<Contribution>>, DetectorError> {
        Ok(vec![Vec::new(); input.rows()])
    }

    fn threshold(&self, _rule: &ThresholdRule, _sorted: &[f64]) -> f64 {
        THRESHOLD
    }

    fn fit_facts(&self) -> serde_json::Value {
        serde_json::json!({ "threshold": THRESHOLD })
    }

    fn analyze_hosts(&self, input: &Input<'_>) -> Result<Option<GroupAnalysis>, DetectorError> {
        Ok(Some(self.analyze(input.activity()?)))
    }
}

impl HostGroup {
    pub fn params(&self) -> &HostGroupParams {
        &self.params
    }

    pub fn analyze(&self, a: &Activity) -> GroupAnalysis {
        let n = a.src.len();
        if n == 0 {
            return GroupAnalysis {
                flow_scores: Array1::zeros(0),
                hosts: Vec::new(),
                source_hosts: 0,
                buckets: 0,
                notes: vec!["no flows".into()],
            };
        }
        let width = self.params.bucket_secs as i64 * 1_000_000_000;
        let first = *a.start_ns.iter().min().expect("flows exist");
        let bucket_of = |ns: i64| ((ns - first) / width) as usize;
        let buckets = bucket_of(*a.start_ns.iter().max().expect("flows exist")) + 1;
        // Source hosts in order of address text, for stable output.
        let sources: BTreeSet<u32> = a.src.iter().copied().collect();
        let mut sources: Vec<u32> = sources.into_iter().collect();
        sources.sort_by(|x, y| a.hosts[*x as usize].cmp(&a.hosts[*y as usize]));
        let row_of: BTreeMap<u32, usize> =
            sources.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let hosts = sources.len();
        let mut flows = vec![vec![0.0; buckets]; hosts];
        let mut bytes = vec![vec![0.0; buckets]; hosts];
        let mut peers: Vec<Vec<BTreeSet<u32>>> = vec![vec![BTreeSet::new(); buckets]; hosts];
        for i in 0..n {
            let (h, b) = (row_of[&a.src[i]], bucket_of(a.start_ns[i]));
            flows[h][b] += 1.0;
            bytes[h][b] += a.bytes[i];
            peers[h][b].insert(a.dst[i]);
        }
        let bytes: Vec<Vec<f64>> = bytes
            .into_iter()
            .map(|s| s.into_iter().map(f64::ln_1p).collect())
            .collect();
        let peers: Vec<Vec<f64>> = peers
            .into_iter()
            .map(|s| s.into_iter().map(|p| p.len() as f64).collect())
            .collect();

        let mut score = vec![vec![0.0f64; buckets]; hosts];
        let mut flagged_by: Vec<BTreeSet<String>> = vec![BTreeSet::new(); hosts];
        let mut notes = Vec::new();
        for (metric, series) in METRICS.iter().zip([&flows, &bytes, &peers]) {
            let slices: Vec<&[f64]> = series.iter().map(Vec::as_slice).collect();
            match run(
                &MADDetector::with_threshold(self.params.mad_threshold),
                &slices,
            ) {
                Ok(out) => {
                    for (h, s) in out.series_results.iter().enumerate() {
                        for (b, v) in s.scores.iter().enumerate() {
                            let ratio = if v.is_finite() {
                                v / self.params.mad_threshold
                            } else {
                                0.0
                            };
                            score[h][b] = score[h][b].max(ratio);
                        }
                        if s.is_outlier {
                            flagged_by[h].insert(format!("mad:{metric}"));
                        }
                    }
                }
                Err(e) => notes.push(format!("mad on {metric}: {e}")),
            }
            if hosts < 3 {
                continue;
            }
            let dbscan = DbscanDetector::with_sensitivity(self.params.dbscan_sensitivity)
                .expect("sensitivity checked");
            match run(&dbscan, &slices) {
                Ok(out) => {
                    for (h, s) in out.series_results.iter().enumerate() {
                        for (b, v) in s.scores.iter().enumerate() {
                            if *v > 0.0 {
                                score[h][b] = score[h][b].max(2.0);
                            }
                        }
                        if s.is_outlier {
                            flagged_by[h].insert(format!("dbscan:{metric}"));
                        }
                    }
                }
                Err(e) => notes.push(format!("dbscan on {metric}: {e}")),
            }
        }
        if hosts < 3 {
            notes.push(format!(
                "dbscan needs at least 3 source hosts; this window has {hosts}"
            ));
        }
        let flow_scores = (0..n)
            .map(|i| score[row_of[&a.src[i]]][bucket_of(a.start_ns[i])])
            .collect();
        let mut verdicts: Vec<HostVerdict> = sources
            .iter()
            .enumerate()
            .filter_map(|(h, host)| {
                let outlying = score[h].iter().filter(|s| **s > THRESHOLD).count();
                (outlying > 0).then(|| HostVerdict {
                    host: a.hosts[*host as usize].clone(),
                    score: score[h].iter().copied().fold(0.0, f64::max),
                    outlying_buckets: outlying,
                    flagged_by: flagged_by[h].iter().cloned().collect(),
                })
            })
            .collect();
        verdicts.sort_by(|x, y| y.score.total_cmp(&x.score).then(x.host.cmp(&y.host)));
        GroupAnalysis {
            flow_scores,
            hosts: verdicts,
            source_hosts: hosts,
            buckets,
            notes,
        }
    }
}

fn run<D: OutlierDetector>(detector: &D, series: &[&[f64]]) -> Result<OutlierOutput, String> {
    let data = detector.preprocess(series).map_err(|e| e.to_string())?;
    detector.detect(&data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prep::Dataset;

    /// Flows with `activity` and no features.
    fn flows(activity: Option<Activity>) -> Dataset {
        let n = activity.as_ref().map_or(0, |a| a.src.len());
        Dataset {
            activity,
            ..Dataset::numeric(Vec::new(), ndarray::Array2::zeros((n, 0)))
        }
    }

    /// `hosts` hosts each opening 5 flows a minute to 2 peers for 10
    /// minutes; host `odd` opens 200 flows to 200 peers in minute 6.
    fn activity(hosts: usize, odd: usize) -> Activity {
        let mut names: Vec<String> = (0..hosts).map(|h| format!("10.0.0.{h}")).collect();
        names.extend((0..200).map(|p| format!("192.0.2.{p}")));
        let (mut src, mut dst, mut start, mut bytes) = (vec![], vec![], vec![], vec![]);
        for minute in 0..10i64 {
            for h in 0..hosts {
                let count = if h == odd && minute == 6 { 200 } else { 5 };
                for f in 0..count {
                    src.push(h as u32);
                    dst.push((hosts + if count == 5 { f % 2 } else { f }) as u32);
                    start.push(1_700_000_000_000_000_000 + minute * 60_000_000_000 + f as i64);
                    bytes.push(1000.0 + (h * 7 + f) as f64);
                }
            }
        }
        Activity {
            hosts: names,
            src,
            dst,
            start_ns: start,
            bytes,
        }
    }

    #[test]
    fn the_host_that_leaves_its_peers_is_flagged_in_the_minute_it_does() {
        let a = activity(20, 13);
        let data = flows(Some(a.clone()));
        let model = HostGroupParams::default()
            .check()
            .unwrap()
            .fit(&Input::dataset(&data))
            .unwrap();
        let result = model.analyze(&a);
        assert_eq!(model.granularity(), Granularity::Host);
        assert_eq!(
            model.score(&Input::dataset(&data)).unwrap(),
            result.flow_scores
        );
        assert_eq!(result.source_hosts, 20);
        assert_eq!(result.buckets, 10);
        assert_eq!(result.hosts.len(), 1, "{:?}", result.hosts);
        assert_eq!(result.hosts[0].host, "10.0.0.13");
        assert!(
            result.hosts[0]
                .flagged_by
                .iter()
                .any(|m| m.ends_with(":peers"))
        );
        // Its flows in minute 6 score above the threshold, no others do.
        for i in 0..a.src.len() {
            let odd = a.src[i] == 13 && (a.start_ns[i] - a.start_ns[0]) / 60_000_000_000 == 6;
            assert_eq!(result.flow_scores[i] > THRESHOLD, odd, "flow {i}");
        }
    }

    #[test]
    fn few_hosts_or_no_hosts() {
        let a = activity(2, 1);
        let params = HostGroupParams::default().check().unwrap();
        let result = params
            .fit(&Input::dataset(&flows(Some(a.clone()))))
            .unwrap()
            .analyze(&a);
        assert!(result.notes.iter().any(|n| n.contains("at least 3")));
        assert_eq!(result.flow_scores.len(), a.src.len());
        assert!(matches!(
            params.fit(&Input::dataset(&flows(None))),
            Err(DetectorError::MissingField(_))
        ));
        assert!(matches!(
            params.fit(&Input::matrix(ndarray::Array2::zeros((3, 1)).view())),
            Err(DetectorError::MissingField(_))
        ));
    }
}
