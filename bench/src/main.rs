//! `nadir-bench-detectors`: fits one of nadir's detectors on a training
//! matrix and scores a test matrix (both `.npy`, float64, already scaled
//! by the caller), writes the scores as `.npy`, and prints the fit and
//! score times as JSON. `scripts/bench-detectors` runs it beside
//! scikit-learn on the very same matrices.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use nadir_detectors::ocsvm::Solver;
use nadir_detectors::{
    Algorithm, Dataset, DetectorParams, ModelSpec, PrepSpec, Scaling, ThresholdRule,
};
use ndarray::{Array1, Array2};
use ndarray_npy::{read_npy, write_npy};

#[derive(Parser)]
struct Args {
    /// isolation_forest, local_outlier_factor or one_class_svm (the
    /// matrices carry no hosts and times for host_group).
    #[arg(long)]
    algorithm: Algorithm,
    #[arg(long)]
    train: PathBuf,
    #[arg(long)]
    test: PathBuf,
    /// Where the test scores go (.npy).
    #[arg(long)]
    scores: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// LOF: training rows kept (default: the library's default).
    #[arg(long)]
    max_train: Option<usize>,
    /// One-Class SVM: nu.
    #[arg(long)]
    nu: Option<f64>,
    /// One-Class SVM: auto, exact or nystroem.
    #[arg(long)]
    solver: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let train: Array2<f64> =
        read_npy(&args.train).with_context(|| format!("reading {}", args.train.display()))?;
    let test: Array2<f64> =
        read_npy(&args.test).with_context(|| format!("reading {}", args.test.display()))?;
    let mut detector = DetectorParams::defaults(args.algorithm, args.seed);
    match &mut detector {
        DetectorParams::LocalOutlierFactor(p) => {
            if let Some(m) = args.max_train {
                p.max_train = m;
            }
        }
        DetectorParams::OneClassSvm(p) => {
            if let Some(nu) = args.nu {
                p.nu = nu;
            }
            p.solver = match args.solver.as_deref() {
                None | Some("auto") => Solver::Auto,
                Some("exact") => Solver::Exact,
                Some("nystroem") => Solver::Nystroem,
                Some(other) => anyhow::bail!("unknown solver {other:?}"),
            };
        }
        _ => {}
    }
    let names: Vec<String> = (0..train.ncols()).map(|j| format!("x{j}")).collect();
    let spec = ModelSpec {
        detector,
        prep: PrepSpec {
            scaling: Scaling::None,
            ..Default::default()
        },
        threshold: ThresholdRule::Contamination(0.1),
    };
    let train = Dataset::numeric(names.clone(), train);
    let test = Dataset::numeric(names, test);
    let started = Instant::now();
    let model = spec.fit(&train)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let scores: Array1<f64> = model.score(&test)?;
    let score_seconds = started.elapsed().as_secs_f64();
    write_npy(&args.scores, &scores)?;
    println!(
        "{}",
        serde_json::json!({
            "fit_seconds": fit_seconds,
            "score_seconds": score_seconds,
            "fit": model.metadata.fit,
        })
    );
    Ok(())
}
