//! `nadir analyze`: the transform, train and eval stages in one process on
//! local files, with no service. It calls the very functions the workers
//! call (`nadir_transform::transform_object`, `nadir_train::fit`,
//! `nadir_eval::evaluate`) and writes the same artifacts, with their
//! manifests, under one directory instead of the buckets:
//!
//! ```text
//! DIR/silver/<raw version>/flows.parquet, manifest.json
//! DIR/models/<algorithm>/model.json, manifest.json
//! DIR/eval/report.json, scores.parquet, manifest.json
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nadir_common::config::Analysis;
use nadir_common::layout::{self, ArtifactRef, Manifest};
use nadir_common::messages::{EvalJob, RawObject, SCHEMA_VERSION, SilverPartition, TrainedModel};
use nadir_eval::{Scorer, evaluate};
use nadir_flows::FlowTable;
use nadir_flows::labels::SIDECAR_SUFFIX;
use nadir_flows::table::write_parquet;
use nadir_train::{Fitted, fit, model_metrics, model_parameters, model_specs, training_dataset};
use serde_json::json;
use uuid::Uuid;

/// Where artifacts go: `DIR` stands for the buckets.
const LOCAL: &str = "local";

struct Partition {
    silver: SilverPartition,
    parquet: bytes::Bytes,
}

/// Runs the three stages; returns the report.
pub fn analyze(
    inputs: &[PathBuf],
    train: &[PathBuf],
    eval: &[PathBuf],
    out: &Path,
    analysis: &Analysis,
) -> anyhow::Result<serde_json::Value> {
    let train = if train.is_empty() { inputs } else { train };
    let eval = if eval.is_empty() { inputs } else { eval };
    if train.is_empty() || eval.is_empty() {
        bail!("give at least one input file (or --train and --eval)");
    }
    let mut all: Vec<&PathBuf> = inputs.iter().chain(train).chain(eval).collect();
    all.sort();
    all.dedup();
    // One run id for the same inputs: the manifests name it.
    let mut hashes = Vec::new();
    let mut partitions: HashMap<&PathBuf, Partition> = HashMap::new();
    for path in &all {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        hashes.push(layout::sha256_hex(&bytes));
        let partition =
            silver(path, bytes, out, analysis).with_context(|| format!("{}", path.display()))?;
        partitions.insert(path, partition);
    }
    let run_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, hashes.join("+").as_bytes());
    let version = layout::version(chrono::Utc::now(), &run_id.to_string());
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
    let data = training_dataset(&training, &training_parquet, analysis.window.holdout)
        .map_err(anyhow::Error::msg)?;
    let inputs: Vec<ArtifactRef> = training.iter().map(|p| p.flows.clone()).collect();
    let mut models = Vec::new();
    let mut trained = Vec::new();
    for spec in model_specs(analysis).map_err(anyhow::Error::msg)? {
        let algorithm = spec.detector.algorithm().to_string();
        let (model, seconds, peak_bytes) = match fit(&spec, &data).map_err(anyhow::Error::msg)? {
            Fitted::Model {
                model,
                seconds,
                peak_bytes,
            } => (model, seconds, peak_bytes),
            Fitted::Skipped(reason) => {
                eprintln!("{algorithm}: {reason}");
                continue;
            }
        };
        let dir = out.join("models").join(&algorithm);
        let model_ref = write(&dir, "model.json", &model.to_bytes(), &version)?;
        let parameters = model_parameters(&spec, &training, &analysis.window);
        let metrics = model_metrics(&model, data.rows(), seconds, peak_bytes);
        let manifest = Manifest::new(
            "model",
            run_id,
            &version,
            inputs.clone(),
            vec![model_ref.clone()],
            parameters,
            metrics,
        );
        let manifest_ref = write(&dir, "manifest.json", &manifest.to_json(), &version)?;
        trained.push(TrainedModel {
            algorithm,
            model: model_ref,
            manifest: manifest_ref,
        });
        models.push(*model);
    }
    if models.is_empty() {
        bail!("none of the configured detectors could be fitted on these flows");
    }

    // Evaluate.
    let job = EvalJob {
        schema: SCHEMA_VERSION,
        run_id,
        silver: evaluated,
        models: trained.clone(),
        training_silver: training,
        holdout: analysis.window.holdout,
    };
    let scorers: Vec<Scorer> = models
        .iter()
        .map(|model| Scorer {
            model,
            version: version.clone(),
            champion: false,
        })
        .collect();
    let mut evaluation = evaluate(
        &job,
        &evaluated_parquet,
        &scorers,
        &HashMap::new(),
        analysis.contamination,
        &analysis.selection_metric,
    )
    .map_err(anyhow::Error::msg)?;
    let dir = out.join("eval");
    let parquet = write_parquet(&mut evaluation.scores)?;
    let scores_ref = write(&dir, "scores.parquet", &parquet, &version)?;
    let mut report = evaluation.report;
    report["version"] = json!(version);
    report["scores"] = json!(scores_ref);
    let report_ref = write(
        &dir,
        "report.json",
        &serde_json::to_vec_pretty(&report)?,
        &version,
    )?;
    let mut inputs: Vec<ArtifactRef> = job.silver.iter().map(|p| p.flows.clone()).collect();
    inputs.extend(trained.iter().map(|m| m.model.clone()));
    let manifest = Manifest::new(
        "eval",
        run_id,
        &version,
        inputs,
        vec![report_ref, scores_ref],
        json!({ "contamination": analysis.contamination }),
        json!({ "rows": evaluation.rows, "summary": evaluation.summary }),
    );
    write(&dir, "manifest.json", &manifest.to_json(), &version)?;
    Ok(json!({ "report": report, "summary": evaluation.summary }))
}

/// A local file to a SILVER partition written under `out/silver/`.
fn silver(
    path: &Path,
    bytes: Vec<u8>,
    out: &Path,
    analysis: &Analysis,
) -> anyhow::Result<Partition> {
    let sha256 = layout::sha256_hex(&bytes);
    let raw_version = format!("local-{}", &sha256[..16]);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let raw = ArtifactRef {
        bucket: LOCAL.into(),
        key: path.display().to_string(),
        version: raw_version.clone(),
        sha256: sha256.clone(),
        size: bytes.len() as u64,
    };
    let dir = out.join("silver").join(&raw_version);
    let (parquet, features, rows, read) = if bytes.starts_with(b"PAR1") {
        // Already flows (`nadir flows` output, a SILVER partition).
        let table = FlowTable::from_parquet(&bytes, &parquet_features(&bytes)?)?;
        (
            bytes,
            table.features.clone(),
            table.rows() as u64,
            json!({ "rows": table.rows() }),
        )
    } else {
        let detected = nadir_flows::format::detect(&bytes[..bytes.len().min(64 * 1024)])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let object = RawObject {
            key: name.clone(),
            etag: String::new(),
            version: raw_version.clone(),
            sha256: sha256.clone(),
            size: bytes.len() as u64,
            format: detected.to_string(),
            manifest: raw.clone(),
        };
        let sidecar = PathBuf::from(format!("{}{SIDECAR_SUFFIX}", path.display()));
        let labels = std::fs::read(&sidecar).ok();
        let meter = nadir_transform::meter_config(analysis);
        let transformed =
            nadir_transform::transform_object(&object, &bytes, labels.as_deref(), meter)
                .map_err(anyhow::Error::msg)?;
        (
            transformed.parquet,
            transformed.silver.features,
            transformed.silver.rows,
            transformed.metrics,
        )
    };
    let flows = write(&dir, "flows.parquet", &parquet, &raw_version)?;
    let manifest = Manifest::new(
        "silver",
        Uuid::nil(),
        &raw_version,
        vec![raw],
        vec![flows.clone()],
        json!({ "features": features, "flow_idle_timeout_s": analysis.flow_idle_timeout.as_secs(), "flow_active_timeout_s": analysis.flow_active_timeout.as_secs() }),
        json!({ "rows": rows, "read": read }),
    );
    let manifest = write(&dir, "manifest.json", &manifest.to_json(), &raw_version)?;
    Ok(Partition {
        silver: SilverPartition {
            raw_version,
            features,
            flows,
            manifest,
            rows,
        },
        parquet: parquet.into(),
    })
}

/// The feature columns of a flows Parquet file: its Float64 columns.
fn parquet_features(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let frame = nadir_flows::table::read_parquet(bytes)?;
    let features: Vec<String> = frame
        .columns()
        .iter()
        .filter(|c| c.dtype() == &polars::prelude::DataType::Float64)
        .map(|c| c.name().to_string())
        .collect();
    if features.is_empty() {
        bail!("the Parquet file has no Float64 feature columns");
    }
    Ok(features)
}

/// Writes `bytes` to `dir/name`; the reference names the path as its key.
fn write(dir: &Path, name: &str, bytes: &[u8], version: &str) -> anyhow::Result<ArtifactRef> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(ArtifactRef::of(
        LOCAL,
        path.display().to_string(),
        version,
        bytes,
    ))
}

/// The comparison table `nadir analyze` and `nadir status` print.
pub fn print_comparison(summary: &serde_json::Value) {
    println!(
        "{:<34} {:>8} {:>8} {:>10}",
        "model", "flagged", "ROC-AUC", "avg prec"
    );
    if let Some(detectors) = summary["detectors"].as_array() {
        for d in detectors {
            println!(
                "{:<34} {:>8} {:>8} {:>10}",
                d["name"].as_str().or(d["algorithm"].as_str()).unwrap_or(""),
                d["flagged"].to_string(),
                fmt_metric(&d["roc_auc"]),
                fmt_metric(&d["average_precision"])
            );
        }
    }
}

pub fn fmt_metric(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.4}"))
        .unwrap_or_else(|| "-".into())
}
