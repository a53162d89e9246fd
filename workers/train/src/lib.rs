//! The train worker: `pipeline.train` in, fitted models out, `pipeline.eval`
//! next. What is fitted and how is [`nadir_pipeline::train`]; this crate
//! looks the training window's partitions up in the audit trail, fetches
//! them, and writes each model through the S3 sink with its registration.

use std::sync::Arc;

use nadir_config::shutdown::Shutdown;
use nadir_contract::messages::{EvalJob, SCHEMA_VERSION, TrainJob, subject};
use nadir_contract::stage::StageKind;
use nadir_pipeline::Analysis;
use nadir_pipeline::train::{self, training_dataset, training_window};
use nadir_runtime::Services;
use nadir_runtime::stage::{self, JobContext, Outcome, Stage, StageError, compute};
use nadir_store::sink::write;

/// The stage, with the analysis settings it works by.
pub struct Train {
    pub analysis: Analysis,
}

/// Runs the stage on its durable consumer until `shutdown`: what
/// `nadir-train` does once connected, and what tests call in-process.
pub async fn run(
    services: Arc<Services>,
    analysis: Analysis,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    stage::run_on(Train { analysis }, nadir_bus::TRAIN, services, shutdown).await
}

impl Stage for Train {
    const KIND: StageKind = StageKind::Train;
    const NEXT_SUBJECT: &'static str = subject::EVAL;
    type Input = TrainJob;
    type Output = EvalJob;

    async fn process(
        &self,
        ctx: &JobContext<'_>,
        job: &TrainJob,
    ) -> Result<Outcome<EvalJob>, StageError> {
        if job.silver.is_empty() {
            return Err(StageError::Rejected(
                "pipeline.train names no SILVER partitions".into(),
            ));
        }
        let window = job
            .training
            .clone()
            .unwrap_or_default()
            .or(&self.analysis.window);
        let recent = if window.partitions.is_some() || window.span_hours.is_some() {
            // The run's own partitions are among the newest: N more cover the window.
            let limit = window
                .partitions
                .map(|n| i64::from(n) + job.silver.len() as i64);
            ctx.catalogue
                .silver_partitions(Some(&job.silver[0].features), limit, window.span_hours)
                .await?
        } else {
            Vec::new()
        };
        let training = training_window(&job.silver, &recent, &window);
        train::check_training_rows(&training, self.analysis.max_training_rows)
            .map_err(StageError::Rejected)?;
        let mut parquet = Vec::new();
        for p in &training {
            parquet.push(ctx.catalogue.artifact(&p.flows).await?);
        }
        let bytes_read = parquet.iter().map(|b| b.len() as u64).sum();
        let (analysis, partitions, fit_window, judged) = (
            self.analysis.clone(),
            training.clone(),
            window.clone(),
            job.silver.clone(),
        );
        let (run_id, version) = (ctx.run_id, ctx.version.to_string());
        let (rows, outcomes) = compute(move || {
            // Eval judges the run's own partitions: the rest are the baseline.
            let behaviour = nadir_pipeline::eval::params(&analysis).behaviour;
            let data = Arc::new(training_dataset(
                &partitions,
                &parquet,
                fit_window.holdout,
                &judged,
                &behaviour,
            )?);
            let outcomes =
                train::train(&analysis, &data, &partitions, &fit_window, run_id, &version)?;
            Ok::<_, String>((data.data.rows() as u64, outcomes))
        })
        .await?
        .map_err(StageError::Rejected)?;
        let (mut records, mut registry, mut models) = (Vec::new(), Vec::new(), Vec::new());
        for outcome in outcomes {
            match outcome {
                train::Outcome::Skipped(record) => {
                    tracing::info!(run_id = %ctx.run_id, algorithm = %record.item, reason = %record.metrics["skipped"], "detector skipped");
                    records.push(record);
                }
                train::Outcome::Fitted { model, product } => {
                    let algorithm = model.algorithm().to_string();
                    let written = write(ctx.sink, product).await?;
                    tracing::info!(run_id = %ctx.run_id, algorithm, rows, "model fitted");
                    let (trained, change) =
                        train::trained(&algorithm, &job.silver[0].features, &written);
                    records.push(written.record);
                    registry.push(change);
                    models.push(trained);
                }
            }
        }
        Ok(Outcome {
            records,
            rows,
            bytes: bytes_read,
            registry,
            next: EvalJob {
                schema: SCHEMA_VERSION,
                run_id: ctx.run_id,
                silver: job.silver.clone(),
                models,
                training_silver: training,
                holdout: window.holdout,
            },
        })
    }
}
