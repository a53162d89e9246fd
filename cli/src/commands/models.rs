//! The model registry: `nadir models` lists every trained model, the
//! champions and their history (table or JSON); `nadir promote` and
//! `nadir rollback` change a champion by hand, audited with who did it.

use std::process::ExitCode;

use nadir_config::Config;
use nadir_db::registry::{self, ChampionChange, RegisteredModel};

use super::{actor, detail};
use crate::output::{figure, print_json, shown};

pub async fn models(config: &Config, limit: i64, json: bool) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let models = registry::models(&db, limit).await.map_err(detail)?;
    let history = registry::history(&db, limit).await.map_err(detail)?;
    if json {
        print_json(&serde_json::json!({ "models": models, "champion_history": history }))?;
    } else {
        print_models(&models, &history);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn promote(
    config: &Config,
    algorithm: &str,
    version: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    registry::promote(&db, algorithm, version, reason, &actor()).await?;
    println!("{algorithm} ({version}) is now the champion");
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(
    config: &Config,
    reason: &str,
    feature_set: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let db = super::db(config)?;
    let c = registry::rollback(&db, feature_set, reason, &actor()).await?;
    println!(
        "rolled back: {} ({}) is the champion of feature set {} again",
        c.algorithm, c.version, c.feature_set
    );
    Ok(ExitCode::SUCCESS)
}

fn print_models(models: &[RegisteredModel], history: &[ChampionChange]) {
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
            figure(m.metrics["fit_seconds"].as_f64())
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
