//! `nadir`: the command line of the pipeline.
//!
//! `setup` prepares the services (buckets, streams, consumers, migrations),
//! `upload` drops files into `raw` the way any S3 client would, `start`
//! publishes `pipeline.start`, `wait` follows a run to `pipeline.done` or
//! `pipeline.dead`, `runs` and `status` read the audit trail, `findings`
//! shows a run's findings queue and `suppress` manages the rules that hide
//! findings, and `sample`
//! writes the generated demo data set. Every command but `sample` reads the
//! same `NADIR_*` settings as the workers.
//!
//! This file holds the arguments and the dispatcher; each command's code is
//! in [`commands`] (the offline pipeline of `analyze` in [`analyze`], the
//! replay of `reproduce` in [`reproduce`]), terminal helpers in [`output`].

mod analyze;
mod commands;
mod output;
mod reproduce;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use commands::{
    findings, flows, gen_capture, grant_dashboard, models, pipeline, probe, runs, sample, setup,
    start, upload, variables, verify,
};
use nadir_config::{Config, telemetry};
use nadir_contract::messages::{RunMode, StartRun, TrainingWindow};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "nadir",
    version,
    about = "Anomaly detection on network traffic: the pipeline's command line."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `nadir start --mode` (the `pipeline.start` modes).
#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Ingest,
    Retrain,
    Backfill,
}

impl From<Mode> for RunMode {
    fn from(mode: Mode) -> RunMode {
        match mode {
            Mode::Ingest => RunMode::Ingest,
            Mode::Retrain => RunMode::Retrain,
            Mode::Backfill => RunMode::Backfill,
        }
    }
}

/// What to run: `nadir start`'s and `nadir pipeline`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// RAW keys; none (and no --prefix) means every object not yet ingested.
    keys: Vec<String>,
    #[arg(long, conflicts_with = "keys")]
    prefix: Option<String>,
    /// `ingest`: the keys, the prefix, or every object not yet
    /// ingested; `retrain`: no RAW object, train on the SILVER
    /// partitions already there and evaluate the newest (those of
    /// --train-span-hours, else the newest one); `backfill`: every
    /// object under --prefix (default: all), ingested before or not.
    #[arg(long, value_enum, default_value_t = Mode::Ingest)]
    mode: Mode,
    /// Train on the last N SILVER partitions with the run's features
    /// (the run's own included).
    #[arg(long)]
    train_partitions: Option<u32>,
    /// Train on the partitions transformed in the last this many hours.
    #[arg(long)]
    train_span_hours: Option<f64>,
    /// Hold this share of the run's flows out of training and evaluate
    /// on them only.
    #[arg(long)]
    holdout: Option<f64>,
}

impl RunArgs {
    fn request(self, requested_by: &str) -> anyhow::Result<StartRun> {
        let window = TrainingWindow {
            partitions: self.train_partitions,
            span_hours: self.train_span_hours,
            holdout: self.holdout,
        };
        start::request(
            self.mode.into(),
            self.keys,
            self.prefix,
            window,
            requested_by,
        )
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the buckets, JetStream streams and consumers, and apply the
    /// database migrations. Safe to run again.
    Setup {
        /// Delete the JetStream streams first (drops every pending message).
        #[arg(long)]
        reset_streams: bool,
        /// Also let this existing PostgreSQL role serve the dashboard (as
        /// `nadir grant-dashboard`).
        #[arg(long, value_name = "ROLE")]
        grant_dashboard: Option<String>,
    },
    /// GET an http:// URL and exit 0 if it answers 2xx: the health check
    /// of containers that have no curl (`nadir probe http://127.0.0.1:9090/readyz`).
    Probe {
        url: String,
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Print the environment variables a nadir binary reads, one per line
    /// with `required` or `optional` (for deployment checks).
    Variables {
        /// nadir, nadir-ingest, nadir-transform, nadir-train, nadir-eval or nadir-dashboard
        binary: String,
    },
    /// Upload files into the RAW bucket; each starts a run.
    Upload {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Key prefix in the RAW bucket, e.g. `sensor-a/2026-11-25/`.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Publish `pipeline.start`: run the pipeline on RAW objects.
    Start {
        #[command(flatten)]
        run: RunArgs,
        /// Wait for the run to finish; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// The whole pipeline in this process: start a run, serve the four
    /// stages (the workers' consumers, leases and audit) until it ends;
    /// exit 0 if it succeeded, 1 if it failed. A Kubernetes Job for a
    /// cluster without stage Deployments.
    Pipeline {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value_t = 7000)]
        timeout: u64,
    },
    /// Wait until a run reaches `pipeline.done` or `pipeline.dead`; exit 1 if it failed.
    Wait {
        run_id: Uuid,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// List recent runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Check the object store against the audit trail: every recorded
    /// artifact there with its sha256, no object no audit row names.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Show one run: stages, timings, artifacts, metrics, errors.
    Status {
        run_id: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Turn a local capture (pcap or pcapng, plain or gzip) into SILVER flow
    /// features, exactly as the transform stage does (no services needed).
    Flows {
        capture: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Seconds without a packet that end a flow.
        #[arg(long, default_value_t = 120)]
        idle_timeout: u64,
        /// Seconds after which a long flow is cut.
        #[arg(long, default_value_t = 1800)]
        active_timeout: u64,
    },
    /// Generate a labelled capture: ordinary traffic between hosts with
    /// attacks mixed in (pcap), and its ground truth beside it
    /// (`<output>.labels.csv`). Deterministic for a seed. No services needed.
    GenCapture {
        #[arg(short, long)]
        output: PathBuf,
        /// Client hosts.
        #[arg(long, default_value_t = 50)]
        hosts: u16,
        /// Capture length in seconds.
        #[arg(long, default_value_t = 600)]
        duration: u32,
        /// New ordinary sessions per host per minute.
        #[arg(long, default_value_t = 8.0)]
        rate: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Attacks and how often each happens, e.g. `syn_scan=2,dns_tunnel=0`
        /// (default: each once). Names: syn_scan, connect_scan, syn_flood,
        /// ssh_bruteforce, dns_tunnel, c2_beacon, exfiltration.
        #[arg(long)]
        attacks: Option<String>,
    },
    /// Run transform, train and eval on local files with no service (the
    /// workers' own code), writing SILVER, models and the report under
    /// DIR, and print the comparison table. Captures (pcap, pcapng, gzip;
    /// a `<file>.labels.csv` beside one is its ground truth), Zeek
    /// conn.logs, flow CSVs and flows Parquet. Settings from the same
    /// `NADIR_*` variables as the workers (detectors, scaling, seed,
    /// contamination, flow timeouts, hold-out).
    Analyze {
        /// Files to learn from and judge (both, unless --train/--eval).
        inputs: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// The baseline to learn from (default: every input).
        #[arg(long, num_args = 1..)]
        train: Vec<PathBuf>,
        /// The data to judge (default: every input).
        #[arg(long, num_args = 1..)]
        eval: Vec<PathBuf>,
        /// Print the report as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Replay a finished run from its recorded inputs and configuration
    /// and check that every SILVER partition, model, score file and report
    /// comes out identical; print what differs (exit 1) if anything does.
    Reproduce { run_id: Uuid },
    /// List the model registry: every trained model, the champion, and the
    /// champion's history.
    Models {
        #[arg(long, default_value_t = 30)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Make a registered model the champion by hand (audited).
    Promote {
        /// e.g. isolation_forest
        algorithm: String,
        /// The model's version, as `nadir models` lists it.
        version: String,
        /// Why (kept in the champion's history).
        #[arg(long)]
        reason: String,
    },
    /// Give the champion back to the model it replaced (audited).
    Rollback {
        #[arg(long)]
        reason: String,
        /// The feature set whose champion to roll back (as `nadir models`
        /// shows it); default: the one whose champion changed last.
        #[arg(long)]
        feature_set: Option<String>,
    },
    /// A run's findings, ranked, as the dashboard's queue shows them:
    /// suppressed and closed ones left out unless --all. Default: the
    /// newest evaluated run.
    Findings {
        run_id: Option<Uuid>,
        /// Also the findings suppression rules hide and closed ones.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 25)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Suppression rules: hide findings judged benign, in every run,
    /// past runs included.
    Suppress {
        #[command(subcommand)]
        command: Suppress,
    },
    /// Let an existing PostgreSQL role serve the dashboard: read every
    /// table, and add analysts' feedback; nothing else. Run it again after
    /// an upgrade.
    GrantDashboard {
        /// The role nadir-dashboard connects as (create it first, with a
        /// password, e.g. `CREATE ROLE nadir_dashboard LOGIN PASSWORD ...`).
        role: String,
    },
    /// Write the generated, labelled demo flow CSV (no services needed).
    Sample {
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 5000)]
        rows: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum Suppress {
    /// Add a rule (`nadir suppress add domain '*.example.org' --reason
    /// "package mirror"`).
    Add {
        /// cidr (source or peer in a network), pair ("SRC PEER"), port,
        /// domain (`*.example.org` covers the domain and every name under
        /// it), server_name (TLS SNI or HTTP host, exactly).
        matcher: Matcher,
        pattern: String,
        /// Why these findings are benign (kept with the rule).
        #[arg(long)]
        reason: String,
        /// Only findings of this kind (scan, beacon, dns_tunnel, ...).
        #[arg(long)]
        kind: Option<Kind>,
        /// Who answers for the rule (default: cli:USER@HOST).
        #[arg(long)]
        owner: Option<String>,
        /// When it stops applying: 2026-12-31, an RFC 3339 time, or 30d.
        #[arg(long)]
        expires: Option<String>,
    },
    /// The rules in force and how many findings each hides.
    List {
        /// Count hidden findings over the newest this many evaluated runs.
        #[arg(long, default_value_t = 20)]
        runs: i64,
        #[arg(long)]
        json: bool,
    },
    /// End a rule (its history is kept).
    Remove { rule_id: i64 },
}

/// A matcher name as clap reads it.
#[derive(Clone, Copy)]
struct Matcher(nadir_contract::suppression::Matcher);

impl std::str::FromStr for Matcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(Matcher)
    }
}

/// A finding kind as clap reads it.
#[derive(Clone, Copy)]
struct Kind(nadir_contract::findings::FindingKind);

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        nadir_contract::findings::FindingKind::parse(s)
            .map(Kind)
            .ok_or_else(|| {
                let names: Vec<&str> = nadir_contract::findings::FindingKind::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect();
                format!("{s:?} is no finding kind ({})", names.join(", "))
            })
    }
}

#[global_allocator]
static ALLOC: nadir_pipeline::memory::Counting = nadir_pipeline::memory::Counting;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nadir: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that need no service, and so none of the NADIR_* settings.
    match cli.command {
        Command::Probe { url, timeout } => probe::probe(&url, Duration::from_secs(timeout)).await,
        Command::Variables { binary } => variables::variables(&binary),
        Command::Sample { output, rows, seed } => sample::sample(&output, rows, seed),
        Command::GenCapture {
            output,
            hosts,
            duration,
            rate,
            seed,
            attacks,
        } => gen_capture::gen_capture(&output, hosts, duration, rate, seed, attacks.as_deref()),
        Command::Flows {
            capture,
            output,
            idle_timeout,
            active_timeout,
        } => flows::flows(&capture, &output, idle_timeout, active_timeout),
        Command::Analyze {
            inputs,
            output,
            train,
            eval,
            json,
        } => commands::analyze::analyze(&inputs, &train, &eval, &output, json).await,
        command => {
            // `nadir pipeline` serves the stages: their logs are its output.
            if std::env::var_os("RUST_LOG").is_some() || matches!(command, Command::Pipeline { .. })
            {
                telemetry::init_logging();
            }
            let config = Config::from_env()?;
            with_services(&config, command).await
        }
    }
}

/// The commands that talk to the services, configured from `NADIR_*`.
async fn with_services(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Sample { .. }
        | Command::Probe { .. }
        | Command::Variables { .. }
        | Command::Flows { .. }
        | Command::GenCapture { .. }
        | Command::Analyze { .. } => {
            unreachable!("handled without services")
        }
        Command::Setup {
            reset_streams,
            grant_dashboard: role,
        } => setup::setup(config, reset_streams, role.as_deref()).await,
        Command::GrantDashboard { role } => grant_dashboard::grant_dashboard(config, &role).await,
        Command::Upload { files, prefix } => upload::upload(config, &files, &prefix).await,
        Command::Start { run, wait, timeout } => {
            start::start(config, run.request("cli")?, wait, timeout).await
        }
        Command::Pipeline { run, timeout } => {
            pipeline::pipeline(config, run.request("nadir pipeline")?, timeout).await
        }
        Command::Wait { run_id, timeout } => start::wait(config, run_id, timeout).await,
        Command::Runs { limit, json } => runs::runs(config, limit, json).await,
        Command::Verify { json } => verify::verify(config, json).await,
        Command::Status { run_id, json } => runs::status(config, run_id, json).await,
        Command::Reproduce { run_id } => Ok(if reproduce::reproduce(config, run_id).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Findings {
            run_id,
            all,
            limit,
            json,
        } => findings::findings(config, run_id, all, limit, json).await,
        Command::Suppress { command } => match command {
            Suppress::Add {
                matcher,
                pattern,
                reason,
                kind,
                owner,
                expires,
            } => {
                let add = findings::Add {
                    matcher: matcher.0,
                    pattern,
                    kind: kind.map(|k| k.0),
                    reason,
                    owner,
                    expires,
                };
                findings::add(config, add).await
            }
            Suppress::List { runs, json } => findings::list(config, runs, json).await,
            Suppress::Remove { rule_id } => findings::remove(config, rule_id).await,
        },
        Command::Models { limit, json } => models::models(config, limit, json).await,
        Command::Promote {
            algorithm,
            version,
            reason,
        } => models::promote(config, &algorithm, &version, &reason).await,
        Command::Rollback {
            reason,
            feature_set,
        } => models::rollback(config, &reason, feature_set.as_deref()).await,
    }
}
