//! Configuration and telemetry every long-running nadir process shares.
//!
//! Every service setting a nadir process reads (`NADIR_NATS_URL`, the S3
//! and database settings, buckets, delivery, the dashboard's) is named in
//! this file, once; the analysis settings (detectors, seed, timeouts, the
//! training window) are `nadir_pipeline::Analysis`. A missing or malformed
//! value stops the process at start with a message that names the
//! variable, so an operator never has to guess which line of a manifest is
//! wrong. Secrets (S3 keys, the database URL, NATS tokens and passwords)
//! are read here and never printed: [`Config`]'s `Debug` output redacts
//! them. CA files are read and checked here too, so that a bad path stops
//! the process at start.
//!
//! - [`telemetry`]: logs, the Prometheus metrics, `/healthz` and `/readyz`.
//! - [`shutdown`]: SIGTERM/SIGINT as a future.
//! - [`tls`]: CA files and the PostgreSQL URL's `sslmode`/`sslrootcert`,
//!   read and checked here, used by the clients.
//!
//! No service is contacted here.

pub mod shutdown;
pub mod telemetry;
pub mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("{var}={value:?} is not valid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Where the environment comes from: the process, or a map in tests.
pub trait Env {
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, var: &str) -> Option<String> {
        HashMap::get(self, var).cloned().filter(|v| !v.is_empty())
    }
}

pub fn required(
    env: &dyn Env,
    var: &'static str,
    hint: &'static str,
) -> Result<String, ConfigError> {
    env.get(var).ok_or(ConfigError::Missing { var, hint })
}

/// A setting with no default: `None` when unset.
pub fn optional<T>(env: &dyn Env, var: &'static str) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    env.get(var)
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| ConfigError::Invalid {
                var,
                value: v.clone(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

pub fn parsed<T>(env: &dyn Env, var: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match env.get(var) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                var,
                reason: e.to_string(),
                value,
            }),
    }
}

pub fn seconds(env: &dyn Env, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
    parsed(env, var, default).map(Duration::from_secs)
}

fn bucket(env: &dyn Env, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let name = env.get(var).unwrap_or_else(|| default.to_string());
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(name)
    } else {
        Err(ConfigError::Invalid {
            var,
            value: name,
            reason: "an S3 bucket name is 3-63 characters of a-z, 0-9, '-' and '.'".into(),
        })
    }
}

/// Connection to the S3 server holding the four buckets.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// `NADIR_S3_CA_FILE`: the CAs trusted for an https endpoint, instead
    /// of the system's.
    pub ca_file: Option<tls::CaFile>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How to reach and sign in to NATS (`NADIR_NATS_*`).
#[derive(Clone)]
pub struct NatsSettings {
    /// `NADIR_NATS_URL`: `nats://` (TLS when the server asks for it) or
    /// `tls://` (TLS always), several separated by commas.
    pub url: String,
    pub auth: NatsAuth,
    /// `NADIR_NATS_CA_FILE`: the CAs trusted for the server's certificate,
    /// instead of the system's; TLS is then required whatever the URL says.
    pub ca_file: Option<tls::CaFile>,
}

/// Who nadir is to the NATS server: at most one way.
#[derive(Clone)]
pub enum NatsAuth {
    None,
    /// `NADIR_NATS_TOKEN`.
    Token(String),
    /// `NADIR_NATS_USER` and `NADIR_NATS_PASSWORD`.
    UserPassword {
        user: String,
        password: String,
    },
    /// `NADIR_NATS_CREDS_FILE`: a `.creds` file (user JWT and NKey seed).
    CredsFile(std::path::PathBuf),
}

impl NatsAuth {
    /// The settings this way of signing in comes from, for error messages.
    pub fn settings(&self) -> &'static str {
        match self {
            NatsAuth::None => {
                "no NADIR_NATS_TOKEN, NADIR_NATS_USER or NADIR_NATS_CREDS_FILE is set"
            }
            NatsAuth::Token(_) => "NADIR_NATS_TOKEN",
            NatsAuth::UserPassword { .. } => "NADIR_NATS_USER and NADIR_NATS_PASSWORD",
            NatsAuth::CredsFile(_) => "NADIR_NATS_CREDS_FILE",
        }
    }
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.write_str("Token(<redacted>)"),
            NatsAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            NatsAuth::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The four bucket names (DESIGN.md: raw, silver, models, eval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub raw: String,
    pub silver: String,
    pub models: String,
    pub eval: String,
}

impl Buckets {
    pub fn all(&self) -> [&str; 4] {
        [&self.raw, &self.silver, &self.models, &self.eval]
    }
}

/// How a stage treats its JetStream messages.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Time a worker has to ack (or send an in-progress ack) before JetStream
    /// redelivers. In-progress acks are sent every third of it.
    pub ack_wait: Duration,
    /// How long a job's transient errors may go on being retried, from the
    /// first one, before the job fails. Outages spend none of it: a worker
    /// that cannot reach its services does not pull.
    pub retry_budget: Duration,
    /// Workers that may die working on one job before it fails (an input
    /// that exhausts memory would otherwise kill every replica in turn).
    pub max_worker_deaths: i32,
    /// How long a job may sit with nobody working on it, or a next message
    /// with nobody taking it up, before the reaper drives it again.
    pub reap_after: Duration,
    /// Messages larger than this travel by reference (stored in PostgreSQL);
    /// `None`: the NATS server's `max_payload`.
    pub max_message_bytes: Option<usize>,
    /// Time a worker keeps working on the job in hand after SIGTERM before it
    /// hands the message back.
    pub shutdown_grace: Duration,
}

impl Delivery {
    /// How long an attempt owns its job without renewing: the lease is
    /// renewed with every in-progress ack, every third of it.
    pub fn lease(&self) -> Duration {
        self.ack_wait
    }
}

/// Everything a long-running nadir process needs to start.
#[derive(Clone)]
pub struct Config {
    pub nats: NatsSettings,
    pub s3: S3Settings,
    pub database_url: String,
    pub metrics_addr: SocketAddr,
    pub buckets: Buckets,
    pub delivery: Delivery,
    /// How often the ingest reconciler lists `raw`; zero turns it off.
    pub reconcile_interval: Duration,
    /// Name of this process in audit rows and logs.
    pub worker_id: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("nats", &self.nats)
            .field("s3", &self.s3)
            .field("database_url", &redact_url(&self.database_url))
            .field("metrics_addr", &self.metrics_addr)
            .field("buckets", &self.buckets)
            .field("delivery", &self.delivery)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

/// A connection string with its secrets replaced: the credentials of
/// `scheme://user:secret@host/...`, a `password=` query parameter, and the
/// `password=` of a key=value DSN (`host=db password=secret`).
pub fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    };
    redact_password_values(&url)
}

/// Every `…password=VALUE` (`password`, `sslpassword`, ...) with VALUE
/// replaced; a quoted DSN value may hold spaces.
fn redact_password_values(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find(KEY) {
        let value_at = i + KEY.len();
        out.push_str(&rest[..value_at]);
        rest = &rest[value_at..];
        let end = if let Some(quoted) = rest.strip_prefix('\'') {
            quoted.find('\'').map_or(rest.len(), |j| j + 2)
        } else {
            rest.find(['&', ' ', '\t']).unwrap_or(rest.len())
        };
        out.push_str("<redacted>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Every variable [`Config`] reads, for the deployment checks and `--help`.
pub const VARIABLES: &[&str] = &[
    "NADIR_NATS_URL",
    "NADIR_NATS_TOKEN",
    "NADIR_NATS_USER",
    "NADIR_NATS_PASSWORD",
    "NADIR_NATS_CREDS_FILE",
    "NADIR_NATS_CA_FILE",
    "NADIR_S3_ENDPOINT",
    "NADIR_S3_REGION",
    "NADIR_S3_ACCESS_KEY",
    "NADIR_S3_SECRET_KEY",
    "NADIR_S3_CA_FILE",
    "NADIR_DATABASE_URL",
    "NADIR_METRICS_ADDR",
    "NADIR_BUCKET_RAW",
    "NADIR_BUCKET_SILVER",
    "NADIR_BUCKET_MODELS",
    "NADIR_BUCKET_EVAL",
    "NADIR_ACK_WAIT_SECS",
    "NADIR_RETRY_BUDGET_SECS",
    "NADIR_MAX_WORKER_DEATHS",
    "NADIR_REAP_AFTER_SECS",
    "NADIR_MAX_MESSAGE_BYTES",
    "NADIR_SHUTDOWN_GRACE_SECS",
    "NADIR_RECONCILE_INTERVAL_SECS",
    "NADIR_WORKER_ID",
];

/// The variables [`Config`] cannot start without.
pub const REQUIRED: &[&str] = &[
    "NADIR_NATS_URL",
    "NADIR_S3_ENDPOINT",
    "NADIR_S3_ACCESS_KEY",
    "NADIR_S3_SECRET_KEY",
    "NADIR_DATABASE_URL",
];

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&ProcessEnv)
    }

    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let nats = nats_settings(env)?;
        let s3 = s3_settings(env)?;
        let database_url = database_url(env)?;
        let metrics_addr = parsed(
            env,
            "NADIR_METRICS_ADDR",
            SocketAddr::from(([0, 0, 0, 0], 9090)),
        )?;
        let buckets = Buckets::from(env)?;
        let delivery = Delivery {
            ack_wait: seconds(env, "NADIR_ACK_WAIT_SECS", 30)?,
            retry_budget: seconds(env, "NADIR_RETRY_BUDGET_SECS", 900)?,
            max_worker_deaths: parsed(env, "NADIR_MAX_WORKER_DEATHS", 3)?,
            reap_after: seconds(env, "NADIR_REAP_AFTER_SECS", 300)?,
            max_message_bytes: optional(env, "NADIR_MAX_MESSAGE_BYTES")?,
            shutdown_grace: seconds(env, "NADIR_SHUTDOWN_GRACE_SECS", 25)?,
        };
        if delivery.ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                var: "NADIR_ACK_WAIT_SECS",
                value: "0".into(),
                reason: "must be at least 1 second".into(),
            });
        }
        if delivery.max_worker_deaths < 1 {
            return Err(ConfigError::Invalid {
                var: "NADIR_MAX_WORKER_DEATHS",
                value: delivery.max_worker_deaths.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(max) = delivery.max_message_bytes.filter(|m| *m < 1024) {
            return Err(ConfigError::Invalid {
                var: "NADIR_MAX_MESSAGE_BYTES",
                value: max.to_string(),
                reason: "must be at least 1024".into(),
            });
        }
        let worker_id = env.get("NADIR_WORKER_ID").unwrap_or_else(default_worker_id);
        Ok(Config {
            nats,
            s3,
            database_url,
            metrics_addr,
            buckets,
            delivery,
            reconcile_interval: seconds(env, "NADIR_RECONCILE_INTERVAL_SECS", 30)?,
            worker_id,
        })
    }
}

/// `NADIR_S3_*`: the S3 server and its keys.
fn s3_settings(env: &dyn Env) -> Result<S3Settings, ConfigError> {
    let endpoint = required(
        env,
        "NADIR_S3_ENDPOINT",
        "the S3 server, e.g. http://127.0.0.1:9000",
    )?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            var: "NADIR_S3_ENDPOINT",
            value: endpoint,
            reason: "expected an http:// or https:// URL".into(),
        });
    }
    let ca_file = ca_file(env, "NADIR_S3_CA_FILE")?;
    if let Some(ca) = &ca_file
        && !endpoint.starts_with("https://")
    {
        return Err(ConfigError::Invalid {
            var: "NADIR_S3_CA_FILE",
            value: ca.path.display().to_string(),
            reason: format!(
                "NADIR_S3_ENDPOINT={endpoint} is not https://, so no certificate is checked"
            ),
        });
    }
    Ok(S3Settings {
        endpoint,
        region: env
            .get("NADIR_S3_REGION")
            .unwrap_or_else(|| "us-east-1".into()),
        access_key: required(
            env,
            "NADIR_S3_ACCESS_KEY",
            "the S3 access key (from a Secret)",
        )?,
        secret_key: required(
            env,
            "NADIR_S3_SECRET_KEY",
            "the S3 secret key (from a Secret)",
        )?,
        ca_file,
    })
}

/// A PEM file of CAs named by `var`, read and checked.
fn ca_file(env: &dyn Env, var: &'static str) -> Result<Option<tls::CaFile>, ConfigError> {
    env.get(var)
        .map(|path| {
            tls::CaFile::read(path.trim()).map_err(|reason| ConfigError::Invalid {
                var,
                value: path,
                reason,
            })
        })
        .transpose()
}

impl NatsSettings {
    /// `NADIR_NATS_*`: the server, how nadir signs in, which CAs it trusts.
    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        nats_settings(env)
    }
}

fn nats_settings(env: &dyn Env) -> Result<NatsSettings, ConfigError> {
    let url = required(
        env,
        "NADIR_NATS_URL",
        "the NATS server, e.g. nats://127.0.0.1:4222 (tls://... for TLS)",
    )?;
    for server in url.split(',') {
        if let Some((scheme, _)) = server.trim().split_once("://")
            && !["nats", "tls", "ws", "wss"].contains(&scheme)
        {
            return Err(ConfigError::Invalid {
                var: "NADIR_NATS_URL",
                value: redact_url(&url),
                reason: format!("{scheme}:// is not nats://, tls://, ws:// or wss://"),
            });
        }
    }
    let token = env.get("NADIR_NATS_TOKEN");
    let user = env.get("NADIR_NATS_USER");
    let password = env.get("NADIR_NATS_PASSWORD");
    let creds = env.get("NADIR_NATS_CREDS_FILE");
    let ways = [
        token.is_some(),
        user.is_some() || password.is_some(),
        creds.is_some(),
    ];
    if ways.iter().filter(|set| **set).count() > 1 {
        let (var, value) = if token.is_some() {
            ("NADIR_NATS_TOKEN", "<redacted>".to_string())
        } else {
            ("NADIR_NATS_CREDS_FILE", creds.clone().unwrap_or_default())
        };
        return Err(ConfigError::Invalid {
            var,
            value,
            reason: "set one way to sign in to NATS: NADIR_NATS_TOKEN, NADIR_NATS_USER with \
                     NADIR_NATS_PASSWORD, or NADIR_NATS_CREDS_FILE"
                .into(),
        });
    }
    let auth = match (token, user, password, creds) {
        (Some(token), ..) => NatsAuth::Token(token),
        (_, Some(user), Some(password), _) => NatsAuth::UserPassword { user, password },
        (_, Some(_), None, _) => {
            return Err(ConfigError::Missing {
                var: "NADIR_NATS_PASSWORD",
                hint: "NADIR_NATS_USER is set, so its password is needed (from a Secret)",
            });
        }
        (_, None, Some(_), _) => {
            return Err(ConfigError::Missing {
                var: "NADIR_NATS_USER",
                hint: "NADIR_NATS_PASSWORD is set, so a user name is needed",
            });
        }
        (_, _, _, Some(path)) => {
            if let Err(e) = std::fs::File::open(path.trim()) {
                return Err(ConfigError::Invalid {
                    var: "NADIR_NATS_CREDS_FILE",
                    value: path,
                    reason: format!("cannot read it: {e}"),
                });
            }
            NatsAuth::CredsFile(path.trim().into())
        }
        (None, None, None, None) => NatsAuth::None,
    };
    Ok(NatsSettings {
        url,
        auth,
        ca_file: ca_file(env, "NADIR_NATS_CA_FILE")?,
    })
}

fn database_url(env: &dyn Env) -> Result<String, ConfigError> {
    let database_url = required(
        env,
        "NADIR_DATABASE_URL",
        "the PostgreSQL URL, e.g. postgres://nadir:...@127.0.0.1:5432/nadir \
         (?sslmode=verify-full&sslrootcert=/path/ca.pem for TLS)",
    )?;
    if let Err(reason) = tls::PostgresUrl::parse(&database_url) {
        return Err(ConfigError::Invalid {
            var: "NADIR_DATABASE_URL",
            value: redact_url(&database_url),
            reason,
        });
    }
    Ok(database_url)
}

impl Buckets {
    /// `NADIR_BUCKET_*`, with the design's names as defaults.
    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Buckets {
            raw: bucket(env, "NADIR_BUCKET_RAW", "raw")?,
            silver: bucket(env, "NADIR_BUCKET_SILVER", "silver")?,
            models: bucket(env, "NADIR_BUCKET_MODELS", "models")?,
            eval: bucket(env, "NADIR_BUCKET_EVAL", "eval")?,
        })
    }
}

/// One way into the dashboard: a name and its secret. A browser signs in
/// with HTTP basic auth (the name and the secret); a script sends the
/// secret alone as `Authorization: Bearer`. Either way the request acts as
/// `name`, which is the analyst recorded with every verdict.
#[derive(Clone)]
pub struct Credential {
    pub name: String,
    pub secret: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Who may open the dashboard. There is no default that lets everybody
/// in: without credentials the dashboard starts only when
/// `NADIR_DASHBOARD_AUTH=none` says so and it listens on loopback.
#[derive(Clone, Debug)]
pub enum DashboardAccess {
    /// Every request names one of these (at least one).
    Credentials(Vec<Credential>),
    /// `NADIR_DASHBOARD_AUTH=none` on a loopback address: nobody is
    /// asked, and verdicts are recorded as by [`LOCAL_ANALYST`].
    Open,
}

/// The analyst a verdict is recorded by when the dashboard asks nobody.
pub const LOCAL_ANALYST: &str = "local (no authentication)";

impl DashboardAccess {
    /// `NADIR_DASHBOARD_AUTH`, `NADIR_DASHBOARD_USER` with
    /// `NADIR_DASHBOARD_PASSWORD`, `NADIR_DASHBOARD_TOKEN` (named by
    /// `NADIR_DASHBOARD_TOKEN_NAME`) and `NADIR_DASHBOARD_CREDENTIALS_FILE`
    /// (`name:secret` lines, from a mounted Secret).
    fn from(env: &dyn Env, addr: SocketAddr) -> Result<Self, ConfigError> {
        let mut credentials = Vec::new();
        match (
            env.get("NADIR_DASHBOARD_USER"),
            env.get("NADIR_DASHBOARD_PASSWORD"),
        ) {
            (Some(user), Some(password)) => {
                credentials.push(credential("NADIR_DASHBOARD_USER", user.trim(), &password)?)
            }
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "NADIR_DASHBOARD_PASSWORD",
                    hint: "NADIR_DASHBOARD_USER is set, so its password is needed (from a Secret)",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "NADIR_DASHBOARD_USER",
                    hint: "NADIR_DASHBOARD_PASSWORD is set, so a user name is needed",
                });
            }
            (None, None) => {}
        }
        if let Some(token) = env.get("NADIR_DASHBOARD_TOKEN") {
            let name = env
                .get("NADIR_DASHBOARD_TOKEN_NAME")
                .unwrap_or_else(|| "api".into());
            credentials.push(credential(
                "NADIR_DASHBOARD_TOKEN_NAME",
                name.trim(),
                &token,
            )?);
        }
        if let Some(path) = env.get("NADIR_DASHBOARD_CREDENTIALS_FILE") {
            let invalid = |reason: String| ConfigError::Invalid {
                var: "NADIR_DASHBOARD_CREDENTIALS_FILE",
                value: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(format!("cannot be read: {e}")))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((name, secret)) = line.split_once(':') else {
                    return Err(invalid(format!("line {} is not `name:secret`", number + 1)));
                };
                credentials.push(
                    credential(
                        "NADIR_DASHBOARD_CREDENTIALS_FILE",
                        name.trim(),
                        secret.trim(),
                    )
                    .map_err(|e| invalid(format!("line {}: {e}", number + 1)))?,
                );
            }
        }
        let mut names: Vec<&str> = credentials.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid {
                var: "NADIR_DASHBOARD_CREDENTIALS_FILE",
                value: twice[0].to_string(),
                reason: "this name is given more than one credential".into(),
            });
        }
        let auth = env.get("NADIR_DASHBOARD_AUTH");
        match auth.as_deref().map(str::trim) {
            None | Some("credentials") if credentials.is_empty() => Err(ConfigError::Missing {
                var: "NADIR_DASHBOARD_USER",
                hint: "the dashboard needs credentials: NADIR_DASHBOARD_USER and \
                       NADIR_DASHBOARD_PASSWORD, NADIR_DASHBOARD_TOKEN or \
                       NADIR_DASHBOARD_CREDENTIALS_FILE (from a Secret); \
                       NADIR_DASHBOARD_AUTH=none serves without them on a loopback address",
            }),
            None | Some("credentials") => Ok(DashboardAccess::Credentials(credentials)),
            Some("none") if !credentials.is_empty() => Err(ConfigError::Invalid {
                var: "NADIR_DASHBOARD_AUTH",
                value: "none".into(),
                reason: "credentials are set too; unset them or NADIR_DASHBOARD_AUTH".into(),
            }),
            Some("none") if !addr.ip().is_loopback() => Err(ConfigError::Invalid {
                var: "NADIR_DASHBOARD_AUTH",
                value: "none".into(),
                reason: format!(
                    "the dashboard would let anybody in on NADIR_DASHBOARD_ADDR={addr}; \
                     without credentials it listens only on a loopback address (127.0.0.1, ::1)"
                ),
            }),
            Some("none") => Ok(DashboardAccess::Open),
            Some(other) => Err(ConfigError::Invalid {
                var: "NADIR_DASHBOARD_AUTH",
                value: other.into(),
                reason: "expected `credentials` (the default) or `none`".into(),
            }),
        }
    }
}

fn credential(var: &'static str, name: &str, secret: &str) -> Result<Credential, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        var,
        value: name.into(),
        reason: reason.into(),
    };
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "a name is 1 to 200 characters, without control characters",
        ));
    }
    if name.contains(':') {
        return Err(invalid(
            "a name cannot contain ':' (basic auth splits on it)",
        ));
    }
    if secret.chars().count() < 8 {
        return Err(invalid("its secret is shorter than 8 characters"));
    }
    Ok(Credential {
        name: name.into(),
        secret: secret.into(),
    })
}

/// What `nadir-dashboard` needs: PostgreSQL (a role that reads, and
/// writes feedback), S3 (reads `eval` and `silver`), and where to listen.
/// It needs no NATS.
#[derive(Clone)]
pub struct DashboardConfig {
    pub s3: S3Settings,
    pub database_url: String,
    pub buckets: Buckets,
    /// The pages, `/metrics`, `/healthz` and `/readyz`.
    pub addr: SocketAddr,
    pub access: DashboardAccess,
    /// Runs whose flows the dashboard keeps indexed in memory.
    pub cached_runs: usize,
}

impl fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("s3", &self.s3)
            .field("database_url", &redact_url(&self.database_url))
            .field("buckets", &self.buckets)
            .field("addr", &self.addr)
            .field("access", &self.access)
            .field("cached_runs", &self.cached_runs)
            .finish()
    }
}

/// Every variable [`DashboardConfig`] reads besides the shared S3,
/// database and bucket settings.
pub const DASHBOARD_VARIABLES: &[&str] = &[
    "NADIR_DASHBOARD_ADDR",
    "NADIR_DASHBOARD_AUTH",
    "NADIR_DASHBOARD_TOKEN",
    "NADIR_DASHBOARD_TOKEN_NAME",
    "NADIR_DASHBOARD_USER",
    "NADIR_DASHBOARD_PASSWORD",
    "NADIR_DASHBOARD_CREDENTIALS_FILE",
    "NADIR_DASHBOARD_CACHED_RUNS",
];

impl DashboardConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&ProcessEnv)
    }

    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let addr = parsed(
            env,
            "NADIR_DASHBOARD_ADDR",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
        )?;
        let cached_runs = parsed(env, "NADIR_DASHBOARD_CACHED_RUNS", 4usize)?;
        if cached_runs == 0 {
            return Err(ConfigError::Invalid {
                var: "NADIR_DASHBOARD_CACHED_RUNS",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(DashboardConfig {
            s3: s3_settings(env)?,
            database_url: database_url(env)?,
            buckets: Buckets::from(env)?,
            addr,
            access: DashboardAccess::from(env, addr)?,
            cached_runs,
        })
    }
}

/// `HOSTNAME` (the pod name on Kubernetes) and the process id.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{}", std::process::id())
}

/// The `NADIR_*` variable names quoted in `source` (prefixes such as
/// `"NADIR_S3_"` left out): what the tests of every crate that reads
/// settings compare with its list of variables.
pub fn variables_named_in(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("\"NADIR_") {
        let name: String = rest[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + 1 + name.len()..];
        if !name.ends_with('_') {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_variable_read_here_is_listed() {
        let source = include_str!("lib.rs");
        let listed: Vec<&str> = super::VARIABLES
            .iter()
            .chain(super::DASHBOARD_VARIABLES)
            .copied()
            .collect();
        let named = super::variables_named_in(source);
        for name in &named {
            assert!(
                listed.contains(&name.as_str()),
                "{name} is read but not listed"
            );
        }
        let seen = named.len();
        assert!(seen > 15, "{seen}");
    }

    use super::*;

    #[test]
    fn every_form_of_password_is_redacted() {
        assert_eq!(
            redact_url("postgres://nadir:s3cret@db:5432/nadir"),
            "postgres://<redacted>@db:5432/nadir"
        );
        assert_eq!(
            redact_url("postgres://db/nadir?user=nadir&password=s3cret&sslmode=require"),
            "postgres://db/nadir?user=nadir&password=<redacted>&sslmode=require"
        );
        assert_eq!(
            redact_url("host=db user=nadir password=s3cret dbname=nadir"),
            "host=db user=nadir password=<redacted> dbname=nadir"
        );
        assert_eq!(
            redact_url("host=db password='with space' dbname=nadir"),
            "host=db password=<redacted> dbname=nadir"
        );
        assert_eq!(redact_url("password=x"), "password=<redacted>");
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("host=db sslpassword=key-secret"),
            "host=db sslpassword=<redacted>"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn complete() -> HashMap<String, String> {
        env(&[
            ("NADIR_NATS_URL", "nats://127.0.0.1:4222"),
            ("NADIR_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("NADIR_S3_ACCESS_KEY", "ak"),
            ("NADIR_S3_SECRET_KEY", "sk-very-secret"),
            (
                "NADIR_DATABASE_URL",
                "postgres://nadir:pw-very-secret@127.0.0.1:5432/nadir",
            ),
        ])
    }

    #[test]
    fn defaults_apply_when_optional_settings_are_absent() {
        let config = Config::from(&complete()).unwrap();
        assert_eq!(config.buckets.all(), ["raw", "silver", "models", "eval"]);
        assert_eq!(config.metrics_addr.port(), 9090);
        assert_eq!(config.delivery.retry_budget, Duration::from_secs(900));
        assert_eq!(config.delivery.max_worker_deaths, 3);
        assert_eq!(config.s3.region, "us-east-1");
    }

    #[test]
    fn a_missing_setting_names_the_variable() {
        let mut e = complete();
        e.remove("NADIR_DATABASE_URL");
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(err.starts_with("NADIR_DATABASE_URL is not set"), "{err}");
    }

    #[test]
    fn a_malformed_setting_names_the_variable_and_the_value() {
        let mut e = complete();
        e.insert("NADIR_METRICS_ADDR".into(), "localhost".into());
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(err.contains("NADIR_METRICS_ADDR=\"localhost\""), "{err}");

        let mut e = complete();
        e.insert("NADIR_BUCKET_RAW".into(), "Raw_Bucket".into());
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(err.contains("NADIR_BUCKET_RAW"), "{err}");

        let mut e = complete();
        e.insert("NADIR_S3_ENDPOINT".into(), "127.0.0.1:9000".into());
        assert!(
            Config::from(&e)
                .unwrap_err()
                .to_string()
                .contains("NADIR_S3_ENDPOINT")
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = Config::from(&complete()).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:5432/nadir"));

        for (var, value) in [
            ("NADIR_NATS_TOKEN", "tok-very-secret"),
            ("NADIR_NATS_PASSWORD", "pw-very-secret"),
        ] {
            let mut e = complete();
            e.insert(var.into(), value.into());
            if var == "NADIR_NATS_PASSWORD" {
                e.insert("NADIR_NATS_USER".into(), "pipeline".into());
            }
            let shown = format!("{:?}", Config::from(&e).unwrap());
            assert!(!shown.contains("very-secret"), "{shown}");
        }
    }

    #[test]
    fn nats_takes_one_way_to_sign_in() {
        let with = |pairs: &[(&str, &str)]| {
            let mut e = complete();
            e.extend(env(pairs));
            Config::from(&e)
        };
        assert!(matches!(with(&[]).unwrap().nats.auth, NatsAuth::None));
        assert!(matches!(
            with(&[("NADIR_NATS_TOKEN", "t")]).unwrap().nats.auth,
            NatsAuth::Token(_)
        ));
        let both = with(&[("NADIR_NATS_TOKEN", "t"), ("NADIR_NATS_USER", "u")])
            .unwrap_err()
            .to_string();
        assert!(both.contains("set one way to sign in"), "{both}");
        assert!(!both.contains("\"t\""), "{both}");
        let lonely = with(&[("NADIR_NATS_USER", "u")]).unwrap_err().to_string();
        assert!(
            lonely.starts_with("NADIR_NATS_PASSWORD is not set"),
            "{lonely}"
        );
        let creds = with(&[("NADIR_NATS_CREDS_FILE", "/nonexistent/nadir.creds")])
            .unwrap_err()
            .to_string();
        assert!(
            creds.contains("NADIR_NATS_CREDS_FILE=\"/nonexistent/nadir.creds\""),
            "{creds}"
        );
        let scheme = with(&[("NADIR_NATS_URL", "http://127.0.0.1:4222")])
            .unwrap_err()
            .to_string();
        assert!(scheme.contains("NADIR_NATS_URL"), "{scheme}");
    }

    #[test]
    fn ca_files_are_read_at_start() {
        let mut e = complete();
        e.insert("NADIR_NATS_CA_FILE".into(), "/nonexistent/ca.pem".into());
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(
            err.contains("NADIR_NATS_CA_FILE=\"/nonexistent/ca.pem\""),
            "{err}"
        );
        assert!(err.contains("cannot read"), "{err}");

        let mut e = complete();
        e.insert("NADIR_S3_CA_FILE".into(), "/nonexistent/ca.pem".into());
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(err.contains("NADIR_S3_CA_FILE"), "{err}");

        let dir = std::env::temp_dir().join(format!("nadir-config-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, tls::tests::SOME_CA).unwrap();
        let mut e = complete();
        e.insert("NADIR_S3_CA_FILE".into(), ca.display().to_string());
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(err.contains("is not https://"), "{err}");
        e.insert(
            "NADIR_S3_ENDPOINT".into(),
            "https://s3.example.internal".into(),
        );
        e.insert("NADIR_NATS_CA_FILE".into(), ca.display().to_string());
        let config = Config::from(&e).unwrap();
        assert_eq!(config.s3.ca_file.unwrap().certificates.len(), 1);
        assert_eq!(config.nats.ca_file.unwrap().path, ca);
        std::fs::remove_dir_all(&dir).unwrap();

        let mut e = complete();
        e.insert(
            "NADIR_DATABASE_URL".into(),
            "postgres://nadir:pw-very-secret@db/nadir?sslmode=verify-ca".into(),
        );
        let err = Config::from(&e).unwrap_err().to_string();
        assert!(err.starts_with("NADIR_DATABASE_URL="), "{err}");
        assert!(err.contains("verify-ca is not supported"), "{err}");
        assert!(!err.contains("very-secret"), "{err}");
    }

    fn dashboard(extra: &[(&str, &str)]) -> Result<DashboardConfig, ConfigError> {
        let mut e = complete();
        e.extend(env(extra));
        DashboardConfig::from(&e)
    }

    #[test]
    fn the_dashboard_refuses_to_start_open_unless_told_and_on_loopback() {
        let err = dashboard(&[]).unwrap_err().to_string();
        assert!(err.contains("needs credentials"), "{err}");
        assert!(err.contains("NADIR_DASHBOARD_AUTH=none"), "{err}");

        let err = dashboard(&[("NADIR_DASHBOARD_AUTH", "none")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.0.0.0:8080"), "{err}");
        let open = dashboard(&[
            ("NADIR_DASHBOARD_AUTH", "none"),
            ("NADIR_DASHBOARD_ADDR", "127.0.0.1:8080"),
        ])
        .unwrap();
        assert!(matches!(open.access, DashboardAccess::Open));
        let err = dashboard(&[
            ("NADIR_DASHBOARD_AUTH", "none"),
            ("NADIR_DASHBOARD_ADDR", "127.0.0.1:8080"),
            ("NADIR_DASHBOARD_TOKEN", "a-long-token"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("credentials are set too"), "{err}");
        let err = dashboard(&[("NADIR_DASHBOARD_AUTH", "off")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("NADIR_DASHBOARD_AUTH=\"off\""), "{err}");
    }

    #[test]
    fn every_credential_has_a_name_and_a_secret() {
        let dir = std::env::temp_dir().join(format!("nadir-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "# analysts\nalice: alice-secret-1\n\nbob:bob-secret-22\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let config = dashboard(&[
            ("NADIR_DASHBOARD_USER", "carol"),
            ("NADIR_DASHBOARD_PASSWORD", "carol-very-secret"),
            ("NADIR_DASHBOARD_TOKEN", "token-very-secret"),
            ("NADIR_DASHBOARD_TOKEN_NAME", "soar"),
            ("NADIR_DASHBOARD_CREDENTIALS_FILE", &file),
        ])
        .unwrap();
        let DashboardAccess::Credentials(credentials) = &config.access else {
            panic!("credentials expected");
        };
        let names: Vec<&str> = credentials.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["carol", "soar", "alice", "bob"]);
        assert_eq!(credentials[2].secret, "alice-secret-1");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("alice-secret"),
            "{shown}"
        );

        std::fs::write(
            dir.join("credentials"),
            "alice:alice-secret-1\nalice:other-secret\n",
        )
        .unwrap();
        let err = dashboard(&[("NADIR_DASHBOARD_CREDENTIALS_FILE", &file)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than one credential"), "{err}");
        std::fs::write(dir.join("credentials"), "alice\n").unwrap();
        let err = dashboard(&[("NADIR_DASHBOARD_CREDENTIALS_FILE", &file)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1 is not `name:secret`"), "{err}");
        let err = dashboard(&[("NADIR_DASHBOARD_TOKEN", "short")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than 8"), "{err}");
        let err = dashboard(&[("NADIR_DASHBOARD_CREDENTIALS_FILE", "/nonexistent/creds")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be read"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
