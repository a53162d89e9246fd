//! The eval worker: `pipeline.eval` in, the report and per-flow scores out,
//! `pipeline.done` next. How flows are scored and the champion chosen is
//! [`nadir_pipeline::eval`]; this crate fetches the partitions, the models
//! (checked against their recorded sha256), the feature set's champion and
//! analysts' feedback, and writes the evaluation through the S3 sink with
//! the promotion it decided.

use std::sync::Arc;
use std::time::Instant;

use nadir_config::shutdown::Shutdown;
use nadir_contract::layout::{self, ArtifactRef, Layer};
use nadir_contract::messages::{EvalJob, RunDone, SCHEMA_VERSION, subject};
use nadir_contract::stage::StageKind;
use nadir_detectors::Model;
use nadir_pipeline::Analysis;
use nadir_pipeline::eval::{EvalOf, Scorer, evaluate, load_model, promotion};
use nadir_runtime::Services;
use nadir_runtime::catalogue::Catalogue;
use nadir_runtime::stage::{self, JobContext, Outcome, Stage, StageError, compute};
use nadir_store::sink::{ArtifactSink, write};
use serde_json::{Value, json};

/// The stage, with the analysis settings it works by.
pub struct Eval {
    pub analysis: Analysis,
}

/// Runs the stage on its durable consumer until `shutdown`: what
/// `nadir-eval` does once connected, and what tests call in-process.
pub async fn run(
    services: Arc<Services>,
    analysis: Analysis,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    stage::run_on(Eval { analysis }, nadir_bus::EVAL, services, shutdown).await
}

/// Fetches a model file, checks its hash and that it holds `algorithm`.
async fn fetch_model(
    catalogue: &Catalogue<'_>,
    algorithm: &str,
    file: &ArtifactRef,
) -> Result<Model, StageError> {
    let bytes = catalogue.artifact(file).await?;
    if layout::sha256_hex(&bytes) != file.sha256 {
        return Err(StageError::Rejected(format!(
            "{}: model file does not match its recorded sha256",
            file.uri()
        )));
    }
    load_model(algorithm, &bytes).map_err(|e| StageError::Rejected(format!("{}: {e}", file.uri())))
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
        let catalogue = ctx.catalogue;
        if job.silver.is_empty() || job.models.is_empty() {
            return Err(StageError::Rejected(
                "pipeline.eval needs SILVER partitions and models".into(),
            ));
        }
        let mut partitions = Vec::new();
        for p in &job.silver {
            partitions.push(catalogue.artifact(&p.flows).await?);
        }
        let mut models = Vec::new();
        for m in &job.models {
            models.push(fetch_model(catalogue, &m.algorithm, &m.model).await?);
        }
        // The champion scores the same flows, to be compared on equal terms.
        let feature_set = layout::feature_set(&job.silver[0].features);
        let champion = catalogue.champion(&feature_set).await?;
        let champion_model = match &champion {
            Some(c) => Some(fetch_model(catalogue, &c.algorithm, &c.model).await?),
            None => None,
        };
        let raw_versions: Vec<String> = job.silver.iter().map(|p| p.raw_version.clone()).collect();
        let feedback = catalogue.feedback(&raw_versions).await?;
        let bytes_read = partitions.iter().map(|b| b.len() as u64).sum();
        let started = Instant::now();
        let mut params = nadir_pipeline::eval::params(&self.analysis);
        params.suppression_rules = catalogue.suppression_rules().await?;
        let (owned_job, owned_params) = (job.clone(), params.clone());
        let champion_version = champion.as_ref().map(|c| c.version.clone());
        let (evaluation, scores_parquet, findings_parquet) = compute(move || {
            let mut scorers: Vec<Scorer> = models
                .iter()
                .zip(&owned_job.models)
                .map(|(model, m)| Scorer {
                    model,
                    version: m.model.version.clone(),
                    champion: false,
                })
                .collect();
            if let (Some(model), Some(version)) = (&champion_model, champion_version) {
                scorers.push(Scorer {
                    model,
                    version,
                    champion: true,
                });
            }
            let mut e = evaluate(&owned_job, &partitions, &scorers, &feedback, &owned_params)?;
            let (scores, findings) = e.parquet()?;
            Ok::<_, String>((e, scores, findings))
        })
        .await?
        .map_err(StageError::Rejected)?;
        let sink = ctx.sink;
        let scores = sink.reference(
            Layer::Eval,
            &layout::eval_scores_key(ctx.version),
            ctx.version,
            &scores_parquet,
        );
        let findings = sink.reference(
            Layer::Eval,
            &layout::eval_findings_key(ctx.version),
            ctx.version,
            &findings_parquet,
        );
        let (product, report) = EvalOf {
            run_id: ctx.run_id,
            version: ctx.version,
            job,
            params: &params,
            scores,
            findings,
            seconds: started.elapsed().as_secs_f64(),
        }
        .product(&evaluation, scores_parquet, findings_parquet);
        let written = write(sink, product).await?;
        Ok(Outcome {
            records: vec![written.record],
            rows: evaluation.rows,
            bytes: bytes_read,
            registry: promotion(&report, &feature_set),
            next: RunDone {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                outcome: "succeeded".into(),
                report: written.artifacts[0].clone(),
                scores: written.artifacts[1].clone(),
                summary: serde_json::to_value(&evaluation.summary).expect("figures serialize"),
            },
        })
    }

    fn run_report(done: &RunDone) -> Option<Value> {
        Some(json!({ "report": done.report, "scores": done.scores, "summary": done.summary }))
    }
}
