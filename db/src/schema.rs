//! The schema: migrations applied once each at start, and the grants of the
//! dashboard's read-mostly role.

use crate::connection::{DbError, Pool};

/// The migrations, in order. Applied once each, under an advisory lock so
/// that workers starting together do not race.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "audit trail", include_str!("migrations/0001_audit.sql")),
    (
        2,
        "model registry and feedback",
        include_str!("migrations/0002_registry.sql"),
    ),
    (
        3,
        "dashboard indexes",
        include_str!("migrations/0003_dashboard.sql"),
    ),
    (
        4,
        "leases, retry budget, outbox",
        include_str!("migrations/0004_delivery.sql"),
    ),
    (
        5,
        "finding triage and suppression rules",
        include_str!("migrations/0005_findings.sql"),
    ),
];

/// Lock id for migrations (any constant shared by all nadir processes).
const MIGRATION_LOCK: i64 = 0x6e61_6469_725f_6d67;

/// Applies the migrations not yet applied; returns how many ran.
pub async fn migrate(pool: &Pool) -> Result<usize, DbError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let done = client
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?
                .is_some();
            if done {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            tx.commit().await?;
            applied += 1;
        }
        Ok::<_, DbError>(applied)
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

/// Lets an existing PostgreSQL role do what the dashboard does and no
/// more: read every table of the schema (now and after later migrations),
/// add analysts' feedback and triage, and add and remove suppression rules.
pub async fn grant_dashboard(pool: &Pool, role: &str) -> Result<(), DbError> {
    let valid = role.len() <= 63
        && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(DbError::Config(format!(
            "{role:?} is not a role name nadir grants to (lower-case letters, digits and _, up to 63)"
        )));
    }
    // A role name cannot be a bound parameter; it was checked above.
    let client = pool.get().await?;
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO \"{role}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{role}\";
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO \"{role}\";
             GRANT INSERT ON feedback TO \"{role}\";
             GRANT USAGE ON SEQUENCE feedback_id_seq TO \"{role}\";
             GRANT INSERT ON finding_triage, suppression_rules TO \"{role}\";
             GRANT USAGE ON SEQUENCE finding_triage_id_seq, suppression_rules_id_seq,
                 suppression_rule_ids TO \"{role}\";"
        ))
        .await?;
    Ok(())
}
