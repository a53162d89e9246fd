//! `nadir`: the command line of the pipeline.
//!
//! `setup` prepares the services (buckets, streams, consumers, migrations),
//! `upload` drops files into `raw` the way any S3 client would, `start`
//! publishes `pipeline.start`, `wait` follows a run to `pipeline.done` or
//! `pipeline.dead`, `runs` and `status` read the audit trail, and `sample`
//! writes the generated demo data set. Every command but `sample` reads the
//! same `NADIR_*` settings as the workers.

mod analyze;
mod reproduce;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use nadir_bus::{ALL_CONSUMERS, Bus};
use nadir_config::{Config, telemetry};
use nadir_contract::messages::{
    Message, RunDead, RunDone, StartRun, TrainingWindow, object_run_id, subject,
};
use nadir_db::registry;
use nadir_db::runs::{self, RunSummary, StageRow};
use nadir_store::ObjectStore;
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
        /// RAW keys; none (and no --prefix) means every object not yet ingested.
        keys: Vec<String>,
        #[arg(long, conflicts_with = "keys")]
        prefix: Option<String>,
        /// Wait for the run to finish; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
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

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    if let Command::Probe { url, timeout } = &cli.command {
        return probe(url, Duration::from_secs(*timeout)).await;
    }
    if let Command::Variables { binary } = &cli.command {
        let vars = nadir_pipeline::settings::variables_of(binary)
            .with_context(|| format!("{binary:?} is not a nadir binary"))?;
        for (var, required) in vars {
            println!("{var} {}", if required { "required" } else { "optional" });
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Sample { output, rows, seed } = &cli.command {
        std::fs::write(output, nadir_flows::sample::flow_csv(*rows, *seed))
            .with_context(|| format!("writing {}", output.display()))?;
        println!("wrote {} flows to {}", rows, output.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::GenCapture {
        output,
        hosts,
        duration,
        rate,
        seed,
        attacks,
    } = &cli.command
    {
        return gen_capture(output, *hosts, *duration, *rate, *seed, attacks.as_deref());
    }
    if let Command::Flows {
        capture,
        output,
        idle_timeout,
        active_timeout,
    } = &cli.command
    {
        return flows(capture, output, *idle_timeout, *active_timeout);
    }
    if let Command::Analyze {
        inputs,
        output,
        train,
        eval,
        json,
    } = &cli.command
    {
        let settings = nadir_pipeline::Analysis::from_env()?;
        let result = analyze::analyze(inputs, train, eval, output, &settings).await?;
        if *json {
            println!("{}", serde_json::to_string_pretty(&result["report"])?);
        } else {
            let summary = &result["summary"];
            println!(
                "flows {}  flagged {}  (artifacts in {})",
                summary["rows"],
                summary["flagged"],
                output.display()
            );
            println!();
            analyze::print_comparison(summary);
            if let Some(reason) = summary["reason"].as_str() {
                println!();
                println!("{reason}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if std::env::var_os("RUST_LOG").is_some() {
        telemetry::init_logging();
    }
    let config = Config::from_env()?;
    match cli.command {
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
        } => {
            setup(&config, reset_streams).await?;
            if let Some(role) = role {
                grant_dashboard(&config, &role).await?;
            }
        }
        Command::GrantDashboard { role } => grant_dashboard(&config, &role).await?,
        Command::Upload { files, prefix } => upload(&config, &files, &prefix).await?,
        Command::Start {
            keys,
            prefix,
            wait,
            timeout,
            train_partitions,
            train_span_hours,
            holdout,
        } => {
            let mut start = StartRun::new(keys, prefix, "cli");
            let window = TrainingWindow {
                partitions: train_partitions,
                span_hours: train_span_hours,
                holdout,
            };
            if window != TrainingWindow::default() {
                window.check()?;
                start.training = Some(window);
            }
            let bus = Bus::connect(&config.nats_url, "nadir-cli").await?;
            bus.publish(subject::START, &start.run_id.to_string(), start.encode())
                .await?;
            println!("run {} requested on {}", start.run_id, subject::START);
            if wait {
                return wait_for(&config, start.run_id, timeout).await;
            }
        }
        Command::Wait { run_id, timeout } => return wait_for(&config, run_id, timeout).await,
        Command::Runs { limit, json } => {
            let db = nadir_db::pool(&config.database_url, 1)?;
            let runs = runs::runs(&db, limit)
                .await
                .map_err(|e| anyhow::anyhow!(e.detail()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print_runs(&runs);
            }
        }
        Command::Reproduce { run_id } => {
            if !reproduce::reproduce(&config, run_id).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Models { limit, json } => {
            let db = nadir_db::pool(&config.database_url, 1)?;
            let detail = |e: nadir_db::DbError| anyhow::anyhow!(e.detail());
            let models = registry::models(&db, limit).await.map_err(detail)?;
            let history = registry::history(&db, limit).await.map_err(detail)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "models": models, "champion_history": history })
                    )?
                );
            } else {
                print_models(&models, &history);
            }
        }
        Command::Promote {
            algorithm,
            version,
            reason,
        } => {
            let db = nadir_db::pool(&config.database_url, 1)?;
            registry::promote(&db, &algorithm, &version, &reason, &actor()).await?;
            println!("{algorithm} ({version}) is now the champion");
        }
        Command::Rollback {
            reason,
            feature_set,
        } => {
            let db = nadir_db::pool(&config.database_url, 1)?;
            let c = registry::rollback(&db, feature_set.as_deref(), &reason, &actor()).await?;
            println!(
                "rolled back: {} ({}) is the champion of feature set {} again",
                c.algorithm, c.version, c.feature_set
            );
        }
        Command::Status { run_id, json } => {
            let db = nadir_db::pool(&config.database_url, 1)?;
            let Some(run) = runs::run(&db, run_id)
                .await
                .map_err(|e| anyhow::anyhow!(e.detail()))?
            else {
                bail!("no run {run_id} in the audit trail");
            };
            let rows = runs::stage_rows(&db, run_id)
                .await
                .map_err(|e| anyhow::anyhow!(e.detail()))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "run": run, "stages": rows })
                    )?
                );
            } else {
                print_status(&run, &rows);
            }
            if run.status == "failed" {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn flows(
    capture: &PathBuf,
    output: &PathBuf,
    idle: u64,
    active: u64,
) -> anyhow::Result<std::process::ExitCode> {
    use nadir_flowmeter::MeterConfig;
    let file =
        std::fs::File::open(capture).with_context(|| format!("opening {}", capture.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let config = MeterConfig {
        idle_timeout_ns: idle as i64 * 1_000_000_000,
        active_timeout_ns: active as i64 * 1_000_000_000,
        ..MeterConfig::default()
    };
    let started = std::time::Instant::now();
    let counted = CountingReader {
        inner: std::io::BufReader::new(file),
        read: 0,
        bar: bar.clone(),
    };
    // Flows go to the Parquet file as the meter hands them out: memory
    // follows the open flows, not the capture.
    let out = std::io::BufWriter::new(
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    let (stats, silver) =
        nadir_flows::capture::capture_to_silver(counted, config, None, out, |_| {})
            .with_context(|| format!("{} to {}", capture.display(), output.display()))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} packets ({} IP) -> {} flows in {:.2}s ({:.0} packets/s); wrote {}",
        stats.packets,
        stats.ip_packets,
        silver.rows,
        seconds,
        stats.packets as f64 / seconds.max(1e-9),
        output.display()
    );
    for (reason, count) in &stats.skipped {
        println!("  skipped {count}: {reason}");
    }
    if stats.out_of_order > 0 {
        println!("  {} packets out of time order", stats.out_of_order);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn gen_capture(
    output: &PathBuf,
    hosts: u16,
    duration: u32,
    rate: f64,
    seed: u64,
    attacks: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    use nadir_trafficgen::{Attack, Config};
    let mut config = Config {
        seed,
        hosts,
        duration_s: duration,
        sessions_per_host_minute: rate,
        ..Config::default()
    };
    if let Some(spec) = attacks {
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, times) = part.split_once('=').unwrap_or((part, "1"));
            let attack =
                Attack::parse(name.trim()).with_context(|| format!("unknown attack {name:?}"))?;
            let times: u32 = times
                .trim()
                .parse()
                .with_context(|| format!("{part:?}: not a count"))?;
            config.attacks.retain(|(a, _)| *a != attack);
            config.attacks.push((attack, times));
        }
    }
    let labels = PathBuf::from(format!(
        "{}{}",
        output.display(),
        nadir_flows::labels::SIDECAR_SUFFIX
    ));
    let mut capture = std::io::BufWriter::new(
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    let mut truth = std::io::BufWriter::new(
        std::fs::File::create(&labels).with_context(|| format!("creating {}", labels.display()))?,
    );
    let summary = nadir_trafficgen::generate(&config, &mut capture, &mut truth)?;
    std::io::Write::flush(&mut capture)?;
    std::io::Write::flush(&mut truth)?;
    println!(
        "wrote {} packets ({} bytes, {} sessions) to {}, and {} attack flows to {}",
        summary.packets,
        summary.bytes,
        summary.sessions,
        output.display(),
        summary.attack_flows,
        labels.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Counts bytes read from the capture file for the progress bar.
struct CountingReader<R> {
    inner: R,
    read: u64,
    bar: indicatif::ProgressBar,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.bar.set_position(self.read);
        Ok(n)
    }
}

async fn grant_dashboard(config: &Config, role: &str) -> anyhow::Result<()> {
    let db = nadir_db::pool(&config.database_url, 1)?;
    nadir_db::schema::grant_dashboard(&db, role)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail()))?;
    println!("role {role} may now read the audit trail and the registry, and add feedback");
    Ok(())
}

/// One HTTP/1.0 GET; success is a 2xx status.
async fn probe(url: &str, timeout: Duration) -> anyhow::Result<std::process::ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?}: only http:// URLs can be probed"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{url}: no answer within {timeout:?}"))?
        .with_context(|| url.to_string())?;
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url}: not an HTTP response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or("");
    if (200..300).contains(&status) {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("{url}: {status} {body}");
        Ok(std::process::ExitCode::FAILURE)
    }
}

async fn setup(config: &Config, reset_streams: bool) -> anyhow::Result<()> {
    let store = ObjectStore::new(&config.s3);
    for bucket in config.buckets.all() {
        let created = store.ensure_bucket(bucket).await?;
        println!(
            "bucket {bucket}: {}",
            if created { "created" } else { "exists" }
        );
    }
    let bus = Bus::connect(&config.nats_url, "nadir-setup").await?;
    if reset_streams {
        bus.delete_streams().await?;
        println!("streams deleted");
    }
    bus.ensure_streams().await?;
    for spec in ALL_CONSUMERS {
        bus.consumer(spec, &config.delivery).await?;
        println!("consumer {} on {}: ready", spec.durable, spec.subject);
    }
    let db = nadir_db::pool(&config.database_url, 1)?;
    let applied = nadir_db::schema::migrate(&db)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail()))?;
    println!("database: {applied} migration(s) applied");
    Ok(())
}

async fn upload(config: &Config, files: &[PathBuf], prefix: &str) -> anyhow::Result<()> {
    let store = ObjectStore::new(&config.s3);
    let bucket = &config.buckets.raw;
    // Ground truth first: transform looks for it when the capture's run reaches it.
    let mut files = files.to_vec();
    files.sort_by_key(|f| !nadir_flows::labels::is_sidecar(&f.to_string_lossy()));
    for file in &files {
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", file.display()))?;
        let key = format!("{prefix}{name}");
        let size = bytes.len();
        let etag = store
            .put(bucket, &key, bytes.into(), "application/octet-stream")
            .await?;
        if nadir_flows::labels::is_sidecar(&key) {
            println!("uploaded s3://{bucket}/{key} ({size} bytes): ground truth for its capture");
            continue;
        }
        let run_id = object_run_id(bucket, &key, &etag);
        println!("uploaded s3://{bucket}/{key} ({size} bytes, ETag {etag}); run {run_id}");
    }
    Ok(())
}

/// Follows `pipeline.done` and `pipeline.dead` until one names the run,
/// checking the audit trail too in case the run ended before we listened.
async fn wait_for(
    config: &Config,
    run_id: Uuid,
    timeout: u64,
) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let bus = Bus::connect(&config.nats_url, "nadir-wait").await?;
    let mut done = bus.client.subscribe(subject::DONE).await?;
    let mut dead = bus.client.subscribe(subject::DEAD).await?;
    let db = nadir_db::pool(&config.database_url, 1)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => bail!("run {run_id} did not finish within {timeout}s"),
            Some(msg) = done.next() => {
                if let Ok(d) = RunDone::decode(&msg.payload)
                    && d.run_id == run_id
                {
                    println!("run {run_id} done: report {}", d.report.uri());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(msg) = dead.next() => {
                if let Ok(d) = RunDead::decode(&msg.payload)
                    && d.run_id == run_id
                {
                    println!("run {run_id} failed in {}: {}", d.stage, shown(&d.error));
                    return Ok(ExitCode::FAILURE);
                }
            }
            _ = poll.tick() => {
                if let Ok(Some(run)) = runs::run(&db, run_id).await {
                    match run.status.as_str() {
                        "succeeded" => {
                            println!("run {run_id} done");
                            return Ok(ExitCode::SUCCESS);
                        }
                        "failed" => {
                            println!("run {run_id} failed in {}: {}", run.error_stage.as_deref().unwrap_or("?"), shown(run.error.as_deref().unwrap_or("")));
                            return Ok(ExitCode::FAILURE);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Text from the audit trail can come from a capture (keys, labels): no
/// control characters reach the terminal.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn seconds(run: &RunSummary) -> String {
    match run.finished_at {
        Some(end) => format!(
            "{:.1}s",
            (end - run.started_at).num_milliseconds() as f64 / 1000.0
        ),
        None => "-".into(),
    }
}

fn print_runs(runs: &[RunSummary]) {
    println!(
        "{:<36}  {:<9}  {:<9}  {:<15}  {:>7}  started",
        "run", "status", "stage", "trigger", "took"
    );
    for r in runs {
        println!(
            "{:<36}  {:<9}  {:<9}  {:<15}  {:>7}  {}",
            r.run_id,
            r.status,
            r.stage,
            shown(&r.trigger),
            seconds(r),
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
}

fn print_status(run: &RunSummary, rows: &[StageRow]) {
    println!("run      {}", run.run_id);
    println!(
        "status   {} (stage {}, trigger {}, took {})",
        run.status,
        run.stage,
        shown(&run.trigger),
        seconds(run)
    );
    if let Some(error) = &run.error {
        println!(
            "error    in {}: {}",
            run.error_stage.as_deref().unwrap_or("?"),
            shown(error)
        );
    }
    println!();
    for row in rows {
        println!(
            "{:<9} {:<9} {:>7.3}s  attempt {}  {}",
            row.stage.name(),
            row.status,
            row.seconds,
            row.attempts,
            shown(&row.item)
        );
        if let Some(outputs) = row.outputs.as_array() {
            for o in outputs {
                println!(
                    "          -> s3://{}/{}  sha256 {}  {} bytes",
                    shown(o["bucket"].as_str().unwrap_or("")),
                    shown(o["key"].as_str().unwrap_or("")),
                    &o["sha256"].as_str().unwrap_or("")
                        [..12.min(o["sha256"].as_str().unwrap_or("").len())],
                    o["size"]
                );
            }
        }
        if let Some(skipped) = row.metrics["skipped"].as_str() {
            println!("          {}", shown(skipped));
        }
        if let Some(error) = &row.error {
            println!("          error: {}", shown(error));
        }
    }
    if let Some(summary) = run.report.as_ref().and_then(|r| r.get("summary")) {
        println!();
        println!(
            "flows    {}  flagged {}",
            summary["rows"], summary["flagged"]
        );
        println!();
        analyze::print_comparison(summary);
        println!();
        let champion = match (
            summary["champion"].as_str(),
            summary["champion_version"].as_str(),
        ) {
            (Some(a), Some(v)) => format!("{a} ({v})"),
            (Some(a), None) => a.to_string(),
            _ => "none".into(),
        };
        println!(
            "decision {}: champion {champion}",
            summary["decision"].as_str().unwrap_or("-")
        );
        if let Some(reason) = summary["reason"].as_str() {
            println!("         {reason}");
        }
    }
}

/// Who changes the registry by hand: `cli:<user>@<host>`.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("cli:{user}@{host}")
}

fn print_models(models: &[registry::RegisteredModel], history: &[registry::ChampionChange]) {
    // Each feature set's champion: its newest history row.
    let mut champions: Vec<(&str, &str, &str)> = Vec::new();
    for c in history {
        if !champions.iter().any(|(set, _, _)| *set == c.feature_set) {
            champions.push((&c.feature_set, &c.algorithm, &c.version));
        }
    }
    println!(
        "{:<2} {:<20} {:<26} {:<16} {:<20} {:>8} {:>9}",
        "", "algorithm", "version", "feature set", "trained", "rows", "fit s"
    );
    for m in models {
        let mark = if champions
            .iter()
            .any(|(_, a, v)| (*a, *v) == (m.algorithm.as_str(), m.version.as_str()))
        {
            "*"
        } else {
            ""
        };
        println!(
            "{:<2} {:<20} {:<26} {:<16} {:<20} {:>8} {:>9}",
            mark,
            shown(&m.algorithm),
            shown(&m.version),
            shown(&m.feature_set),
            m.trained_at.format("%Y-%m-%d %H:%M:%S"),
            m.metrics["rows"].to_string(),
            analyze::fmt_metric(&m.metrics["fit_seconds"])
        );
    }
    println!();
    if history.is_empty() {
        println!("no champion yet (a labelled run promotes one, or `nadir promote`)");
    }
    for c in history {
        println!(
            "{}  {}  {:<8} {} ({})  by {}: {}",
            c.at.format("%Y-%m-%d %H:%M:%S"),
            shown(&c.feature_set),
            c.action,
            shown(&c.algorithm),
            shown(&c.version),
            shown(&c.actor),
            shown(&c.reason)
        );
    }
}
