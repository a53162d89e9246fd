//! `nadir analyze`: the transform, train and eval stages in one process on
//! local files, with no service. It calls the stage cores the workers call
//! (`nadir_pipeline::{transform, train, eval}`) with the same typed
//! parameters, and writes the same artifacts and manifests through a
//! directory sink laid out like the buckets:
//!
//! ```text
//! DIR/silver/flows/<raw version>/<version>/flows.parquet, manifest.json
//! DIR/models/<algorithm>/<version>/model.json, manifest.json
//! DIR/eval/<version>/report.json, scores.parquet, manifest.json
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nadir_contract::layout::{self, ArtifactRef, Layer};
use nadir_contract::messages::{EvalJob, RawObject, SCHEMA_VERSION, SilverPartition};
use nadir_flows::format::SNIFF_LEN;
use nadir_flows::labels::SIDECAR_SUFFIX;
use nadir_pipeline::Analysis;
use nadir_pipeline::eval::{EvalOf, Scorer, evaluate};
use nadir_pipeline::report::{EvalReport, RunFigures};
use nadir_pipeline::train::{self, training_dataset};
use nadir_pipeline::transform::{self, SilverOf};
use nadir_store::sink::{ArtifactSink, DirSink, Product, write};
use uuid::Uuid;

/// Where RAW files are named from: `DIR` stands for the buckets.
const LOCAL: &str = "local";

struct Partition {
    silver: SilverPartition,
    parquet: bytes::Bytes,
}

/// What `nadir analyze` made: the report as written and its figures.
pub struct Analyzed {
    pub report: EvalReport,
    pub summary: RunFigures,
}

/// Runs the three stages; returns the report and its summary.
pub async fn analyze(
    inputs: &[PathBuf],
    train: &[PathBuf],
    eval: &[PathBuf],
    out: &Path,
    analysis: &Analysis,
) -> anyhow::Result<Analyzed> {
    let train = if train.is_empty() { inputs } else { train };
    let eval = if eval.is_empty() { inputs } else { eval };
    if train.is_empty() || eval.is_empty() {
        bail!("give at least one input file (or --train and --eval)");
    }
    let sink = DirSink {
        root: out.to_path_buf(),
    };
    let mut all: Vec<&PathBuf> = inputs.iter().chain(train).chain(eval).collect();
    all.sort();
    all.dedup();
    // One run id for the same inputs: the manifests name it.
    let mut hashes = Vec::new();
    for path in &all {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        hashes.push(layout::sha256_hex(&bytes));
    }
    let run_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, hashes.join("+").as_bytes());
    let version = layout::version(chrono::Utc::now(), &run_id.to_string());
    let mut partitions: HashMap<&PathBuf, Partition> = HashMap::new();
    for path in &all {
        let partition = silver(&sink, path, run_id, &version, analysis)
            .await
            .with_context(|| format!("{}", path.display()))?;
        partitions.insert(path, partition);
    }
    let pick = |paths: &[PathBuf]| -> Vec<(SilverPartition, bytes::Bytes)> {
        paths
            .iter()
            .map(|p| {
                let part = &partitions[p];
                (part.silver.clone(), part.parquet.clone())
            })
            .collect()
    };
    let (training, training_parquet): (Vec<_>, Vec<_>) = pick(train).into_iter().unzip();
    let (evaluated, evaluated_parquet): (Vec<_>, Vec<_>) = pick(eval).into_iter().unzip();

    // Train.
    let window = &analysis.window;
    let params = nadir_pipeline::eval::params(analysis);
    let data = training_dataset(
        &training,
        &training_parquet,
        window.holdout,
        &evaluated,
        &params.behaviour,
    )
    .map_err(anyhow::Error::msg)?;
    let outcomes = train::train(analysis, &data, &training, window, run_id, &version)
        .map_err(anyhow::Error::msg)?;
    let mut models = Vec::new();
    let mut trained = Vec::new();
    for outcome in outcomes {
        match outcome {
            train::Outcome::Skipped(record) => {
                eprintln!("{}: {}", record.item, record.metrics["skipped"]);
            }
            train::Outcome::Fitted { model, product } => {
                let written = write(&sink, product).await?;
                let (model_ref, _) =
                    train::trained(model.algorithm().name(), &training[0].features, &written);
                trained.push(model_ref);
                models.push(*model);
            }
        }
    }

    // Evaluate.
    let job = EvalJob {
        schema: SCHEMA_VERSION,
        run_id,
        silver: evaluated,
        models: trained,
        training_silver: training,
        holdout: window.holdout,
    };
    let scorers: Vec<Scorer> = models
        .iter()
        .map(|model| Scorer {
            model,
            version: version.clone(),
            champion: false,
        })
        .collect();
    let started = std::time::Instant::now();
    let mut evaluation = evaluate(&job, &evaluated_parquet, &scorers, &HashMap::new(), &params)
        .map_err(anyhow::Error::msg)?;
    let (parquet, findings_parquet) = evaluation.parquet().map_err(anyhow::Error::msg)?;
    let scores = sink.reference(
        Layer::Eval,
        &layout::eval_scores_key(&version),
        &version,
        &parquet,
    );
    let findings = sink.reference(
        Layer::Eval,
        &layout::eval_findings_key(&version),
        &version,
        &findings_parquet,
    );
    let (product, report) = EvalOf {
        run_id,
        version: &version,
        job: &job,
        params: &params,
        scores,
        findings,
        seconds: started.elapsed().as_secs_f64(),
    }
    .product(&evaluation, parquet, findings_parquet);
    write(&sink, product).await?;
    Ok(Analyzed {
        report,
        summary: evaluation.summary,
    })
}

/// A local file to a SILVER partition, written by the transform core.
async fn silver(
    sink: &DirSink,
    path: &Path,
    run_id: Uuid,
    version: &str,
    analysis: &Analysis,
) -> anyhow::Result<Partition> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = layout::sha256_hex(&bytes);
    let raw_version = format!("local-{}", &sha256[..16]);
    let raw = ArtifactRef {
        bucket: LOCAL.into(),
        key: path.display().to_string(),
        version: raw_version.clone(),
        sha256: sha256.clone(),
        size: bytes.len() as u64,
    };
    let meter = transform::meter_config(analysis);
    let format = nadir_flows::format::detect(&bytes[..bytes.len().min(SNIFF_LEN)])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let object = RawObject {
        key: path.display().to_string(),
        etag: String::new(),
        version: raw_version.clone(),
        sha256: sha256.clone(),
        sha256_from: Default::default(),
        size: bytes.len() as u64,
        format,
        manifest: raw.clone(),
    };
    // The ground truth beside the file, as `<file>.labels.csv` beside a RAW
    // key, held to the same limits.
    let file = PathBuf::from(format!("{}{SIDECAR_SUFFIX}", path.display()));
    let opened = transform::sidecar_key(&object).and_then(|_| std::fs::File::open(&file).ok());
    let sidecar = match opened {
        Some(opened) => {
            let name = file.display().to_string();
            Some((
                file,
                transform::read_sidecar(&name, opened, analysis.limits)?,
            ))
        }
        None => None,
    };
    let labels = sidecar.as_ref().map(|(_, l)| &l[..]);
    let transformed = transform::transform_object(&object, &bytes, labels, meter, analysis.limits)
        .map_err(anyhow::Error::msg)?;
    let sidecar_ref = sidecar
        .map(|(file, labels)| transform::sidecar_ref(LOCAL, file.display().to_string(), &labels));
    let (features, rows) = (transformed.silver.features.clone(), transformed.silver.rows);
    let parquet: bytes::Bytes = transformed.parquet.clone().into();
    let product: Product = SilverOf {
        run_id,
        version,
        object: &object,
        raw,
        sidecar: sidecar_ref,
        meter,
        seconds: started.elapsed().as_secs_f64(),
    }
    .product(transformed);
    let written = write(sink, product).await?;
    Ok(Partition {
        silver: transform::partition(&object, features, rows, &written),
        parquet,
    })
}
