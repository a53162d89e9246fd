//! The pages as HTML, from data already fetched: pure functions, no I/O.
//!
//! Everything that came from a capture (addresses, names, labels, keys)
//! is text to maud and so escaped wherever it lands; no page carries a
//! script, and the Content-Security-Policy forbids one.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use uuid::Uuid;

use crate::artifacts::{FlowFeatures, LoadedRun};
use crate::charts;
use crate::index::{AnomalyPage, AnomalyQuery, Flow, RunIndex};
use crate::words;
use nadir_db::feedback::Verdict;
use nadir_db::registry::{ChampionChange, RegisteredModel};
use nadir_db::runs::{EvaluationPoint, RunSummary as Run};
use nadir_detectors::group::HostVerdict;
use nadir_pipeline::report::{
    DetectorFigures, DetectorReport, Drift, EvalReport, LabelledMetrics, RunFigures,
};

/// Where a page sits in the navigation.
pub enum Section<'a> {
    Runs,
    Models,
    Suppressions,
    Run(Uuid, &'a str),
}

/// The frame of every page; `refresh` reloads it every so many seconds.
pub fn layout(title: &str, section: Section<'_>, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) " · nadir" }
                link rel="stylesheet" href="/static/app.css";
                link rel="icon" type="image/svg+xml" href="/static/favicon.svg";
            }
            body {
                header {
                    a.brand href="/" { "nadir" }
                    nav {
                        a href="/" class=(if matches!(section, Section::Run(_, "findings")) { "on" } else { "" }) { "Findings" }
                        a href="/runs" class=(if matches!(section, Section::Runs) { "on" } else { "" }) { "Runs" }
                        a href="/models" class=(if matches!(section, Section::Models) { "on" } else { "" }) { "Models" }
                        a href="/suppressions" class=(if matches!(section, Section::Suppressions) { "on" } else { "" }) { "Suppression" }
                    }
                }
                @if let Section::Run(id, tab) = section {
                    nav.tabs {
                        @for (t, label, path) in [("findings", "Findings", "/findings"), ("run", "Overview", ""), ("anomalies", "Flagged flows", "/anomalies"),
                                                  ("scores", "Scores", "/scores"), ("hosts", "Hosts", "/hosts")] {
                            a href={ "/runs/" (id) (path) } class=(if tab == t { "on" } else { "" }) { (label) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn time_ns(ns: Option<i64>) -> String {
    ns.map(DateTime::<Utc>::from_timestamp_nanos)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "–".into())
}

fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!("{}m {:02}s", (seconds / 60.0) as u64, seconds as u64 % 60)
    } else {
        format!(
            "{}h {:02}m",
            (seconds / 3600.0) as u64,
            (seconds as u64 % 3600) / 60
        )
    }
}

fn status(s: &str) -> Markup {
    html! { span class={ "status " (s) } { (s) } }
}

fn short(v: &str, n: usize) -> &str {
    v.get(..n).unwrap_or(v)
}

/// A failed stage's error, said plainly: which stage, what happened.
pub fn plain_error(stage: Option<&str>, error: &str) -> String {
    let cause = error
        .strip_prefix("gave up after ")
        .and_then(|rest| rest.split_once(": "))
        .map(|(attempts, cause)| format!("{cause} (tried {attempts})"))
        .unwrap_or_else(|| error.to_string());
    match stage {
        Some(stage) => format!("The {stage} stage failed: {cause}"),
        None => format!("The run failed: {cause}"),
    }
}

// ---------------------------------------------------------------- runs

pub fn runs(runs: &[Run]) -> Markup {
    let running = runs.iter().any(|r| r.status == "running");
    let body = html! {
        h1 { "Pipeline runs" }
        @if running { p.muted { "A run is in progress: this page refreshes every 5 seconds." } }
        @if runs.is_empty() {
            p { "No runs yet. Drop a capture into the " code { "raw" } " bucket, or run " code { "nadir start" } "." }
        } @else {
            table.runs {
                thead { tr { th { "started" } th { "run" } th { "trigger" } th { "input" } th { "status" }
                    @for s in ["ingest", "transform", "train", "eval"] { th { (s) } } th { "flows" } th { "flagged" } } }
                tbody {
                    @for r in runs {
                        tr class={ "run " (r.status) } {
                            td { (time(r.started_at)) }
                            td { a href={ "/runs/" (r.run_id) } { code { (short(&r.run_id.to_string(), 8)) } } }
                            td { (r.trigger) }
                            td.keys { @for o in r.objects.iter().take(3) { div { (o) } } @if r.objects.len() > 3 { div.muted { "+" (r.objects.len() - 3) " more" } } }
                            td { (status(&r.status)) }
                            @for s in ["ingest", "transform", "train", "eval"] {
                                td.stage {
                                    @if let Some(st) = r.stages.iter().find(|x| x.stage == s) {
                                        (status(&st.status)) " " span.muted { (duration(st.seconds)) }
                                        @if st.attempts > 1 { " " span.muted { "(" (st.attempts) " attempts)" } }
                                    } @else { span.muted { "–" } }
                                }
                            }
                            td.num { (summary_number(r, |f| f.rows)) }
                            td.num { (summary_number(r, |f| f.flagged)) }
                        }
                        @if let Some(e) = &r.error {
                            tr.error { td colspan="11" { (plain_error(r.error_stage.as_deref(), e)) } }
                        }
                    }
                }
            }
        }
    };
    layout("Runs", Section::Runs, running.then_some(5), body)
}

/// The run's headline figures (`pipeline_runs.report.summary`), once it has them.
fn figures_of(summary: Option<&Value>) -> Option<RunFigures> {
    serde_json::from_value(summary?.clone()).ok()
}

fn summary_number(r: &Run, pick: fn(&RunFigures) -> usize) -> String {
    figures_of(r.report.as_ref().and_then(|rep| rep.get("summary")))
        .map(|f| words::number(pick(&f) as f64))
        .unwrap_or_else(|| "–".into())
}

// ---------------------------------------------------------------- run detail

/// Rows of artifacts: `list` is an array of artifact refs, or one object.
fn artifact_rows(list: &Value) -> Markup {
    let items: Vec<&Value> = match list {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![list],
        _ => Vec::new(),
    };
    html! {
        @for a in items {
            tr {
                td { code { "s3://" (a["bucket"].as_str().unwrap_or("")) "/" (a["key"].as_str().unwrap_or("")) } }
                td { code { (a["version"].as_str().unwrap_or("")) } }
                td { code title=(a["sha256"].as_str().unwrap_or("")) { (short(a["sha256"].as_str().unwrap_or(""), 12)) } }
                td.num { (a["size"].as_f64().map(words::bytes).unwrap_or_default()) }
            }
        }
    }
}

pub fn run_detail(
    run: &Run,
    rows: &[nadir_db::runs::StageRow],
    loaded: Option<&LoadedRun>,
    load_error: Option<&str>,
) -> Markup {
    let body = html! {
        h1 { "Run " code { (run.run_id) } }
        p { (status(&run.status)) " · started " (time(run.started_at))
            @if let Some(f) = run.finished_at { " · finished " (time(f)) " · " (duration((f - run.started_at).num_milliseconds() as f64 / 1000.0)) }
            " · trigger " code { (run.trigger) } }
        @if let Some(e) = &run.error { p.error { (plain_error(run.error_stage.as_deref(), e)) } }
        @if run.status == "running" { p.muted { "In progress: this page refreshes every 5 seconds." } }

        h2 { "Lineage" }
        p.muted { "Every artifact the run read and wrote, with the version and sha256 the audit trail recorded." }
        table.lineage {
            thead { tr { th { "stage" } th { "item" } th { "status" } th { "took" } th { "rows" } th { "attempts" } th { "worker" } } }
            tbody {
                @for r in rows {
                    tr {
                        td { (r.stage.name()) } td { code { (r.item) } } td { (status(&r.status)) }
                        td.num { (duration(r.seconds)) }
                        td.num { (r.metrics["rows"].as_f64().or(r.metrics["flows"].as_f64()).map(words::number).unwrap_or_else(|| "–".into())) }
                        td.num { (r.attempts) } td.muted { (r.worker) }
                    }
                    tr.artifacts { td {} td colspan="6" {
                        table.inner {
                            tr { th colspan="4" { "read" } }
                            (artifact_rows(&read_artifacts(r)))
                            tr { th colspan="4" { "wrote" } }
                            (artifact_rows(&r.outputs))
                        }
                        @if let Some(e) = &r.error { p.error { (e) } }
                    } }
                }
            }
        }

        @if let Some(loaded) = loaded {
            (comparison(&loaded.report, &loaded.index))
        } @else if let Some(e) = load_error {
            h2 { "Evaluation" } p.muted { (e) }
        }
    };
    let refresh = (run.status == "running").then_some(5);
    layout("Run", Section::Run(run.run_id, "run"), refresh, body)
}

/// What a stage job read; a RAW object (ingest) with the version and
/// sha256 that ingest gave it.
fn read_artifacts(r: &nadir_db::runs::StageRow) -> Value {
    match (&r.inputs, r.stage) {
        (Value::Object(raw), nadir_contract::stage::StageKind::Ingest) => {
            let mut raw = raw.clone();
            raw.insert("version".into(), r.metrics["raw_version"].clone());
            raw.insert("sha256".into(), r.metrics["sha256"].clone());
            Value::Object(raw)
        }
        (inputs, _) => inputs.clone(),
    }
}

/// A figure, or a dash when there is none.
fn figure(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(words::number)
        .unwrap_or_else(|| "–".into())
}

/// The detector comparison table and the champion decision.
fn comparison(report: &EvalReport, index: &RunIndex) -> Markup {
    let selection = &report.selection;
    let is_champion = |d: &DetectorReport| {
        selection
            .champion
            .as_ref()
            .is_some_and(|(a, v)| d.algorithm == *a && d.version == *v)
    };
    let labelled = |d: &DetectorReport, f: fn(&LabelledMetrics) -> Option<f64>| {
        figure(d.labelled.as_ref().and_then(f))
    };
    html! {
        h2 { "Detectors compared" }
        p { (words::number(index.rows as f64)) " flows scored, "
            (words::number(report.flagged as f64)) " flagged"
            @if report.labelled {
                "; " (words::number(report.labelled_rows as f64)) " carry labels ("
                (words::number(report.attacks.unwrap_or(0) as f64)) " attacks)"
            } @else { "; no labels, so no accuracy figures" } "." }
        table.detectors {
            thead { tr { th { "detector" } th { "role" } th { "version" } th { "ROC-AUC" } th { "average precision" }
                th { "precision@k" } th { "recall at 1% FPR" } th { "F1" } th { "threshold" } th { "flagged" } } }
            tbody {
                @for d in &report.detectors {
                    tr class=(if is_champion(d) { "champion" } else { "" }) {
                        td { (words::detector(&d.name)) }
                        td { (if d.is_champion() { "champion" } else { "challenger" }) }
                        td { code { (d.version) } }
                        td.num { (labelled(d, |m| m.roc_auc)) } td.num { (labelled(d, |m| m.average_precision)) }
                        td.num { (labelled(d, |m| m.precision_at_k.value)) }
                        td.num { (labelled(d, |m| m.recall_at_1pct_fpr)) } td.num { (labelled(d, |m| Some(m.f1))) }
                        td.num { (figure(Some(d.threshold))) } td.num { (words::number(d.flagged as f64)) }
                    }
                }
            }
        }
        div.decision {
            strong { "Decision: " (selection.action.name()) }
            @if let Some((algorithm, version)) = &selection.champion {
                " · champion " (words::detector(algorithm)) " " code { (version) }
            }
            p { (selection.reason) }
        }
        @if let Some(note) = &report.champion_not_scored { p.muted { "Champion left out: " (note) } }
        p.muted { (thresholds(report.baseline.as_ref())) }
    }
}

/// What the behavioural detectors' thresholds rest on, in a sentence.
fn thresholds(baseline: Option<&nadir_contract::params::BaselineSummary>) -> String {
    match baseline {
        Some(b) => format!(
            "Behavioural thresholds: each host is held to what it did in {} earlier partition(s) of the \
             training window ({} hosts, {} flows over {}), never below the defaults.",
            b.partitions.len(),
            words::number(b.hosts as f64),
            words::number(b.flows as f64),
            duration(b.window_s)
        ),
        None => "Behavioural thresholds: the documented defaults (the training window holds no \
                 partition besides the ones judged here)."
            .into(),
    }
}

// ---------------------------------------------------------------- anomalies

/// The query string of `query` with `changes` applied (for links).
pub fn link(query: &AnomalyQuery, changes: &[(&str, String)]) -> String {
    let f = &query.filter;
    let mut pairs: Vec<(&str, String)> = vec![
        ("host", f.host.clone().unwrap_or_default()),
        ("port", f.port.map(|p| p.to_string()).unwrap_or_default()),
        ("protocol", f.protocol.clone().unwrap_or_default()),
        ("from", f.from_ns.map(ns_input).unwrap_or_default()),
        ("to", f.to_ns.map(ns_input).unwrap_or_default()),
        (
            "min_score",
            f.min_score.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("detector", f.detector.clone().unwrap_or_default()),
        ("sort", query.sort.name()),
        (
            "order",
            if query.descending { "desc" } else { "asc" }.into(),
        ),
        ("page", query.page.to_string()),
        ("per_page", query.per_page.to_string()),
    ];
    for (k, v) in changes {
        if let Some(p) = pairs.iter_mut().find(|(name, _)| name == k) {
            p.1 = v.clone();
        }
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.append_pair(k, v);
    }
    out.finish()
}

/// A time as a `datetime-local` input value (UTC).
pub fn ns_input(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn endpoint(ip: &Option<String>, port: Option<u32>) -> Markup {
    html! {
        @match ip {
            Some(ip) => { span.addr { (ip) } @if let Some(p) = port { span.port { ":" (p) } } }
            None => { span.muted { "–" } }
        }
    }
}

fn verdict_badge(v: &Verdict) -> Markup {
    let (class, text) = if v.verdict == "true_positive" {
        ("tp", "true positive")
    } else {
        ("fp", "false positive")
    };
    html! { span class={ "verdict " (class) } title=(v.comment) { (text) } }
}

pub fn anomalies(
    run_id: Uuid,
    index: &RunIndex,
    query: &AnomalyQuery,
    page: &AnomalyPage<'_>,
    feedback: &[Verdict],
    problems: &[String],
) -> Markup {
    let primary = &index.detectors[index.primary].name;
    let sort_link = |key: &str, label: &str| {
        let on = query.sort.name() == key;
        let order = if on && query.descending {
            "asc"
        } else {
            "desc"
        };
        html! {
            a.sort href={ "?" (link(query, &[("sort", key.to_string()), ("order", order.into()), ("page", "1".into())])) }
                class=(if on { "on" } else { "" }) { (label) @if on { (if query.descending { " ↓" } else { " ↑" }) } }
        }
    };
    let export = |ext: &str| {
        format!(
            "/runs/{run_id}/anomalies.{ext}?{}",
            link(
                query,
                &[("page", String::new()), ("per_page", String::new())]
            )
        )
    };
    let body = html! {
        h1 { "Anomalies" }
        p.muted { "Flows flagged by at least one detector, ranked by " (words::detector(primary))
            ". A detector flags a flow when its score is above the threshold it set on the training flows." }
        @for p in problems { p.error { (p) } }
        form.filters method="get" {
            label { "host or name " input type="text" name="host" value=(query.filter.host.clone().unwrap_or_default()) placeholder="10.0.1.5"; }
            label { "port " input type="number" name="port" min="0" max="65535" value=(query.filter.port.map(|p| p.to_string()).unwrap_or_default()); }
            label { "protocol " input type="text" name="protocol" size="6" value=(query.filter.protocol.clone().unwrap_or_default()) placeholder="tcp"; }
            label { "from (UTC) " input type="datetime-local" step="1" name="from" value=(query.filter.from_ns.map(ns_input).unwrap_or_default()); }
            label { "to (UTC) " input type="datetime-local" step="1" name="to" value=(query.filter.to_ns.map(ns_input).unwrap_or_default()); }
            label { "score ≥ " input type="number" step="any" name="min_score" value=(query.filter.min_score.map(|v| v.to_string()).unwrap_or_default()); }
            label { "flagged by "
                select name="detector" {
                    option value="" { "any detector" }
                    @for d in &index.detectors {
                        option value=(d.name) selected[query.filter.detector.as_deref() == Some(d.name.as_str())] { (words::detector(&d.name)) }
                    }
                }
            }
            input type="hidden" name="sort" value=(query.sort.name());
            input type="hidden" name="order" value=(if query.descending { "desc" } else { "asc" });
            button type="submit" { "Filter" }
            " " a href={ "/runs/" (run_id) "/anomalies" } { "clear" }
        }
        p.count { span id="total" { (words::number(page.total as f64)) } " flagged flows match"
            " · page " (page.page) " of " (page.pages)
            " · export " a href=(export("csv")) { "CSV" } " " a href=(export("json")) { "JSON" } }
        table.anomalies {
            thead { tr {
                th { (sort_link("time", "first packet (UTC)")) }
                th { "source" } th { "destination" } th { "proto" }
                th { (sort_link("bytes", "bytes")) } th { (sort_link("packets", "packets")) }
                @for d in &index.detectors { th { (sort_link(&format!("score_{}", d.name), &words::detector(&d.name))) } }
                th { (sort_link("detectors", "flagged by")) }
                th { "why" }
                th { "verdict" }
            } }
            tbody {
                @for f in &page.flows {
                    tr.flow {
                        td { a href={ "/runs/" (run_id) "/flows/" (urlencoding(&f.raw_version)) "/" (f.flow_id) } { (time_ns(f.first_seen_ns)) } }
                        td { (endpoint(&f.src_ip, f.src_port)) }
                        td { (endpoint(&f.dst_ip, f.dst_port))
                             @for n in &f.names { div.name { (n) } } }
                        td { (f.protocol_name()) }
                        td.num { (f.bytes.map(words::bytes).unwrap_or_else(|| "–".into())) }
                        td.num { (f.packets.map(words::number).unwrap_or_else(|| "–".into())) }
                        @for (i, s) in f.scores.iter().enumerate() {
                            td.num class=(if f.flagged_by[i] { "flagged" } else { "" }) { (words::number(*s)) }
                        }
                        td.num { (f.flagged_by.iter().filter(|x| **x).count()) "/" (f.flagged_by.len()) }
                        td.why {
                            @if let Some((_, contributions)) = f.explanation.first() {
                                @for c in contributions { div { (words::contribution(&c.feature, c.value, c.typical)) } }
                            }
                            @if let Some(reason) = host_reason(index, f) { div { (reason) } }
                            @if let Some(l) = &f.label { div.label { "label: " (l) } }
                        }
                        td { @if let Some(v) = feedback.iter().find(|v| v.raw_version == f.raw_version && v.flow_id == f.flow_id) { (verdict_badge(v)) } }
                    }
                }
            }
        }
        nav.pager {
            @if page.page > 1 { a href={ "?" (link(query, &[("page", (page.page - 1).to_string())])) } { "← previous" } }
            " page " (page.page) " of " (page.pages) " "
            @if page.page < page.pages { a id="next" href={ "?" (link(query, &[("page", (page.page + 1).to_string())])) } { "next →" } }
        }
    };
    layout("Anomalies", Section::Run(run_id, "anomalies"), None, body)
}

/// The host-group detector's reason, when it flagged the flow.
fn host_reason(index: &RunIndex, f: &Flow) -> Option<String> {
    let flagged_by_group = index
        .detectors
        .iter()
        .zip(&f.flagged_by)
        .any(|(d, flagged)| *flagged && !crate::index::per_flow(&d.algorithm));
    if !flagged_by_group {
        return None;
    }
    f.src_ip.iter().chain(&f.dst_ip).find_map(|h| {
        index
            .outlying_hosts
            .get(h)
            .map(|s| words::outlying_host(h, s))
    })
}

/// A path segment, percent-encoded.
pub fn urlencoding(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---------------------------------------------------------------- flow detail

pub fn flow(
    run_id: Uuid,
    index: &RunIndex,
    f: &Flow,
    features: Option<&FlowFeatures>,
    features_error: Option<&str>,
    verdicts: &[Verdict],
    analyst: &str,
) -> Markup {
    let body = html! {
        h1 { "Flow " code { (f.flow_id) } " of " code { (f.raw_version) } }
        table.facts {
            tr { th { "first / last packet (UTC)" } td { (time_ns(f.first_seen_ns)) " → " (time_ns(f.last_seen_ns)) } }
            tr { th { "source" } td { (endpoint(&f.src_ip, f.src_port)) } }
            tr { th { "destination" } td { (endpoint(&f.dst_ip, f.dst_port)) } }
            tr { th { "protocol" } td { (f.protocol_name()) } }
            tr { th { "bytes / packets" } td { (f.bytes.map(words::bytes).unwrap_or_else(|| "–".into())) " / " (f.packets.map(words::number).unwrap_or_else(|| "–".into())) } }
            @if !f.names.is_empty() { tr { th { "names" } td { @for n in &f.names { div.name { (n) } } } } }
            @if let Some(l) = &f.label { tr { th { "label" } td.label { (l) } } }
        }
        h2 { "Scores" }
        table.detectors {
            thead { tr { th { "detector" } th { "score" } th { "threshold" } th { "flagged" } } }
            tbody { @for (i, d) in index.detectors.iter().enumerate() {
                tr { td { (words::detector(&d.name)) } td.num { (words::number(f.scores[i])) } td.num { (words::number(d.threshold)) }
                     td { @if f.flagged_by[i] { strong { "yes" } } @else { "no" } } }
            } }
        }
        h2 { "Why it was flagged" }
        @let host = host_reason(index, f);
        @if let Some(reason) = &host { h3 { (words::detector("host_group")) } p { (reason) } }
        @if f.explanation.is_empty() && host.is_none() { p.muted { "No explanation was recorded for this flow." } }
        @for (detector, contributions) in &f.explanation {
            h3 { (words::detector(detector)) }
            ul.why { @for c in contributions { li { (words::contribution(&c.feature, c.value, c.typical)) } } }
        }
        h2 { "Against the training flows" }
        p.muted { "Bars: the middle half (25–75 %) of the training flows, the dark line their median; the red dot is this flow." }
        @if let Some(e) = features_error { p.error { (e) } }
        @if let Some(values) = features.and_then(|all| all.get(&f.flow_id)) {
            table.compare {
                thead { tr { th { "feature" } th { "this flow" } th { "typical (median)" } th { "" } } }
                tbody {
                    @for (name, v) in ordered_features(f, values) {
                        @if let Some(p) = index.profile_of(&name) {
                            tr class=(if *v < p.p25 || *v > p.p75 { "outside" } else { "" }) {
                                td { (words::feature_name(&name)) } td.num { (words::value(&name, *v)) }
                                td.num { (words::value(&name, p.median)) }
                                td { (charts::against(*v, p.p25, p.median, p.p75)) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Analyst verdict" }
        @if verdicts.is_empty() { p.muted { "No verdict yet." } }
        ul.verdicts { @for v in verdicts {
            li { (verdict_badge(v)) " by " strong { (v.analyst) } " at " (time(v.at))
                 @if !v.comment.is_empty() { blockquote { (v.comment) } } }
        } }
        form.feedback method="post" action={ "/runs/" (run_id) "/flows/" (urlencoding(&f.raw_version)) "/" (f.flow_id) "/feedback" } {
            fieldset {
                legend { "Is this flow an attack?" }
                label { input type="radio" name="verdict" value="true_positive" required; " true positive (an attack)" }
                label { input type="radio" name="verdict" value="false_positive"; " false positive (benign)" }
                label.block { "comment " textarea name="comment" rows="2" maxlength="2000" {} }
                button type="submit" { "Save verdict" }
                " as " strong { (analyst) }
                p.muted { "Saved verdicts label this flow in the next evaluations of its capture." }
            }
        }
    };
    layout("Flow", Section::Run(run_id, "anomalies"), None, body)
}

/// The explained features first, then the rest in SILVER order.
fn ordered_features<'a>(f: &Flow, values: &'a [(String, f64)]) -> Vec<(String, &'a f64)> {
    let explained: Vec<&str> = f
        .explanation
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| c.feature.as_str()))
        .collect();
    let mut out: Vec<(String, &f64)> = values
        .iter()
        .filter(|(n, _)| explained.contains(&n.as_str()))
        .map(|(n, v)| (n.clone(), v))
        .collect();
    out.extend(
        values
            .iter()
            .filter(|(n, _)| !explained.contains(&n.as_str()))
            .map(|(n, v)| (n.clone(), v)),
    );
    out
}

// ---------------------------------------------------------------- scores

pub fn scores(run_id: Uuid, loaded: &LoadedRun) -> Markup {
    let index = &loaded.index;
    let body = html! {
        h1 { "Score distributions" }
        p.muted { "How each detector scored the run's flows (bar height: square root of the count). The red line is the operating threshold: flows to its right are flagged." }
        @for (k, d) in index.detectors.iter().enumerate() {
            @let entry = loaded.report.detectors[k].labelled.as_ref();
            section.detector {
                h2 { (words::detector(&d.name)) }
                p { (words::number(d.flagged as f64)) " flagged above " (words::number(d.threshold))
                    @if let Some(auc) = entry.and_then(|m| m.roc_auc) { " · ROC-AUC " (words::number(auc)) }
                    @if let Some(ap) = entry.and_then(|m| m.average_precision) { " · average precision " (words::number(ap)) } }
                (charts::histogram(&format!("{} scores", words::detector(&d.name)), &d.histogram.edges, &d.histogram.counts, d.threshold, None))
                @if !index.labels.is_empty() {
                    h3 { "By label" }
                    div.small-multiples {
                        @for l in &index.labels {
                            figure {
                                figcaption { strong.label { (l.label) } " · " (words::number(l.flows as f64)) " flows"
                                    @let t = entry.and_then(|m| m.by_attack_type.get(&l.label));
                                    @if let Some(t) = t { " · " (words::number(t.recall * 100.0)) "% flagged" }
                                    @if let Some(a) = t.and_then(|t| t.roc_auc) { " · ROC-AUC " (words::number(a)) } }
                                (charts::histogram(&format!("{} scores of {}", words::detector(&d.name), l.label), &d.histogram.edges, &d.histogram.counts, d.threshold, Some(&l.counts[k])))
                            }
                        }
                    }
                    p.muted { "Blue: all flows; orange: flows with this label." }
                }
            }
        }
        @if !loaded.report.agreement.is_empty() {
            h2 { "Agreement between detectors" }
            p.muted { "Spearman rank correlation of their scores: 1 means they rank flows alike." }
            table { thead { tr { th { "detector" } th { "detector" } th { "rank correlation" } } }
                tbody { @for a in &loaded.report.agreement { tr { td { (words::detector(&a.a)) } td { (words::detector(&a.b)) } td.num { (figure(a.spearman)) } } } } }
        }
    };
    layout("Scores", Section::Run(run_id, "scores"), None, body)
}

// ---------------------------------------------------------------- hosts

pub fn hosts(run_id: Uuid, loaded: &LoadedRun, selected: Option<&str>) -> Markup {
    let index = &loaded.index;
    let outlying: Vec<&HostVerdict> = loaded
        .report
        .detectors
        .iter()
        .flat_map(|d| &d.hosts)
        .flat_map(|p| &p.outlying)
        .collect();
    let span = index.timeline.map(|t| {
        (
            time_ns(Some(t.start_ns)),
            time_ns(Some(t.start_ns + t.bucket_ns * t.buckets as i64)),
            t.bucket_ns as f64 / 1e9,
        )
    });
    let anomalies_of = |h: &str| format!("/runs/{run_id}/anomalies?host={}", urlencoding(h));
    let body = html! {
        h1 { "Hosts" }
        h2 { "Singled out by the host-group detector" }
        @if outlying.is_empty() {
            p.muted { "The host-group detector did not run on these flows, or found no host unlike its peers." }
        } @else {
            p.muted { "Hosts whose traffic series (flows, bytes, distinct peers per minute) stood apart from the other hosts'." }
            table.outlying {
                thead { tr { th { "host" } th { "score" } th { "outlying minutes" } th { "flagged by" } } }
                tbody { @for h in &outlying {
                    tr { td { a href=(anomalies_of(&h.host)) { span.addr { (h.host) } } } td.num { (figure(Some(h.score))) }
                         td.num { (words::number(h.outlying_buckets as f64)) }
                         td { @for m in &h.flagged_by { code { (m) } " " } } }
                } }
            }
        }
        h2 { "Activity" }
        @if index.hosts.is_empty() {
            p.muted { "These flows carry no addresses or times." }
        } @else {
            @if let Some((from, to, bucket)) = &span {
                p.muted { (from) " → " (to) " UTC, one bar per " (words::number(*bucket)) " s; grey: flows, red: flagged flows. "
                    "The " (index.hosts.len()) " of " (words::number(index.host_count as f64)) " hosts with the most flagged flows, then the busiest." }
            }
            @if let Some(h) = selected.and_then(|s| index.hosts.iter().find(|h| h.host == s)) {
                section.selected {
                    h3 { span.addr { (h.host) } }
                    (charts::timeline(&h.host, &h.flows_per_bucket, &h.flagged_per_bucket, true))
                    p { (words::number(h.flows as f64)) " flows, " (words::number(h.flagged as f64)) " flagged · "
                        a href=(anomalies_of(&h.host)) { "its anomalies" } }
                }
            }
            table.hosts {
                thead { tr { th { "host" } th { "flows" } th { "flagged" } th { "timeline" } } }
                tbody { @for h in &index.hosts {
                    tr { td { a href={ "?host=" (urlencoding(&h.host)) } { span.addr { (h.host) } } }
                         td.num { (words::number(h.flows as f64)) } td.num { (words::number(h.flagged as f64)) }
                         td { (charts::timeline(&h.host, &h.flows_per_bucket, &h.flagged_per_bucket, false)) } }
                } }
            }
        }
    };
    layout("Hosts", Section::Run(run_id, "hosts"), None, body)
}

// ---------------------------------------------------------------- models

pub fn models(
    models: &[RegisteredModel],
    history: &[ChampionChange],
    evaluations: &[EvaluationPoint],
    latest_drift: Option<(Uuid, &[Drift])>,
) -> Markup {
    let champions: Vec<&ChampionChange> = {
        let mut seen = std::collections::HashSet::new();
        history
            .iter()
            .filter(|c| seen.insert(c.feature_set.clone()))
            .collect()
    };
    let is_champion = |m: &RegisteredModel| {
        champions
            .iter()
            .any(|c| c.algorithm == m.algorithm && c.version == m.version)
    };
    let labels: Vec<String> = evaluations
        .iter()
        .map(|e| e.finished_at.format("%m-%d %H:%M").to_string())
        .collect();
    let figures: Vec<Option<RunFigures>> = evaluations
        .iter()
        .map(|e| figures_of(Some(&e.summary)))
        .collect();
    let names: Vec<String> = {
        let mut names: Vec<String> = Vec::new();
        for d in figures.iter().flatten().flat_map(|f| &f.detectors) {
            if !d.name.starts_with("champion_") && !names.contains(&d.name) {
                names.push(d.name.clone());
            }
        }
        names
    };
    let series = |pick: fn(&DetectorFigures) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
        names
            .iter()
            .map(|n| {
                let values = figures
                    .iter()
                    .map(|f| {
                        f.as_ref()?
                            .detectors
                            .iter()
                            .find(|d| d.name == *n)
                            .and_then(pick)
                    })
                    .collect();
                (n.clone(), values)
            })
            .collect()
    };
    let body = html! {
        h1 { "Models" }
        h2 { "Champions" }
        p.muted { "The champion is the model that goes to production, one per kind of flow (feature set). A challenger replaces it only when it does strictly better on the same labelled flows, or by hand (" code { "nadir promote" } ", " code { "nadir rollback" } ")." }
        @if champions.is_empty() { p { "No champion yet." } }
        table { thead { tr { th { "feature set" } th { "champion" } th { "version" } th { "since" } th { "how" } th { "by" } } }
            tbody { @for c in &champions { tr.champion { td { code { (c.feature_set) } } td { (words::detector(&c.algorithm)) } td { code { (c.version) } } td { (time(c.at)) } td { (c.action) } td { (c.actor) } } } } }

        h2 { "Metrics over time" }
        @if evaluations.is_empty() { p.muted { "No evaluations yet." } } @else {
            h3 { "Average precision" }
            (charts::lines("average precision per evaluation", &labels, &series(|d| d.average_precision)))
            h3 { "ROC-AUC" }
            (charts::lines("ROC-AUC per evaluation", &labels, &series(|d| d.roc_auc)))
            p.muted { "Missing points: evaluations without labelled flows." }
        }

        h2 { "Drift per feature" }
        @if let Some((run_id, drift)) = latest_drift {
            p.muted { "Population stability index of each feature between the training flows and the flows of run "
                a href={ "/runs/" (run_id) } { code { (short(&run_id.to_string(), 8)) } }
                ": above 0.1 a moderate shift, above 0.25 a large one." }
            @let items: Vec<(String, f64)> = drift.iter().take(25)
                .filter(|d| d.psi.is_finite())
                .map(|d| (words::feature_name(&d.feature), d.psi)).collect();
            (charts::bars("drift (PSI) per feature", &items, &[0.1, 0.25]))
        } @else { p.muted { "No evaluation with a training profile yet." } }

        h2 { "Champion history" }
        table { thead { tr { th { "at" } th { "feature set" } th { "action" } th { "model" } th { "replaced" } th { "by" } th { "why" } } }
            tbody { @for c in history { tr { td { (time(c.at)) } td { code { (c.feature_set) } } td { (c.action) }
                td { (words::detector(&c.algorithm)) " " code { (c.version) } }
                td { @if let Some((a, v)) = &c.previous { (words::detector(a)) " " code { (v) } } @else { "–" } }
                td { (c.actor) } td { (c.reason) } } } } }

        h2 { "Registry" }
        table.registry { thead { tr { th { "trained" } th { "model" } th { "version" } th { "feature set" } th { "rows" } th { "fit" } th { "model file" } } }
            tbody { @for m in models { tr class=(if is_champion(m) { "champion" } else { "" }) {
                td { (time(m.trained_at)) } td { (words::detector(&m.algorithm)) @if is_champion(m) { " ★" } }
                td { code { (m.version) } } td { code { (m.feature_set) } }
                td.num { (m.metrics["rows"].as_f64().map(words::number).unwrap_or_else(|| "–".into())) }
                td.num { (m.metrics["fit_seconds"].as_f64().map(|s| format!("{s:.2} s")).unwrap_or_else(|| "–".into())) }
                td { code title=(m.model.sha256) { (m.model.uri()) } " " span.muted { (words::bytes(m.model.size as f64)) } }
            } } } }
    };
    layout("Models", Section::Models, None, body)
}

/// A page that says what went wrong, for a status other than 200.
pub fn problem(title: &str, message: &str) -> Markup {
    layout(
        title,
        Section::Runs,
        None,
        html! { h1 { (title) } p.error { (message) } p { a href="/" { "All runs" } } },
    )
}

/// The stylesheet and icon, bundled into the binary.
pub const STYLESHEET: &str = include_str!("../static/app.css");
pub const ICON: &str = include_str!("../static/favicon.svg");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_thresholds_rest_on() {
        assert!(thresholds(None).contains("the documented defaults"));
        let baseline = nadir_contract::params::BaselineSummary {
            partitions: vec!["v1".into()],
            window_s: 204.5,
            flows: 700,
            hosts: 20,
            domains: 4,
        };
        assert_eq!(
            thresholds(Some(&baseline)),
            "Behavioural thresholds: each host is held to what it did in 1 earlier partition(s) of the \
             training window (20 hosts, 700 flows over 3m 24s), never below the defaults."
        );
    }

    #[test]
    fn a_failed_stage_in_plain_words() {
        assert_eq!(
            plain_error(
                Some("transform"),
                "gave up after 3 deliveries: s3: connection refused"
            ),
            "The transform stage failed: s3: connection refused (tried 3 deliveries)"
        );
        assert_eq!(
            plain_error(None, "raw/x.bin: not a capture or flow file"),
            "The run failed: raw/x.bin: not a capture or flow file"
        );
    }
}
