//! The model registry in PostgreSQL: every trained model, the champion (the
//! model that goes to production), and every change of champion with who
//! made it and why. Stages change it inside the transaction that finishes
//! their job ([`RegistryChange`]), so a redelivered job never registers or
//! promotes twice; `nadir promote` and `nadir rollback` change it by hand.

use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use nadir_contract::layout::ArtifactRef;
pub use nadir_contract::registry::RegistryChange;

use crate::connection::DbError;

/// A model as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub algorithm: String,
    pub version: String,
    pub run_id: Uuid,
    pub feature_set: String,
    pub model: ArtifactRef,
    pub manifest: ArtifactRef,
    pub metrics: Value,
    pub trained_at: chrono::DateTime<chrono::Utc>,
}

/// One row of the champion's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChampionChange {
    pub feature_set: String,
    pub algorithm: String,
    pub version: String,
    pub action: String,
    pub run_id: Option<Uuid>,
    pub previous: Option<(String, String)>,
    pub reason: String,
    pub metrics: Value,
    pub actor: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Applies a job's registry changes (inside its finishing transaction).
pub(crate) async fn apply(
    tx: &impl GenericClient,
    run_id: Uuid,
    worker: &str,
    changes: &[RegistryChange],
) -> Result<(), DbError> {
    for change in changes {
        match change {
            RegistryChange::Register {
                algorithm,
                feature_set,
                model,
                manifest,
                metrics,
            } => {
                tx.execute(
                    "INSERT INTO models (algorithm, version, run_id, model, manifest, metrics, feature_set)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (algorithm, version) DO NOTHING",
                    &[
                        algorithm,
                        &model.version,
                        &run_id,
                        &serde_json::to_value(model).expect("refs serialize"),
                        &serde_json::to_value(manifest).expect("refs serialize"),
                        metrics,
                        feature_set,
                    ],
                )
                .await?;
            }
            RegistryChange::Promote {
                feature_set,
                algorithm,
                version,
                compared_with,
                reason,
                metrics,
            } => {
                let (previous_algorithm, previous_version) = compared_with.clone().unzip();
                // Only if the champion has not changed since the comparison.
                tx.execute("LOCK TABLE champion_history IN EXCLUSIVE MODE", &[])
                    .await?;
                tx.execute(
                    "INSERT INTO champion_history
                         (algorithm, version, action, run_id, previous_algorithm, previous_version,
                          reason, metrics, actor, feature_set)
                     SELECT $1, $2, 'promote', $3, $4, $5, $6, $7, $8, $9
                      WHERE (SELECT (algorithm, version) FROM champion_history
                              WHERE feature_set = $9 ORDER BY id DESC LIMIT 1)
                            IS NOT DISTINCT FROM ($4::text, $5::text)
                            OR ($4::text IS NULL
                                AND NOT EXISTS (SELECT 1 FROM champion_history WHERE feature_set = $9))
                     ON CONFLICT (run_id) WHERE run_id IS NOT NULL DO NOTHING",
                    &[
                        algorithm,
                        version,
                        &run_id,
                        &previous_algorithm,
                        &previous_version,
                        reason,
                        metrics,
                        &worker,
                        feature_set,
                    ],
                )
                .await?;
            }
        }
    }
    Ok(())
}

fn registered(row: &tokio_postgres::Row) -> Result<RegisteredModel, DbError> {
    let artifact = |column: &str| -> Result<ArtifactRef, DbError> {
        serde_json::from_value(row.get::<_, Value>(column))
            .map_err(|e| DbError::Config(format!("models.{column}: {e}")))
    };
    Ok(RegisteredModel {
        algorithm: row.get("algorithm"),
        version: row.get("version"),
        run_id: row.get("run_id"),
        feature_set: row.get("feature_set"),
        model: artifact("model")?,
        manifest: artifact("manifest")?,
        metrics: row.get("metrics"),
        trained_at: row.get("trained_at"),
    })
}

/// Every registered model, newest first.
pub async fn models(pool: &Pool, limit: i64) -> Result<Vec<RegisteredModel>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT algorithm, version, run_id, feature_set, model, manifest, metrics, trained_at
               FROM models ORDER BY trained_at DESC, algorithm LIMIT $1",
            &[&limit],
        )
        .await?;
    rows.iter().map(registered).collect()
}

/// One registered model.
pub async fn model(
    pool: &Pool,
    algorithm: &str,
    version: &str,
) -> Result<Option<RegisteredModel>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT algorithm, version, run_id, feature_set, model, manifest, metrics, trained_at
               FROM models WHERE algorithm = $1 AND version = $2",
            &[&algorithm, &version],
        )
        .await?;
    row.as_ref().map(registered).transpose()
}

/// The champion's history, newest first.
pub async fn history(pool: &Pool, limit: i64) -> Result<Vec<ChampionChange>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT feature_set, algorithm, version, action, run_id, previous_algorithm,
                    previous_version, reason, metrics, actor, at
               FROM champion_history ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ChampionChange {
            feature_set: row.get("feature_set"),
            algorithm: row.get("algorithm"),
            version: row.get("version"),
            action: row.get("action"),
            run_id: row.get("run_id"),
            previous: row
                .get::<_, Option<String>>("previous_algorithm")
                .zip(row.get::<_, Option<String>>("previous_version")),
            reason: row.get("reason"),
            metrics: row.get("metrics"),
            actor: row.get("actor"),
            at: row.get("at"),
        })
        .collect())
}

/// The current champion of a feature set, if one was ever promoted.
pub async fn champion(pool: &Pool, feature_set: &str) -> Result<Option<RegisteredModel>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT m.algorithm, m.version, m.run_id, m.feature_set, m.model, m.manifest, m.metrics,
                    m.trained_at
               FROM models m
               JOIN (SELECT algorithm, version FROM champion_history
                      WHERE feature_set = $1 ORDER BY id DESC LIMIT 1) c
                 ON (m.algorithm, m.version) = (c.algorithm, c.version)",
            &[&feature_set],
        )
        .await?;
    row.as_ref().map(registered).transpose()
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("no model {0} version {1} in the registry (see `nadir models`)")]
    Unknown(String, String),
    #[error("{0} version {1} is already the champion")]
    AlreadyChampion(String, String),
    #[error("there is no earlier champion to roll back to")]
    NothingToRollBack,
    #[error("no champion has been named yet")]
    NoChampion,
    #[error(transparent)]
    Audit(#[from] DbError),
}

impl From<tokio_postgres::Error> for PromoteError {
    fn from(e: tokio_postgres::Error) -> Self {
        PromoteError::Audit(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for PromoteError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PromoteError::Audit(e.into())
    }
}

/// Makes a registered model the champion of its feature set by hand
/// (`nadir promote`).
pub async fn promote(
    pool: &Pool,
    algorithm: &str,
    version: &str,
    reason: &str,
    actor: &str,
) -> Result<(), PromoteError> {
    change_by_hand(
        pool,
        Some((algorithm, version)),
        None,
        "manual",
        reason,
        actor,
    )
    .await?;
    Ok(())
}

/// Gives a feature set's champion back to the one before it (`nadir
/// rollback`); without a feature set, the one whose champion changed last.
pub async fn rollback(
    pool: &Pool,
    feature_set: Option<&str>,
    reason: &str,
    actor: &str,
) -> Result<RegisteredModel, PromoteError> {
    let set = change_by_hand(pool, None, feature_set, "rollback", reason, actor).await?;
    champion(pool, &set).await?.ok_or(PromoteError::NoChampion)
}

/// Records a change of champion made by hand; returns its feature set.
async fn change_by_hand(
    pool: &Pool,
    to: Option<(&str, &str)>,
    feature_set: Option<&str>,
    action: &str,
    reason: &str,
    actor: &str,
) -> Result<String, PromoteError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One change at a time; a worker's conditional promotion sees it.
    tx.execute("LOCK TABLE champion_history IN EXCLUSIVE MODE", &[])
        .await?;
    // The feature set: the target model's, or the one asked, or the last changed.
    let set: Option<String> = match to {
        Some((a, v)) => tx
            .query_opt(
                "SELECT feature_set FROM models WHERE algorithm = $1 AND version = $2",
                &[&a, &v],
            )
            .await
            ?
            .map(|r| r.get(0))
            .ok_or_else(|| PromoteError::Unknown(a.into(), v.into()))
            .map(Some)?,
        None => tx
            .query_opt(
                "SELECT feature_set FROM champion_history WHERE ($1::text IS NULL OR feature_set = $1)
                  ORDER BY id DESC LIMIT 1",
                &[&feature_set],
            )
            .await
            ?
            .map(|r| r.get(0)),
    };
    let Some(set) = set else {
        return Err(PromoteError::NoChampion);
    };
    let current = tx
        .query_opt(
            "SELECT algorithm, version, previous_algorithm, previous_version
               FROM champion_history WHERE feature_set = $1 ORDER BY id DESC LIMIT 1",
            &[&set],
        )
        .await?;
    let current: Option<(String, String, Option<String>, Option<String>)> =
        current.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)));
    let target = match to {
        Some((a, v)) => (a.to_string(), v.to_string()),
        None => match &current {
            Some((_, _, Some(a), Some(v))) => (a.clone(), v.clone()),
            _ => return Err(PromoteError::NothingToRollBack),
        },
    };
    if let Some((a, v, _, _)) = &current
        && (a, v) == (&target.0, &target.1)
    {
        return Err(PromoteError::AlreadyChampion(target.0, target.1));
    }
    let (previous_algorithm, previous_version) = current.map(|(a, v, _, _)| (a, v)).unzip();
    tx.execute(
        "INSERT INTO champion_history
             (feature_set, algorithm, version, action, previous_algorithm, previous_version, reason,
              metrics, actor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, '{}'::jsonb, $8)",
        &[
            &set,
            &target.0,
            &target.1,
            &action,
            &previous_algorithm,
            &previous_version,
            &reason,
            &actor,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(set)
}
