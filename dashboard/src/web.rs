//! Routes and what every response goes through: access control (named
//! credentials, by basic auth or bearer token; the name is the analyst), a
//! refusal of form posts that do not come from the dashboard's own pages, security headers (a Content-Security-Policy that allows no
//! script), and request metrics. Handlers fetch, call [`crate::pages`],
//! and return.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, MatchedPath, Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use deadpool_postgres::Pool;
use nadir_config::{Credential, DashboardAccess, DashboardConfig};
use nadir_store::ObjectStore;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::artifacts::{Artifacts, LoadedRun};
use crate::index::{AnomalyQuery, Filter, MAX_EXPORT, Sort};
use crate::pages;
use crate::queue::QueueFilter;
use nadir_contract::findings::FindingKind;
use nadir_contract::queue;
use nadir_contract::suppression::Matcher;
use nadir_contract::triage::TriageState;
use nadir_db::{feedback, runs, suppression, triage};

/// The dashboard's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    seconds: HistogramVec,
    pub indexed_runs: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "nadir_dashboard_requests_total",
                "Dashboard requests, by route and status",
            ),
            &["route", "status"],
        )
        .expect("metric definition");
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "nadir_dashboard_request_seconds",
                "Time to answer a dashboard request, by route",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0]),
            &["route"],
        )
        .expect("metric definition");
        let indexed_runs = IntGauge::new(
            "nadir_dashboard_indexed_runs",
            "Runs whose scored flows the dashboard holds in memory",
        )
        .expect("metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("register");
        registry
            .register(Box::new(seconds.clone()))
            .expect("register");
        registry
            .register(Box::new(indexed_runs.clone()))
            .expect("register");
        Metrics {
            registry,
            requests,
            seconds,
            indexed_runs,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct State {
    pub config: DashboardConfig,
    pub db: Pool,
    pub store: ObjectStore,
    pub artifacts: Artifacts,
    pub metrics: Metrics,
}

type Shared = AxumState<Arc<State>>;

pub fn router(state: Arc<State>) -> Router {
    let pages = Router::new()
        .route("/", get(newest_findings))
        .route("/runs", get(runs))
        .route("/runs/{run}", get(run))
        .route("/runs/{run}/findings", get(findings))
        .route("/runs/{run}/findings/{finding}", get(finding))
        .route("/runs/{run}/findings/{finding}/triage", post(triage))
        .route("/suppressions", get(suppressions).post(add_suppression))
        .route("/suppressions/{rule}/remove", post(remove_suppression))
        .route("/runs/{run}/anomalies", get(anomalies))
        .route("/runs/{run}/anomalies.csv", get(export_csv))
        .route("/runs/{run}/anomalies.json", get(export_json))
        .route("/runs/{run}/flows/{raw_version}/{flow_id}", get(flow))
        .route(
            "/runs/{run}/flows/{raw_version}/{flow_id}/feedback",
            post(feedback),
        )
        .route("/runs/{run}/scores", get(scores))
        .route("/runs/{run}/hosts", get(hosts))
        .route("/models", get(models))
        .route("/static/app.css", get(stylesheet))
        .route("/static/favicon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .route_layer(middleware::from_fn_with_state(state.clone(), access));
    Router::new()
        .merge(pages)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// An error page with its status.
pub struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = match self.0 {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::FORBIDDEN => "Forbidden",
            _ => "Something went wrong",
        };
        (self.0, Html(pages::problem(title, &self.1).into_string())).into_response()
    }
}

impl From<nadir_db::DbError> for Problem {
    fn from(e: nadir_db::DbError) -> Self {
        tracing::error!(error = %e.detail(), "database request failed");
        Problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The database could not answer: {}", e.detail()),
        )
    }
}

fn not_found(what: String) -> Problem {
    Problem(StatusCode::NOT_FOUND, what)
}

fn html(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

// ------------------------------------------------------------ middleware

/// Who the request acts as: the name of the credential it presented, or
/// [`nadir_config::LOCAL_ANALYST`] when the dashboard asks nobody. The
/// analyst of every verdict, never taken from the form.
#[derive(Clone)]
struct Analyst(String);

async fn access(AxumState(state): Shared, mut request: Request, next: Next) -> Response {
    let credentials = match &state.config.access {
        DashboardAccess::Open => {
            request
                .extensions_mut()
                .insert(Analyst(nadir_config::LOCAL_ANALYST.into()));
            return next.run(request).await;
        }
        DashboardAccess::Credentials(credentials) => credentials,
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(name) = authenticated(credentials, given) {
        request.extensions_mut().insert(Analyst(name.to_string()));
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"nadir\", charset=\"UTF-8\""),
    );
    response
}

/// The name of the credential an `Authorization` header presents: basic
/// auth (name and secret) or a bearer token (the secret alone). Every
/// credential is compared, by SHA-256 digests in constant time, so the time
/// taken says neither which one nor how long a secret is.
fn authenticated<'a>(credentials: &'a [Credential], authorization: &str) -> Option<&'a str> {
    let digest = |text: &str| -> [u8; 32] { Sha256::digest(text.as_bytes()).into() };
    let (name, secret) = if let Some(token) = authorization.strip_prefix("Bearer ") {
        (None, digest(token.trim()))
    } else if let Some(basic) = authorization.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())?;
        let (name, secret) = decoded.split_once(':')?;
        (Some(digest(name)), digest(secret))
    } else {
        return None;
    };
    let mut found = None;
    for credential in credentials {
        let mut matches = digest(&credential.secret)[..].ct_eq(&secret[..]);
        if let Some(name) = &name {
            matches &= digest(&credential.name)[..].ct_eq(&name[..]);
        }
        if bool::from(matches) {
            found = Some(credential.name.as_str());
        }
    }
    found
}

async fn observe(AxumState(state): Shared, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    m.seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn security_headers(request: Request, next: Next) -> Response {
    // A form posted from another site (the browser would attach basic-auth
    // credentials to it), or from nowhere a browser would name, is refused.
    if request.method() == axum::http::Method::POST && !same_origin(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "a form post must come from the dashboard's own pages (Sec-Fetch-Site or Origin)\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Whether a POST comes from the dashboard's own pages: `Sec-Fetch-Site:
/// same-origin` (or `none`, typed by the user), else an `Origin` naming
/// this host. A request with neither is refused: every browser that can
/// show the dashboard sends one, and a script has no use for the forms.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) == Some(host),
        _ => false,
    }
}

// ------------------------------------------------------------ endpoints

async fn readyz(AxumState(state): Shared) -> impl IntoResponse {
    let mut failures = Vec::new();
    match state.db.get().await {
        Ok(client) => {
            if let Err(e) = client
                .simple_query("SELECT 1 FROM pipeline_runs LIMIT 1")
                .await
            {
                failures.push(format!("postgresql: {e}"));
            }
        }
        Err(e) => failures.push(format!("postgresql: {e}")),
    }
    if let Err(e) = state.store.check_bucket(&state.config.buckets.eval).await {
        failures.push(format!("s3: {e}"));
    }
    if failures.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failures.join("; ")),
        )
    }
}

async fn metrics(AxumState(state): Shared) -> impl IntoResponse {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&state.metrics.registry.gather(), &mut out)
        .expect("text encoding of metrics");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::STYLESHEET,
    )
}

async fn icon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        pages::ICON,
    )
}

async fn runs(AxumState(state): Shared) -> Result<Response, Problem> {
    let runs = runs::runs(&state.db, 200).await?;
    Ok(html(pages::runs(&runs)))
}

fn parse_run(run: &str) -> Result<Uuid, Problem> {
    run.parse()
        .map_err(|_| Problem(StatusCode::BAD_REQUEST, format!("{run:?} is not a run id")))
}

async fn find_run(state: &State, run: &str) -> Result<runs::RunSummary, Problem> {
    let run_id = parse_run(run)?;
    runs::run(&state.db, run_id)
        .await?
        .ok_or_else(|| not_found(format!("There is no run {run_id}.")))
}

/// The run's loaded artifacts, or why there are none.
async fn loaded(state: &State, run: &runs::RunSummary) -> Result<Arc<LoadedRun>, String> {
    let report = run
        .report
        .as_ref()
        .ok_or_else(|| match run.status.as_str() {
            "running" => {
                "The run is still in progress: its evaluation is not written yet.".to_string()
            }
            "failed" => "The run failed before its evaluation was written.".to_string(),
            _ => "The run has no evaluation report.".to_string(),
        })?;
    state
        .artifacts
        .run(run.run_id, report)
        .await
        .map_err(|e| format!("The run's evaluation could not be read: {e}"))
}

async fn loaded_or_problem(
    state: &State,
    run: &runs::RunSummary,
) -> Result<Arc<LoadedRun>, Problem> {
    loaded(state, run)
        .await
        .map_err(|e| Problem(StatusCode::NOT_FOUND, e))
}

async fn run(AxumState(state): Shared, Path(run): Path<String>) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let rows = nadir_db::runs::stage_rows(&state.db, run.run_id).await?;
    let loaded = loaded(&state, &run).await;
    Ok(html(pages::run_detail(
        &run,
        &rows,
        loaded.as_deref().ok(),
        loaded.as_ref().err().map(String::as_str),
    )))
}

/// The anomaly list's query string, as typed (every field optional).
#[derive(Debug, Default, Deserialize)]
pub struct AnomalyParams {
    host: Option<String>,
    port: Option<String>,
    protocol: Option<String>,
    from: Option<String>,
    to: Option<String>,
    min_score: Option<String>,
    detector: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

/// Parses a datetime-local value (UTC), with or without seconds.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d",
    ]
    .iter()
    .find_map(|f| {
        chrono::NaiveDateTime::parse_from_str(s, f)
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(s, f)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
    })
    .and_then(|t| t.and_utc().timestamp_nanos_opt())
}

impl AnomalyParams {
    /// The query, and what could not be read (named, and left out).
    pub fn query(&self, detectors: Vec<String>) -> (AnomalyQuery, Vec<String>) {
        let mut problems = Vec::new();
        let text = |v: &Option<String>| {
            v.as_ref()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let port = text(&self.port).and_then(|p| match p.parse::<u32>() {
            Ok(p) if p <= 65_535 => Some(p),
            _ => {
                problems.push(format!(
                    "port {p:?} is not a port number (0-65535); ignored"
                ));
                None
            }
        });
        let mut time = |name: &str, v: &Option<String>| {
            text(v).and_then(|t| match parse_time(&t) {
                Some(ns) => Some(ns),
                None => {
                    problems.push(format!(
                        "{name} {t:?} is not a time like 2026-01-01T00:00:00; ignored"
                    ));
                    None
                }
            })
        };
        let (from_ns, to_ns) = (time("from", &self.from), time("to", &self.to));
        let min_score = text(&self.min_score).and_then(|s| match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                problems.push(format!("score {s:?} is not a number; ignored"));
                None
            }
        });
        let detector = text(&self.detector);
        if let Some(d) = &detector
            && !detectors.contains(d)
        {
            problems.push(format!("no detector {d:?} scored this run; ignored"));
        }
        let sort = text(&self.sort)
            .map(|s| {
                Sort::parse(&s)
                    .filter(|sort| match sort {
                        Sort::Detector(d) => detectors.contains(d),
                        _ => true,
                    })
                    .unwrap_or_else(|| {
                        problems.push(format!("cannot sort by {s:?}; sorted by score"));
                        Sort::Score
                    })
            })
            .unwrap_or_default();
        let number = |v: &Option<String>, default: usize| {
            text(v)
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let query = AnomalyQuery {
            filter: Filter {
                host: text(&self.host),
                port,
                protocol: text(&self.protocol),
                from_ns,
                to_ns,
                min_score,
                detector: detector.filter(|d| detectors.contains(d)),
            },
            sort,
            descending: text(&self.order).as_deref() != Some("asc"),
            page: number(&self.page, 1),
            per_page: number(&self.per_page, 50),
        };
        (query, problems)
    }
}

fn detector_names(loaded: &LoadedRun) -> Vec<String> {
    loaded
        .index
        .detectors
        .iter()
        .map(|d| d.name.clone())
        .collect()
}

async fn anomalies(
    AxumState(state): Shared,
    Path(run): Path<String>,
    Query(params): Query<AnomalyParams>,
) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let loaded = loaded_or_problem(&state, &run).await?;
    let (query, problems) = params.query(detector_names(&loaded));
    let page = loaded.index.anomalies(&query);
    let shown: Vec<(String, u64)> = page
        .flows
        .iter()
        .map(|f| (f.raw_version.clone(), f.flow_id))
        .collect();
    let verdicts = feedback::verdicts(&state.db, &shown).await?;
    Ok(html(pages::anomalies(
        run.run_id,
        &loaded.index,
        &query,
        &page,
        &verdicts,
        &problems,
    )))
}

/// Every flow that passes the filter (at most [`MAX_EXPORT`]).
async fn exported(
    state: &State,
    run: &str,
    params: AnomalyParams,
) -> Result<(Uuid, Arc<LoadedRun>, AnomalyQuery), Problem> {
    let run = find_run(state, run).await?;
    let loaded = loaded_or_problem(state, &run).await?;
    let (mut query, _) = params.query(detector_names(&loaded));
    query.page = 1;
    query.per_page = MAX_EXPORT;
    Ok((run.run_id, loaded, query))
}

fn attachment(run_id: Uuid, ext: &str, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "attachment; filename=\"nadir-anomalies-{run_id}.{ext}\""
        ))
        .expect("a uuid makes a valid header"),
    );
    response
}

/// A CSV cell a spreadsheet will not run as a formula.
fn cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

async fn export_csv(
    AxumState(state): Shared,
    Path(run): Path<String>,
    Query(params): Query<AnomalyParams>,
) -> Result<Response, Problem> {
    let (run_id, loaded, query) = exported(&state, &run, params).await?;
    let index = &loaded.index;
    let page = index.anomalies(&query);
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "raw_version",
        "flow_id",
        "first_seen",
        "last_seen",
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "protocol",
        "bytes",
        "packets",
        "names",
        "label",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for d in &index.detectors {
        header.push(format!("score_{}", d.name));
        header.push(format!("flagged_{}", d.name));
    }
    header.push("why".into());
    let csv_error = |e: csv::Error| Problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    out.write_record(&header).map_err(csv_error)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for f in &page.flows {
        let mut row = vec![
            cell(&f.raw_version),
            f.flow_id.to_string(),
            opt(f.first_seen_ns.map(|t| pages::time_ns(Some(t)))),
            opt(f.last_seen_ns.map(|t| pages::time_ns(Some(t)))),
            cell(&opt(f.src_ip.clone())),
            opt(f.src_port.map(|p| p.to_string())),
            cell(&opt(f.dst_ip.clone())),
            opt(f.dst_port.map(|p| p.to_string())),
            f.protocol_name(),
            opt(f.bytes.map(|b| b.to_string())),
            opt(f.packets.map(|p| p.to_string())),
            cell(&f.names.join(" ")),
            cell(&opt(f.label.clone())),
        ];
        for (s, flagged) in f.scores.iter().zip(&f.flagged_by) {
            row.push(s.to_string());
            row.push(flagged.to_string());
        }
        let why: Vec<String> = f
            .explanation
            .first()
            .map(|(_, c)| {
                c.iter()
                    .map(|c| crate::words::contribution(&c.feature, c.value, c.typical))
                    .collect()
            })
            .unwrap_or_default();
        row.push(cell(&why.join("; ")));
        out.write_record(&row).map_err(csv_error)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| Problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(attachment(run_id, "csv", "text/csv; charset=utf-8", body))
}

async fn export_json(
    AxumState(state): Shared,
    Path(run): Path<String>,
    Query(params): Query<AnomalyParams>,
) -> Result<Response, Problem> {
    let (run_id, loaded, query) = exported(&state, &run, params).await?;
    let index = &loaded.index;
    let page = index.anomalies(&query);
    let body = serde_json::json!({
        "run_id": run_id,
        "detectors": index.detectors.iter().map(|d| serde_json::json!({
            "name": d.name, "algorithm": d.algorithm, "version": d.version, "threshold": d.threshold,
        })).collect::<Vec<_>>(),
        "ranked_by": index.detectors[index.primary].name,
        "total": page.total,
        "flows": page.flows,
    });
    let bytes = serde_json::to_vec_pretty(&body).expect("flows serialize");
    Ok(attachment(run_id, "json", "application/json", bytes))
}

async fn flow(
    AxumState(state): Shared,
    Path((run, raw_version, flow_id)): Path<(String, String, u64)>,
    axum::Extension(analyst): axum::Extension<Analyst>,
) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let loaded = loaded_or_problem(&state, &run).await?;
    let f = loaded.index.flow(&raw_version, flow_id).ok_or_else(|| {
        not_found(format!(
            "Flow {flow_id} of {raw_version:?} is not among the run's flagged flows."
        ))
    })?;
    let features = match runs::silver_partition(&state.db, run.run_id, &raw_version).await? {
        Some(artifact) => match serde_json::from_value(artifact) {
            Ok(artifact) => state
                .artifacts
                .flow_features(run.run_id, &loaded, &raw_version, artifact)
                .await
                .map_err(|e| format!("The flow's features could not be read: {e}")),
            Err(e) => Err(format!("The partition's audit row names no artifact: {e}")),
        },
        None => Err("The run has no SILVER partition of this capture.".to_string()),
    };
    let verdicts = feedback::verdicts(&state.db, &[(raw_version.clone(), flow_id)]).await?;
    Ok(html(pages::flow(
        run.run_id,
        &loaded.index,
        f,
        features.as_deref().ok(),
        features.as_ref().err().map(String::as_str),
        &verdicts,
        &analyst.0,
    )))
}

#[derive(Debug, Deserialize)]
struct FeedbackForm {
    verdict: String,
    #[serde(default)]
    comment: String,
}

async fn feedback(
    AxumState(state): Shared,
    Path((run, raw_version, flow_id)): Path<(String, String, u64)>,
    axum::Extension(Analyst(analyst)): axum::Extension<Analyst>,
    Form(form): Form<FeedbackForm>,
) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let loaded = loaded_or_problem(&state, &run).await?;
    if loaded.index.flow(&raw_version, flow_id).is_none() {
        return Err(not_found(format!(
            "Flow {flow_id} of {raw_version:?} is not among the run's flagged flows."
        )));
    }
    if !matches!(form.verdict.as_str(), "true_positive" | "false_positive") {
        return Err(Problem(
            StatusCode::BAD_REQUEST,
            format!(
                "verdict {:?} is neither true_positive nor false_positive",
                form.verdict
            ),
        ));
    }
    if form.comment.chars().count() > 2000 {
        return Err(Problem(
            StatusCode::BAD_REQUEST,
            "a verdict's comment is at most 2000 characters".into(),
        ));
    }
    feedback::add(
        &state.db,
        run.run_id,
        &raw_version,
        flow_id,
        &form.verdict,
        form.comment.trim(),
        &analyst,
    )
    .await?;
    tracing::info!(run_id = %run.run_id, raw_version, flow_id, verdict = form.verdict, "feedback recorded");
    Ok(Redirect::to(&format!(
        "/runs/{}/flows/{}/{flow_id}",
        run.run_id,
        pages::urlencoding(&raw_version)
    ))
    .into_response())
}

async fn scores(AxumState(state): Shared, Path(run): Path<String>) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let loaded = loaded_or_problem(&state, &run).await?;
    Ok(html(pages::scores(run.run_id, &loaded)))
}

async fn hosts(
    AxumState(state): Shared,
    Path(run): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let loaded = loaded_or_problem(&state, &run).await?;
    Ok(html(pages::hosts(
        run.run_id,
        &loaded,
        params.get("host").map(String::as_str),
    )))
}

// ------------------------------------------------------------ findings

/// The findings queue of the newest evaluated run: where the dashboard
/// opens. With no evaluated run yet, the runs.
async fn newest_findings(
    state: Shared,
    params: Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let newest = runs::recent_reports(&state.db, 1).await?.into_iter().next();
    match newest {
        Some((run_id, _)) => findings(state, Path(run_id.to_string()), params).await,
        None => runs(state).await,
    }
}

/// A run with what its queue is made of: its findings, the rules in
/// force now and its triage states.
struct RunQueue {
    run: runs::RunSummary,
    loaded: Arc<LoadedRun>,
    rules: Vec<nadir_contract::suppression::Rule>,
    states: HashMap<String, TriageState>,
    now: chrono::DateTime<chrono::Utc>,
}

impl RunQueue {
    async fn of(state: &State, run: &str) -> Result<RunQueue, Problem> {
        let run = find_run(state, run).await?;
        let loaded = loaded_or_problem(state, &run).await?;
        let now = chrono::Utc::now();
        let rules = suppression::in_force(&state.db, now).await?;
        let states = triage::states(&state.db, run.run_id).await?;
        Ok(RunQueue {
            run,
            loaded,
            rules,
            states,
            now,
        })
    }

    fn queue(&self) -> Vec<queue::Queued<'_>> {
        queue::queue(&self.loaded.findings, &self.rules, &self.states, self.now)
    }
}

async fn findings(
    AxumState(state): Shared,
    Path(run): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let q = RunQueue::of(&state, &run).await?;
    let (filter, problems) = QueueFilter::parse(&params);
    Ok(html(crate::queue::queue(
        &q.run,
        &q.queue(),
        &filter,
        &problems,
    )))
}

async fn finding(
    AxumState(state): Shared,
    Path((run, finding_id)): Path<(String, String)>,
    axum::Extension(analyst): axum::Extension<Analyst>,
) -> Result<Response, Problem> {
    let rq = RunQueue::of(&state, &run).await?;
    let run_id = rq.run.run_id;
    let queue = rq.queue();
    let q = queue
        .iter()
        .find(|q| q.finding.finding_id == finding_id)
        .ok_or_else(|| not_found(format!("Run {run_id} has no finding {finding_id:?}.")))?;
    let history = triage::history(&state.db, run_id, &finding_id).await?;
    Ok(html(crate::queue::finding(
        run_id,
        &rq.loaded.index,
        q,
        &history,
        &analyst.0,
    )))
}

#[derive(Debug, Deserialize)]
struct TriageForm {
    state: String,
    #[serde(default)]
    note: String,
}

async fn triage(
    AxumState(state): Shared,
    Path((run, finding_id)): Path<(String, String)>,
    axum::Extension(Analyst(analyst)): axum::Extension<Analyst>,
    Form(form): Form<TriageForm>,
) -> Result<Response, Problem> {
    let run = find_run(&state, &run).await?;
    let loaded = loaded_or_problem(&state, &run).await?;
    let finding = loaded
        .findings
        .iter()
        .find(|f| f.finding_id == finding_id)
        .ok_or_else(|| not_found(format!("Run {} has no finding {finding_id:?}.", run.run_id)))?;
    let to: TriageState = form
        .state
        .parse()
        .map_err(|e: String| Problem(StatusCode::BAD_REQUEST, e))?;
    if form.note.chars().count() > 4000 {
        return Err(Problem(
            StatusCode::BAD_REQUEST,
            "a triage note is at most 4000 characters".into(),
        ));
    }
    let evidence: Vec<(String, u64)> = loaded
        .index
        .evidence_of(finding)
        .into_iter()
        .map(|f| (f.raw_version.clone(), f.flow_id))
        .collect();
    let change = triage::set(
        &state.db,
        run.run_id,
        &finding_id,
        to,
        form.note.trim(),
        &analyst,
        &evidence,
    )
    .await?;
    tracing::info!(run_id = %run.run_id, finding_id, state = %to, labelled = change.labelled, "finding triaged");
    Ok(Redirect::to(&format!("/runs/{}/findings/{finding_id}", run.run_id)).into_response())
}

/// The runs whose findings a rule's "hides" count covers.
const HIDDEN_OVER_RUNS: i64 = 20;

async fn suppressions(AxumState(state): Shared) -> Result<Response, Problem> {
    let now = chrono::Utc::now();
    let rules = suppression::in_force(&state.db, now).await?;
    let history = suppression::history(&state.db).await?;
    let mut hidden = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    let recent = runs::recent_reports(&state.db, HIDDEN_OVER_RUNS).await?;
    for (run_id, report) in &recent {
        match state.artifacts.findings(*run_id, report).await {
            Ok(findings) => {
                let q = queue::queue(&findings, &rules, &HashMap::new(), now);
                for (rule, n) in queue::hidden_per_rule(&q) {
                    *hidden.entry(rule).or_insert(0) += n;
                }
            }
            Err(e) => problems.push(format!(
                "run {run_id} is not counted: its findings could not be read ({e})"
            )),
        }
    }
    Ok(html(crate::queue::suppressions(
        &rules,
        &hidden,
        recent.len(),
        &history,
        &problems,
    )))
}

#[derive(Debug, Deserialize)]
struct SuppressionForm {
    matcher: String,
    pattern: String,
    #[serde(default)]
    kind: String,
    reason: String,
    #[serde(default)]
    expires: String,
    /// The page to go back to (a finding's); only a local path is followed.
    #[serde(default)]
    back: String,
}

async fn add_suppression(
    AxumState(state): Shared,
    axum::Extension(Analyst(analyst)): axum::Extension<Analyst>,
    Form(form): Form<SuppressionForm>,
) -> Result<Response, Problem> {
    let bad = |m: String| Problem(StatusCode::BAD_REQUEST, m);
    let matcher: Matcher = form.matcher.parse().map_err(bad)?;
    let kind = match form.kind.trim() {
        "" => None,
        k => Some(FindingKind::parse(k).ok_or_else(|| bad(format!("no finding kind {k:?}")))?),
    };
    let expires_at = match form.expires.trim() {
        "" => None,
        d => {
            let day = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| bad(format!("expires {d:?} is not a date like 2026-12-31")))?;
            Some(
                day.and_hms_opt(23, 59, 59)
                    .expect("a time of day")
                    .and_utc(),
            )
        }
    };
    let rule = suppression::add(
        &state.db,
        &suppression::NewRule {
            matcher,
            pattern: form.pattern,
            kind,
            owner: analyst.clone(),
            reason: form.reason,
            expires_at,
        },
    )
    .await
    .map_err(|e| match e {
        nadir_db::DbError::Invalid(m) => bad(m),
        e => e.into(),
    })?;
    tracing::info!(rule = rule.id, matches = %rule.describe(), analyst, "suppression rule added");
    let back = form.back.trim();
    let local = back.starts_with('/') && !back.starts_with("//") && !back.contains('\\');
    Ok(Redirect::to(if local { back } else { "/suppressions" }).into_response())
}

async fn remove_suppression(
    AxumState(state): Shared,
    Path(rule): Path<i64>,
    axum::Extension(Analyst(analyst)): axum::Extension<Analyst>,
) -> Result<Response, Problem> {
    suppression::remove(&state.db, rule, &analyst)
        .await?
        .ok_or_else(|| not_found(format!("No suppression rule {rule} is in force.")))?;
    tracing::info!(rule, analyst, "suppression rule removed");
    Ok(Redirect::to("/suppressions").into_response())
}

async fn models(AxumState(state): Shared) -> Result<Response, Problem> {
    let models = nadir_db::registry::models(&state.db, 500).await?;
    let history = nadir_db::registry::history(&state.db, 500).await?;
    let evaluations = runs::evaluations(&state.db, 100).await?;
    // Drift of the newest run whose report the dashboard can read.
    let mut drift = None;
    if let Some((run_id, report)) = runs::recent_reports(&state.db, 1).await?.into_iter().next()
        && let Ok(loaded) = state.artifacts.run(run_id, &report).await
    {
        drift = Some((run_id, loaded));
    }
    Ok(html(pages::models(
        &models,
        &history,
        &evaluations,
        drift.as_ref().map(|(id, l)| (*id, &l.report.drift[..])),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_read_leniently_and_problems_named() {
        let params = AnomalyParams {
            host: Some(" 10.0.1.5 ".into()),
            port: Some("99999".into()),
            from: Some("2026-01-01T00:01".into()),
            to: Some("yesterday".into()),
            sort: Some("score_isolation_forest".into()),
            order: Some("asc".into()),
            page: Some("3".into()),
            ..Default::default()
        };
        let (q, problems) = params.query(vec!["isolation_forest".into()]);
        assert_eq!(q.filter.host.as_deref(), Some("10.0.1.5"));
        assert_eq!(q.filter.port, None);
        assert_eq!(q.filter.from_ns, Some(1_767_225_660_000_000_000));
        assert_eq!(q.sort, Sort::Detector("isolation_forest".into()));
        assert!(!q.descending);
        assert_eq!(q.page, 3);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("99999"));
        assert!(problems[1].contains("yesterday"));
    }

    #[test]
    fn only_posts_from_the_dashboards_own_pages_are_taken() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("dash:8080"));
        assert!(!same_origin(&h), "neither Origin nor Sec-Fetch-Site");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://dash:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn a_request_acts_as_the_credential_it_presents() {
        let credentials = [
            Credential {
                name: "alice".into(),
                secret: "alice-secret".into(),
            },
            Credential {
                name: "bob".into(),
                secret: "bob-secret-longer".into(),
            },
        ];
        let basic = |text: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        assert_eq!(
            authenticated(&credentials, &basic("bob:bob-secret-longer")),
            Some("bob")
        );
        assert_eq!(
            authenticated(&credentials, "Bearer alice-secret"),
            Some("alice")
        );
        assert_eq!(
            authenticated(&credentials, &basic("alice:bob-secret-longer")),
            None,
            "another's secret"
        );
        assert_eq!(authenticated(&credentials, "Bearer alice-secre"), None);
        assert_eq!(authenticated(&credentials, &basic("alice")), None);
        assert_eq!(authenticated(&credentials, "Basic !!"), None);
        assert_eq!(authenticated(&credentials, "alice-secret"), None);
        assert_eq!(authenticated(&credentials, ""), None);
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("10.0.0.1"), "10.0.0.1");
    }
}
