//! The eval stage: SILVER partitions and models in, a report and per-flow
//! scores out, and the run's `pipeline.done`.
//!
//! Every model scores every flow of the run. Each model's operating
//! threshold was placed on its training scores (flagging the
//! `NADIR_CONTAMINATION` share of them); the group detector also names the
//! hosts it singled out. Where the flows carry
//! labels, ROC-AUC, average precision and precision/recall/F1 at the
//! threshold say how well each detector did, and the detector with the best
//! average precision is named champion. Writes `eval/<version>/report.json`,
//! `eval/<version>/scores.parquet` and their manifest.

use std::time::Instant;

use nadir_common::audit::{AuditRecord, StageKind};
use nadir_common::layout::{self, ArtifactRef, Manifest};
use nadir_common::messages::{EvalJob, RunDone, SCHEMA_VERSION, subject};
use nadir_common::stage::{JobContext, Outcome, Stage, StageError, compute};
use nadir_detectors::model::ScoreSummary;
use nadir_detectors::{Model, metrics};
use nadir_flows::FlowTable;
use nadir_flows::table::{FLOW_ID, LABEL, write_parquet};
use polars::prelude::*;
use serde_json::{Value, json};

pub struct Eval;

/// Labels that mean "not an attack"; any other label is an attack.
const BENIGN: [&str; 4] = ["normal", "benign", "0", "false"];

pub fn is_attack(label: &str) -> bool {
    !BENIGN.contains(&label.trim().to_ascii_lowercase().as_str())
}

/// Loads a model file, checking it holds the algorithm the message names.
pub fn load_model(algorithm: &str, bytes: &[u8]) -> Result<Model, String> {
    let model = Model::from_bytes(bytes).map_err(|e| e.to_string())?;
    if model.algorithm() != algorithm {
        return Err(format!(
            "the message names {algorithm:?} but the file holds {:?}",
            model.algorithm()
        ));
    }
    Ok(model)
}

/// What evaluation computed: the scores table and the report (pure).
pub struct Evaluation {
    pub scores: DataFrame,
    pub report: Value,
    pub summary: Value,
    pub rows: u64,
}

/// Scores every partition with every model and compares the models.
pub fn evaluate(
    job: &EvalJob,
    partitions: &[bytes::Bytes],
    models: &[Model],
    contamination: f64,
) -> Result<Evaluation, String> {
    let mut raw_versions: Vec<String> = Vec::new();
    let mut flow_ids: Vec<u64> = Vec::new();
    let mut labels: Vec<Option<String>> = Vec::new();
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); models.len()];
    let mut hosts: Vec<Vec<Value>> = vec![Vec::new(); models.len()];
    let mut labelled = true;
    for (partition, bytes) in job.silver.iter().zip(partitions) {
        let table = FlowTable::from_parquet(bytes, &partition.features)
            .map_err(|e| format!("{}: {e}", partition.flows.uri()))?;
        let data = table.dataset().map_err(|e| e.to_string())?;
        for (i, model) in models.iter().enumerate() {
            let failed = |e| format!("{}: {e}", model.algorithm());
            match model.analyze_hosts(&data).map_err(failed)? {
                Some(analysis) => {
                    scores[i].extend(analysis.flow_scores.iter());
                    hosts[i].push(json!({
                        "raw_version": partition.raw_version,
                        "source_hosts": analysis.source_hosts,
                        "buckets": analysis.buckets,
                        "outlying": analysis.hosts,
                        "notes": analysis.notes,
                    }));
                }
                None => scores[i].extend(model.score(&data).map_err(failed)?.iter()),
            }
        }
        raw_versions.extend(std::iter::repeat_n(
            partition.raw_version.clone(),
            table.rows(),
        ));
        flow_ids.extend(table.flow_ids());
        match table.labels() {
            Some(l) => labels.extend(l),
            None => {
                labelled = false;
                labels.extend(std::iter::repeat_n(None, table.rows()));
            }
        }
    }
    let rows = flow_ids.len();
    let positive: Vec<bool> = labels
        .iter()
        .map(|l| l.as_deref().is_some_and(is_attack))
        .collect();
    labelled &= labels.iter().all(Option::is_some);

    let mut columns = vec![
        Column::new("raw_version".into(), &raw_versions),
        Column::new(FLOW_ID.into(), &flow_ids),
    ];
    let mut detectors = Vec::new();
    let mut champion: Option<(String, f64)> = None;
    let mut any_flagged = vec![false; rows];
    for ((model, s), hosts) in models.iter().zip(&scores).zip(&hosts) {
        let algorithm = model.algorithm();
        let threshold = model.threshold();
        let mut sorted = s.clone();
        sorted.sort_by(f64::total_cmp);
        let flagged: Vec<bool> = s.iter().map(|v| *v > threshold).collect();
        for (any, f) in any_flagged.iter_mut().zip(&flagged) {
            *any |= *f;
        }
        let mut entry = json!({
            "algorithm": algorithm,
            "threshold": threshold,
            "threshold_rule": model.metadata.threshold_rule,
            "training_scores": model.metadata.training_scores,
            "flagged": flagged.iter().filter(|f| **f).count(),
            "score_quantiles": ScoreSummary::of(&sorted),
        });
        if !hosts.is_empty() {
            entry["hosts"] = json!(hosts);
        }
        if labelled {
            let auc = metrics::roc_auc(s, &positive);
            let ap = metrics::average_precision(s, &positive);
            let (precision, recall, f1) = metrics::precision_recall_f1(s, &positive, threshold);
            entry["roc_auc"] = json!(auc);
            entry["average_precision"] = json!(ap);
            entry["precision"] = json!(precision);
            entry["recall"] = json!(recall);
            entry["f1"] = json!(f1);
            if let Some(ap) = ap
                && champion.as_ref().is_none_or(|(_, best)| ap > *best)
            {
                champion = Some((algorithm.to_string(), ap));
            }
        }
        detectors.push(entry);
        columns.push(Column::new(format!("score_{algorithm}").into(), s));
    }
    columns.push(Column::new("flagged".into(), &any_flagged));
    if labelled {
        columns.push(Column::new(LABEL.into(), &labels));
    }
    let scores = DataFrame::new(rows, columns).map_err(|e| e.to_string())?;
    let flagged = any_flagged.iter().filter(|f| **f).count();
    let attacks = positive.iter().filter(|p| **p).count();
    let selection = match &champion {
        Some((algorithm, ap)) => json!({
            "champion": algorithm,
            "reason": format!("best average precision on this run's labelled flows ({ap:.4})"),
        }),
        None => json!({
            "champion": Value::Null,
            "reason": "no labels in this run's flows: nothing to compare the detectors on",
        }),
    };
    let report = json!({
        "run_id": job.run_id,
        "rows": rows,
        "partitions": job.silver.iter().map(|p| json!({"raw_version": p.raw_version, "flows": p.flows, "rows": p.rows})).collect::<Vec<_>>(),
        "contamination": contamination,
        "labelled": labelled,
        "attacks": if labelled { json!(attacks) } else { Value::Null },
        "flagged": flagged,
        "detectors": detectors,
        "selection": selection,
    });
    let summary = json!({
        "rows": rows,
        "flagged": flagged,
        "champion": champion.as_ref().map(|(a, _)| a.clone()),
        "detectors": report["detectors"].as_array().unwrap().iter().map(|d| json!({
            "algorithm": d["algorithm"],
            "roc_auc": d.get("roc_auc"),
            "average_precision": d.get("average_precision"),
            "flagged": d["flagged"],
        })).collect::<Vec<_>>(),
    });
    Ok(Evaluation {
        scores,
        report,
        summary,
        rows: rows as u64,
    })
}

impl Stage for Eval {
    const KIND: StageKind = StageKind::Eval;
    const NEXT_SUBJECT: &'static str = subject::DONE;
    type Input = EvalJob;
    type Output = RunDone;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        job: &EvalJob,
    ) -> Result<Outcome<RunDone>, StageError> {
        let services = ctx.services;
        let bucket = &services.config.buckets.eval;
        if job.silver.is_empty() || job.models.is_empty() {
            return Err(StageError::Rejected(
                "pipeline.eval needs SILVER partitions and models".into(),
            ));
        }
        let mut partitions = Vec::new();
        for p in &job.silver {
            partitions.push(services.store.get(&p.flows.bucket, &p.flows.key).await?);
        }
        let mut models = Vec::new();
        for m in &job.models {
            let bytes = services.store.get(&m.model.bucket, &m.model.key).await?;
            if layout::sha256_hex(&bytes) != m.model.sha256 {
                return Err(StageError::Rejected(format!(
                    "{}: model file does not match its recorded sha256",
                    m.model.uri()
                )));
            }
            models.push(
                load_model(&m.algorithm, &bytes)
                    .map_err(|e| StageError::Rejected(format!("{}: {e}", m.model.uri())))?,
            );
        }
        let bytes_read = partitions.iter().map(|b| b.len() as u64).sum();
        let started = Instant::now();
        let (owned_job, contamination) = (job.clone(), services.config.contamination);
        let evaluation = compute(move || {
            let mut e = evaluate(&owned_job, &partitions, &models, contamination)?;
            let parquet = write_parquet(&mut e.scores).map_err(|e| e.to_string())?;
            Ok::<_, String>((e, parquet))
        })
        .await?
        .map_err(StageError::Rejected)?;
        let (evaluation, scores_parquet) = evaluation;
        let seconds = started.elapsed().as_secs_f64();

        let scores_key = layout::eval_scores_key(ctx.version);
        let scores_ref = services
            .store
            .put_artifact(
                bucket,
                scores_key,
                ctx.version,
                scores_parquet,
                "application/vnd.apache.parquet",
            )
            .await?;
        let mut report = evaluation.report;
        report["version"] = json!(ctx.version);
        report["scores"] = json!(scores_ref);
        report["seconds"] = json!(seconds);
        let report_bytes = serde_json::to_vec_pretty(&report).expect("reports serialize");
        let report_key = layout::eval_report_key(ctx.version);
        let report_ref = services
            .store
            .put_artifact(
                bucket,
                report_key,
                ctx.version,
                report_bytes,
                "application/json",
            )
            .await?;

        let mut inputs: Vec<ArtifactRef> = job.silver.iter().map(|p| p.flows.clone()).collect();
        inputs.extend(job.models.iter().map(|m| m.model.clone()));
        let parameters = json!({ "contamination": services.config.contamination });
        let metrics =
            json!({ "rows": evaluation.rows, "seconds": seconds, "summary": evaluation.summary });
        let manifest = Manifest::new(
            "eval",
            ctx.run_id,
            ctx.version,
            inputs.clone(),
            vec![report_ref.clone(), scores_ref.clone()],
            parameters.clone(),
            metrics.clone(),
        );
        let manifest_ref = services
            .store
            .put_manifest(bucket, layout::eval_manifest_key(ctx.version), &manifest)
            .await?;
        Ok(Outcome {
            records: vec![AuditRecord {
                item: "run".into(),
                inputs: json!(inputs),
                outputs: json!([report_ref, scores_ref, manifest_ref]),
                parameters,
                metrics,
            }],
            rows: evaluation.rows,
            bytes: bytes_read,
            next: RunDone {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                outcome: "succeeded".into(),
                report: report_ref,
                scores: scores_ref,
                summary: evaluation.summary,
            },
        })
    }

    fn run_report(done: &RunDone) -> Option<Value> {
        Some(json!({ "report": done.report, "scores": done.scores, "summary": done.summary }))
    }
}
