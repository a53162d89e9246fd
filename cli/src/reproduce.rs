//! `nadir reproduce RUN_ID`: replays a finished run from what the audit
//! trail recorded (the messages each stage worked from, the parameters of
//! every model, the artifacts' hashes) with the workers' own functions, and
//! checks that every SILVER partition, model file, score file and report
//! comes out identical. Prints each check, and what differs.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};
use nadir_config::Config;
use nadir_contract::layout::{self, ArtifactRef, Manifest};
use nadir_contract::messages::{EvalJob, TransformJob};
use nadir_contract::params::{EvalParams, ModelParams, TransformParams};
use nadir_contract::stage::StageKind;
use nadir_db::registry;
use nadir_db::{jobs, runs};
use nadir_detectors::{Model, ModelSpec};
use nadir_pipeline::eval::{Scorer, evaluate};
use nadir_pipeline::report::EvalReport;
use nadir_pipeline::train::{Fitted, fit, training_dataset};
use nadir_pipeline::transform;
use nadir_store::ObjectStore;
use serde_json::Value;
use uuid::Uuid;

/// One comparison: what was checked, and the difference if any.
struct Check {
    what: String,
    difference: Option<String>,
}

impl Check {
    fn hashes(what: String, recorded: &str, now: &str) -> Check {
        Check {
            what,
            difference: (recorded != now)
                .then(|| format!("recorded sha256 {recorded}, reproduced {now}")),
        }
    }
}

/// Replays the run; returns whether everything matched.
pub async fn reproduce(config: &Config, run_id: Uuid) -> anyhow::Result<bool> {
    let db = nadir_db::pool(&config.database_url, 2)?;
    let store = ObjectStore::new(&config.s3);
    let detail = |e: nadir_db::DbError| anyhow!(e.detail());
    let run = runs::run(&db, run_id)
        .await
        .map_err(detail)?
        .ok_or_else(|| anyhow!("no run {run_id} in the audit trail"))?;
    if run.status != "succeeded" {
        bail!(
            "run {run_id} is {}; only a succeeded run can be reproduced",
            run.status
        );
    }
    let rows = runs::stage_rows(&db, run_id).await.map_err(detail)?;
    let request = |stage| {
        let db = &db;
        async move {
            jobs::job_request(db, run_id, stage)
                .await
                .map_err(|e| anyhow!(e.detail()))?
                .ok_or_else(|| anyhow!("the run has no succeeded {} job", stage.name()))
        }
    };
    let mut checks = Vec::new();

    // Transform: each RAW object to SILVER again.
    let transform: TransformJob = serde_json::from_value(request(StageKind::Transform).await?)
        .context("the recorded pipeline.transform message")?;
    for row in rows.iter().filter(|r| r.stage == StageKind::Transform) {
        let object = transform
            .raw
            .iter()
            .find(|o| o.version == row.item)
            .ok_or_else(|| anyhow!("no RAW object {} in the transform message", row.item))?;
        let [recorded, manifest]: [ArtifactRef; 2] = serde_json::from_value(row.outputs.clone())
            .with_context(|| format!("the outputs of transformation {}", row.item))?;
        let manifest: Manifest =
            serde_json::from_slice(&store.get(&manifest.bucket, &manifest.key).await?)?;
        let sidecar = match manifest
            .inputs
            .iter()
            .find(|i| i.key.ends_with(nadir_flows::labels::SIDECAR_SUFFIX))
        {
            Some(s) => Some(store.get(&s.bucket, &s.key).await?),
            None => None,
        };
        let bytes = store.get(&config.buckets.raw, &object.key).await?;
        let params: TransformParams = serde_json::from_value(row.parameters.clone())
            .with_context(|| format!("the parameters of transformation {}", row.item))?;
        let meter = transform::recorded_meter(&params);
        // Reproducing reads what was accepted once: no input limit applies.
        let unlimited = transform::Limits::unlimited();
        let now = transform::transform_object(object, &bytes, sidecar.as_deref(), meter, unlimited)
            .map_err(|e| anyhow!("{}: {e}", object.key))?;
        checks.push(Check::hashes(
            format!("SILVER {}", recorded.uri()),
            &recorded.sha256,
            &layout::sha256_hex(&now.parquet),
        ));
    }

    // Train: every model again, from its recorded spec and window.
    let eval: EvalJob = serde_json::from_value(request(StageKind::Eval).await?)
        .context("the recorded pipeline.eval message")?;
    let training = if eval.training_silver.is_empty() {
        eval.silver.clone()
    } else {
        eval.training_silver.clone()
    };
    let mut parquet = Vec::new();
    for p in &training {
        parquet.push(store.get(&p.flows.bucket, &p.flows.key).await?);
    }
    let row = rows
        .iter()
        .find(|r| r.stage == StageKind::Eval)
        .ok_or_else(|| anyhow!("the run has no evaluation row"))?;
    let params: EvalParams = serde_json::from_value(row.parameters.clone())
        .context("the parameters of the evaluation")?;
    let data = training_dataset(
        &training,
        &parquet,
        eval.holdout,
        &eval.silver,
        &params.behaviour,
    )
    .map_err(anyhow::Error::msg)?;
    let mut refit: HashMap<String, Model> = HashMap::new();
    for row in rows.iter().filter(|r| r.stage == StageKind::Train) {
        let outputs: Vec<ArtifactRef> = serde_json::from_value(row.outputs.clone())
            .with_context(|| format!("the outputs of training {}", row.item))?;
        let Some(recorded) = outputs.into_iter().next() else {
            continue; // a detector recorded as skipped
        };
        let params: ModelParams<ModelSpec> = serde_json::from_value(row.parameters.clone())
            .with_context(|| format!("the recorded parameters of {}", row.item))?;
        let spec = params.spec;
        let model = match fit(&spec, &data).map_err(anyhow::Error::msg)? {
            Fitted::Model { model, .. } => *model,
            Fitted::Skipped(reason) => bail!("{}: {reason}", row.item),
        };
        checks.push(Check::hashes(
            format!("model {}", recorded.uri()),
            &recorded.sha256,
            &layout::sha256_hex(&model.to_bytes()),
        ));
        refit.insert(row.item.clone(), model);
    }

    // Eval: the same scorers (the refitted models, and the champion of the
    // day from the registry) on the same flows, with the feedback as it
    // stood when the evaluation started.
    // The report and the scores first, then the findings (runs evaluated
    // since findings exist) and the manifest.
    let outputs: Vec<ArtifactRef> =
        serde_json::from_value(row.outputs.clone()).context("the outputs of the evaluation")?;
    let [report_ref, recorded_scores] = [0, 1].map(|i| outputs.get(i).cloned());
    let (Some(report_ref), Some(recorded_scores)) = (report_ref, recorded_scores) else {
        return Err(anyhow!(
            "the evaluation recorded {} outputs, not a report and scores",
            outputs.len()
        ));
    };
    let mut recorded_report: EvalReport =
        serde_json::from_slice(&store.get(&report_ref.bucket, &report_ref.key).await?)
            .with_context(|| format!("reading the recorded report {}", report_ref.uri()))?;
    let mut champion = None;
    // The champion the run was held against (scored or not).
    if let Some((algorithm, version)) = &recorded_report.champion {
        let entry = registry::model(&db, algorithm, version)
            .await
            .map_err(detail)?
            .ok_or_else(|| {
                anyhow!("the champion {algorithm} ({version}) is gone from the registry")
            })?;
        let bytes = store.get(&entry.model.bucket, &entry.model.key).await?;
        champion = Some((Model::from_bytes(&bytes)?, version.to_string()));
    }
    let mut scorers = Vec::new();
    for m in &eval.models {
        let model = refit
            .get(&m.algorithm)
            .ok_or_else(|| anyhow!("{} was evaluated but not trained in this run", m.algorithm))?;
        scorers.push(Scorer {
            model,
            version: m.model.version.clone(),
            champion: false,
        });
    }
    if let Some((model, version)) = &champion {
        scorers.push(Scorer {
            model,
            version: version.clone(),
            champion: true,
        });
    }
    let mut partitions = Vec::new();
    for p in &eval.silver {
        partitions.push(store.get(&p.flows.bucket, &p.flows.key).await?);
    }
    let raw_versions: Vec<String> = eval.silver.iter().map(|p| p.raw_version.clone()).collect();
    let feedback = nadir_db::feedback::labels(&db, &raw_versions, Some(row.started_at))
        .await
        .map_err(detail)?;
    let mut evaluation =
        evaluate(&eval, &partitions, &scorers, &feedback, &params).map_err(anyhow::Error::msg)?;
    let (scores, findings) = evaluation.parquet().map_err(anyhow::Error::msg)?;
    let scores_sha = layout::sha256_hex(&scores);
    checks.push(Check::hashes(
        format!("scores {}", recorded_scores.uri()),
        &recorded_scores.sha256,
        &scores_sha,
    ));
    let mut report = evaluation.report;
    report.version = recorded_report.version.clone();
    report.scores = Some(ArtifactRef {
        sha256: scores_sha,
        size: scores.len() as u64,
        ..recorded_scores.clone()
    });
    // Runs evaluated before findings existed have none to compare.
    if let Some(recorded) = &recorded_report.findings {
        let sha = layout::sha256_hex(&findings);
        checks.push(Check::hashes(
            format!("findings {}", recorded.uri()),
            &recorded.sha256,
            &sha,
        ));
        report.findings = Some(ArtifactRef {
            sha256: sha,
            size: findings.len() as u64,
            ..recorded.clone()
        });
    }
    // A timing, not a result.
    recorded_report.seconds = None;
    let mut differences = Vec::new();
    diff(
        "",
        &serde_json::to_value(&recorded_report)?,
        &serde_json::to_value(&report)?,
        &mut differences,
    );
    checks.push(Check {
        what: "report: every metric, threshold, decision".into(),
        difference: (!differences.is_empty()).then(|| differences.join("; ")),
    });

    let mut identical = true;
    for c in &checks {
        match &c.difference {
            None => println!("identical  {}", c.what),
            Some(d) => {
                identical = false;
                println!("DIFFERS    {}: {d}", c.what);
            }
        }
    }
    println!();
    if identical {
        println!(
            "run {run_id} reproduced: {} artifacts identical",
            checks.len()
        );
    } else {
        println!("run {run_id} did not reproduce");
    }
    Ok(identical)
}

/// The JSON paths where `a` and `b` differ (at most 20).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 20 {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                diff(
                    &format!("{path}.{k}"),
                    v,
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: not recorded, reproduced {}", y[k]));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if a != b => out.push(format!("{path}: recorded {a}, reproduced {b}")),
        _ => {}
    }
}
