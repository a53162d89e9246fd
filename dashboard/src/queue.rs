//! The findings queue, a finding's page and the suppression rules, as HTML:
//! what the dashboard opens on. Pure, like [`crate::pages`]: the findings,
//! rules and states already fetched in, markup out. The queue is
//! [`nadir_contract::queue`]'s, so the dashboard and `nadir findings` hide
//! and show the same findings.

use std::collections::{BTreeMap, HashMap};

use maud::{Markup, html};
use nadir_contract::findings::{Finding, FindingKind, Peer, Severity};
use nadir_contract::queue::Queued;
use nadir_contract::suppression::{Matcher, Rule, proposal};
use nadir_contract::triage::TriageState;
use nadir_db::runs::RunSummary;
use nadir_db::suppression::Version;
use nadir_db::triage::Change;
use uuid::Uuid;

use crate::charts;
use crate::index::{Flow, RunIndex};
use crate::pages::{Section, layout, time, time_ns, urlencoding};
use crate::words;

/// Which findings the queue shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFilter {
    pub kind: Option<FindingKind>,
    /// At least this severe.
    pub severity: Option<Severity>,
    /// Part of the source or the peer.
    pub host: Option<String>,
    /// `None`: the open ones (new, acknowledged).
    pub state: Option<StateFilter>,
    /// Also the findings a suppression rule hides.
    pub hidden: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StateFilter {
    All,
    Only(TriageState),
}

impl QueueFilter {
    /// Reads the query string leniently: what cannot be read is named and
    /// left out.
    pub fn parse(params: &HashMap<String, String>) -> (QueueFilter, Vec<String>) {
        let mut problems = Vec::new();
        let text = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let kind = text("kind").and_then(|k| {
            let kind = FindingKind::parse(k);
            if kind.is_none() {
                problems.push(format!("no finding kind {k:?}; all kinds shown"));
            }
            kind
        });
        let severity = text("severity").and_then(|s| {
            let severity = Severity::parse(s);
            if severity.is_none() {
                problems.push(format!("no severity {s:?}; every severity shown"));
            }
            severity
        });
        let state = match text("state") {
            None | Some("open") => None,
            Some("all") => Some(StateFilter::All),
            Some(s) => match s.parse() {
                Ok(state) => Some(StateFilter::Only(state)),
                Err(e) => {
                    problems.push(format!("{e}; open findings shown"));
                    None
                }
            },
        };
        let filter = QueueFilter {
            kind,
            severity,
            host: text("host").map(str::to_string),
            state,
            hidden: text("hidden").is_some(),
        };
        (filter, problems)
    }

    /// Everything but the kind: what the counts per kind are over.
    fn admits_but_kind(&self, q: &Queued<'_>) -> bool {
        let f = q.finding;
        (self.hidden || q.hidden_by.is_none())
            && match self.state {
                None => q.state.open(),
                Some(StateFilter::All) => true,
                Some(StateFilter::Only(s)) => q.state == s,
            }
            && self.severity.is_none_or(|s| f.severity >= s)
            && self
                .host
                .as_ref()
                .is_none_or(|h| f.src.contains(h.as_str()) || f.peer.contains(h.as_str()))
    }

    pub fn admits(&self, q: &Queued<'_>) -> bool {
        self.kind.is_none_or(|k| q.finding.kind == k) && self.admits_but_kind(q)
    }

    /// The query string of this filter with `kind` set to `kind`.
    fn with_kind(&self, kind: Option<FindingKind>) -> String {
        let mut parts = Vec::new();
        if let Some(k) = kind {
            parts.push(format!("kind={}", k.name()));
        }
        if let Some(s) = self.severity {
            parts.push(format!("severity={}", s.name()));
        }
        if let Some(h) = &self.host {
            parts.push(format!("host={}", urlencoding(h)));
        }
        match self.state {
            None => {}
            Some(StateFilter::All) => parts.push("state=all".into()),
            Some(StateFilter::Only(s)) => parts.push(format!("state={}", s.name())),
        }
        if self.hidden {
            parts.push("hidden=1".into());
        }
        parts.join("&")
    }
}

fn severity_badge(s: Severity) -> Markup {
    html! { span class={ "severity " (s.name()) } { (s.name()) } }
}

fn state_badge(s: TriageState) -> Markup {
    html! { span class={ "state " (s.name()) } { (s.words()) } }
}

/// The span of a finding, in words.
fn span(f: &Finding) -> String {
    words::seconds((f.last_seen_ns - f.first_seen_ns).max(0) as f64 / 1e9)
}

fn finding_href(run_id: Uuid, f: &Finding) -> String {
    format!("/runs/{run_id}/findings/{}", f.finding_id)
}

/// The queue of one run: ranked findings, filters, counts per kind.
pub fn queue(
    run: &RunSummary,
    queue: &[Queued<'_>],
    filter: &QueueFilter,
    problems: &[String],
) -> Markup {
    let run_id = run.run_id;
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for q in queue.iter().filter(|q| filter.admits_but_kind(q)) {
        *per_kind.entry(q.finding.kind.name()).or_insert(0) += 1;
    }
    let shown: Vec<(usize, &Queued)> = queue
        .iter()
        .enumerate()
        .filter(|(_, q)| filter.admits(q))
        .collect();
    let hidden = queue.iter().filter(|q| q.hidden_by.is_some()).count();
    let body = html! {
        h1 { "Findings" }
        p.muted {
            "What to look at in run " a href={ "/runs/" (run_id) } { code { (run_id.to_string().get(..8).unwrap_or_default()) } }
            " (" (time(run.started_at)) "), most urgent first. Each finding is one behaviour of one host: "
            "a scan is one finding however many flows it took. "
            a href="/runs" { "Other runs" } " · " a href="/suppressions" { "Suppression rules" }
        }
        @for p in problems { p.error { (p) } }
        form.filters method="get" {
            label { "kind "
                select name="kind" {
                    option value="" { "any kind" }
                    @for k in FindingKind::ALL {
                        option value=(k.name()) selected[filter.kind == Some(k)] { (words::finding_kind(k)) }
                    }
                }
            }
            label { "severity at least "
                select name="severity" {
                    option value="" { "any" }
                    @for s in [Severity::Medium, Severity::High, Severity::Critical] {
                        option value=(s.name()) selected[filter.severity == Some(s)] { (s.name()) }
                    }
                }
            }
            label { "host or name " input type="text" name="host" value=(filter.host.clone().unwrap_or_default()) placeholder="10.0.1.5"; }
            label { "state "
                select name="state" {
                    option value="open" selected[filter.state.is_none()] { "open (new, acknowledged)" }
                    option value="all" selected[filter.state == Some(StateFilter::All)] { "any state" }
                    @for s in TriageState::ALL {
                        option value=(s.name()) selected[filter.state == Some(StateFilter::Only(s))] { (s.words()) }
                    }
                }
            }
            label { input type="checkbox" name="hidden" value="1" checked[filter.hidden]; " show suppressed" }
            button type="submit" { "Filter" }
            " " a href={ "/runs/" (run_id) "/findings" } { "clear" }
        }
        p.kinds {
            a href={ "?" (filter.with_kind(None)) } class=(if filter.kind.is_none() { "on" } else { "" }) { "all " (per_kind.values().sum::<usize>()) }
            @for (kind, n) in &per_kind {
                @let k = FindingKind::parse(kind);
                " · " a href={ "?" (filter.with_kind(k)) } class=(if filter.kind == k { "on" } else { "" }) {
                    (k.map(words::finding_kind).unwrap_or_default()) " " (n) }
            }
        }
        p.count { span id="shown" { (shown.len()) } " of " (queue.len()) " findings shown"
            @if hidden > 0 { " · " (hidden) " hidden by suppression rules" } }
        @if queue.is_empty() {
            p { "This run has no findings: no behaviour stood out and no detector flagged more than its thresholds let through." }
        }
        table.findings {
            thead { tr { th { "#" } th { "severity" } th { "score" } th { "kind" } th { "host" } th { "peer" }
                         th { "flows" } th { "over" } th { "what and why" } th { "state" } } }
            tbody {
                @for (rank, q) in &shown {
                    @let f = q.finding;
                    tr.finding class=(if q.hidden_by.is_some() { "suppressed" } else { "" }) {
                        td.num { (rank + 1) }
                        td { (severity_badge(f.severity)) }
                        td.num { (format!("{:.2}", f.score)) }
                        td { a href=(finding_href(run_id, f)) { (words::finding_kind(f.kind)) } }
                        td { span.addr { (f.src) } }
                        td { span.addr { (f.peer) } }
                        td.num { (f.flows) }
                        td { (span(f)) }
                        td.why { (f.explanation)
                            div.muted { "detectors: " (f.detectors.iter().map(|d| words::detector(d)).collect::<Vec<_>>().join(", ")) } }
                        td { (state_badge(q.state))
                            @if let Some(r) = q.hidden_by { div.muted { "hidden by rule " (r.id) } } }
                    }
                }
            }
        }
    };
    layout("Findings", Section::Run(run_id, "findings"), None, body)
}

/// A beacon's intervals between connections, in ten bins.
fn intervals(flows: &[&Flow]) -> Vec<(String, f64)> {
    let mut starts: Vec<i64> = flows.iter().filter_map(|f| f.first_seen_ns).collect();
    starts.sort_unstable();
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .collect();
    let (Some(lo), Some(hi)) = (
        gaps.iter().copied().reduce(f64::min),
        gaps.iter().copied().reduce(f64::max),
    ) else {
        return Vec::new();
    };
    let bins = 10usize;
    let width = ((hi - lo) / bins as f64).max(1e-3);
    let mut counts = vec![0u32; bins];
    for g in &gaps {
        counts[(((g - lo) / width) as usize).min(bins - 1)] += 1;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let from = lo + i as f64 * width;
            (
                format!("{}–{}", words::seconds(from), words::seconds(from + width)),
                *c as f64,
            )
        })
        .collect()
}

/// Evidence flows and the flagged ones among them over the finding's span.
fn timeline(f: &Finding, flows: &[&Flow]) -> Markup {
    const BUCKETS: usize = 60;
    let span = (f.last_seen_ns - f.first_seen_ns).max(1);
    let mut all = vec![0u32; BUCKETS];
    let mut flagged = vec![0u32; BUCKETS];
    for flow in flows {
        let Some(t) = flow.first_seen_ns else {
            continue;
        };
        let b = (((t - f.first_seen_ns).max(0) as i128 * BUCKETS as i128 / span as i128) as usize)
            .min(BUCKETS - 1);
        all[b] += 1;
        if flow.flagged {
            flagged[b] += 1;
        }
    }
    charts::timeline("evidence flows over time", &all, &flagged, true)
}

/// The hosts a finding's evidence talks to, with their flows.
fn counterparts<'a>(f: &Finding, flows: &[&'a Flow]) -> Vec<(&'a str, usize)> {
    let mut hosts: HashMap<&str, usize> = HashMap::new();
    for flow in flows {
        for h in [&flow.src_ip, &flow.dst_ip].into_iter().flatten() {
            if *h != f.src {
                *hosts.entry(h.as_str()).or_insert(0) += 1;
            }
        }
    }
    let mut hosts: Vec<(&str, usize)> = hosts.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    hosts
}

/// The most evidence flows one finding page lists.
const EVIDENCE_SHOWN: usize = 200;

/// A finding: what, why, its evidence, its history, and what to do.
pub fn finding(
    run_id: Uuid,
    index: &RunIndex,
    q: &Queued<'_>,
    history: &[Change],
    analyst: &str,
) -> Markup {
    let f = q.finding;
    let flows = index.evidence_of(f);
    let hosts = counterparts(f, &flows);
    let proposed = proposal(f);
    let body = html! {
        h1 { (words::finding_kind(f.kind)) ": " span.addr { (f.src) } " → " span.addr { (f.peer) } }
        p { (severity_badge(f.severity)) " score " (format!("{:.2}", f.score)) " · " (state_badge(q.state))
            @if let Some(r) = q.hidden_by { " · " span.suppressed { "hidden by rule " (r.id) ": " (r.describe()) " (" (r.reason) ")" } } }
        p.explanation { (f.explanation) }
        table.facts {
            tr { th { "first / last seen (UTC)" } td { (time_ns(Some(f.first_seen_ns))) " → " (time_ns(Some(f.last_seen_ns))) " (" (span(f)) ")" } }
            tr { th { "flows / bytes" } td { (f.flows) " / " (words::bytes(f.bytes as f64)) } }
            tr { th { "detectors" } td { (f.detectors.iter().map(|d| words::detector(d)).collect::<Vec<_>>().join(", ")) } }
            tr { th { "finding id" } td { code { (f.finding_id) } } }
        }
        h2 { "Hosts involved" }
        ul.hosts {
            li { span.addr { (f.src) } " (source) · " a href={ "/runs/" (run_id) "/hosts?host=" (urlencoding(&f.src)) } { "its timeline" }
                 " · " a href={ "/runs/" (run_id) "/anomalies?host=" (urlencoding(&f.src)) } { "its flagged flows" } }
            @if let Some(ip) = Peer::of(&f.peer).ip() {
                li { span.addr { (ip) } " (peer) · " a href={ "/runs/" (run_id) "/hosts?host=" (urlencoding(&ip.to_string())) } { "its timeline" } }
            } @else { li { span.addr { (f.peer) } " (peer)" } }
            @if hosts.len() > 1 || (hosts.len() == 1 && Peer::of(&f.peer).ip().is_none()) {
                li { (hosts.len()) " hosts in the evidence: "
                    @for (h, n) in hosts.iter().take(12) { span.addr { (h) } " (" (n) ") " }
                    @if hosts.len() > 12 { "…" } }
            }
        }
        h2 { "Timeline" }
        (timeline(f, &flows))
        p.muted { "Grey: evidence flows; red: those a learned detector flagged." }
        @if f.kind == FindingKind::Beacon {
            h3 { "Intervals between connections" }
            (charts::bars("intervals between connections", &intervals(&flows), &[]))
            p.muted { "A beacon calls at regular intervals: most of its gaps fall in one or two bars." }
        }
        h2 { "Evidence flows" }
        p.muted { (flows.len()) " flows" @if flows.len() > EVIDENCE_SHOWN { ", the first " (EVIDENCE_SHOWN) " shown" } "." }
        table.anomalies.evidence {
            thead { tr { th { "first packet (UTC)" } th { "source" } th { "destination" } th { "proto" } th { "bytes" } th { "packets" } th { "flagged by" } th { "label" } } }
            tbody {
                @for flow in flows.iter().take(EVIDENCE_SHOWN) {
                    tr.flow {
                        td { a href={ "/runs/" (run_id) "/flows/" (urlencoding(&flow.raw_version)) "/" (flow.flow_id) } { (time_ns(flow.first_seen_ns)) } }
                        td { span.addr { (flow.src_ip.clone().unwrap_or_default()) } @if let Some(p) = flow.src_port { span.port { ":" (p) } } }
                        td { span.addr { (flow.dst_ip.clone().unwrap_or_default()) } @if let Some(p) = flow.dst_port { span.port { ":" (p) } }
                             @for n in &flow.names { div.name { (n) } } }
                        td { (flow.protocol_name()) }
                        td.num { (flow.bytes.map(words::bytes).unwrap_or_else(|| "–".into())) }
                        td.num { (flow.packets.map(words::number).unwrap_or_else(|| "–".into())) }
                        td { (index.detectors.iter().zip(&flow.flagged_by).filter(|(_, x)| **x).map(|(d, _)| words::detector(&d.name)).collect::<Vec<_>>().join(", ")) }
                        td.label { (flow.label.clone().unwrap_or_default()) }
                    }
                }
            }
        }
        h2 { "History" }
        @if history.is_empty() { p.muted { "New: no analyst has looked at it yet." } }
        ul.verdicts { @for c in history {
            li { (state_badge(c.state)) " by " strong { (c.analyst) } " at " (time(c.at))
                 @if c.labelled > 0 { " · labelled " (c.labelled) " flows" }
                 @if !c.note.is_empty() { blockquote { (c.note) } } }
        } }
        form.triage method="post" action={ (finding_href(run_id, f)) "/triage" } {
            fieldset {
                legend { "Triage" }
                label { "state "
                    select name="state" {
                        @for s in TriageState::ALL.into_iter().filter(|s| *s != TriageState::New) {
                            option value=(s.name()) selected[s == q.state] { (s.words()) }
                        }
                    }
                }
                label.block { "note " textarea name="note" rows="2" maxlength="4000" {} }
                button type="submit" { "Save" } " as " strong { (analyst) }
                p.muted { "A confirmed attack labels its evidence flows as attacks, a false positive as benign: the next evaluations of this capture read them as ground truth." }
            }
        }
        @if let Some((matcher, pattern, kind)) = proposed {
            form.suppress method="post" action="/suppressions" {
                fieldset {
                    legend { "Suppress like this" }
                    p.muted { "Hide findings like this one, in every run (past runs included), from the queue and exports. The finding stays in its run's artifacts." }
                    label { "match "
                        select name="matcher" {
                            @for m in Matcher::ALL { option value=(m.name()) selected[m == matcher] { (m.name()) } }
                        }
                    }
                    label { "pattern " input type="text" name="pattern" value=(pattern) required size="36"; }
                    label { "only "
                        select name="kind" {
                            option value="" { "every kind" }
                            @for k in FindingKind::ALL { option value=(k.name()) selected[Some(k) == kind] { (words::finding_kind(k)) } }
                        }
                    }
                    label.block { "reason " input type="text" name="reason" required maxlength="1000" size="60" placeholder="why this is benign"; }
                    label { "expires (UTC, optional) " input type="date" name="expires"; }
                    input type="hidden" name="back" value=(finding_href(run_id, f));
                    button type="submit" { "Add rule" } " owned by " strong { (analyst) }
                }
            }
        }
    };
    layout("Finding", Section::Run(run_id, "findings"), None, body)
}

/// The rules in force, with how many findings each hides, and every
/// version of every rule.
pub fn suppressions(
    rules: &[Rule],
    hidden: &BTreeMap<i64, usize>,
    runs: usize,
    history: &[Version],
    problems: &[String],
) -> Markup {
    let body = html! {
        h1 { "Suppression rules" }
        p.muted { "A rule hides the findings it matches wherever findings are shown or exported, in every run, past runs included; "
            "the findings themselves stay in their runs' artifacts, and each evaluation records the rules in force when it ran. "
            "Add one from a finding's page (\u{201c}suppress like this\u{201d}) or with " code { "nadir suppress add" } "." }
        @for p in problems { p.error { (p) } }
        @if rules.is_empty() { p { "No rule is in force." } }
        @else {
            table.rules {
                thead { tr { th { "rule" } th { "matches" } th { "hides" } th { "owner" } th { "reason" } th { "expires" } th { "since" } th { "" } } }
                tbody { @for r in rules {
                    tr.rule {
                        td.num { (r.id) }
                        td { code { (r.describe()) } }
                        td.num.hides { (hidden.get(&r.id).copied().unwrap_or(0)) }
                        td { (r.owner) }
                        td { (r.reason) }
                        td { (r.expires_at.map(time).unwrap_or_else(|| "never".into())) }
                        td { (time(r.at)) }
                        td { form method="post" action={ "/suppressions/" (r.id) "/remove" } { button type="submit" { "remove" } } }
                    }
                } }
            }
            p.muted { "Hides: findings hidden in the newest " (runs) " evaluated runs." }
        }
        h2 { "History" }
        @if history.is_empty() { p.muted { "No rule was ever added." } }
        ul { @for v in history {
            li { "rule " (v.rule.id) " v" (v.rule.version) " " code { (v.rule.describe()) } " "
                 @if v.removed { "removed" } @else { "added" } " by " strong { (v.changed_by) } " at " (time(v.rule.at)) }
        } }
    };
    layout("Suppression rules", Section::Suppressions, None, body)
}
