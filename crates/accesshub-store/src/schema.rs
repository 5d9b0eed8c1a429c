//! Who changes the schema, and what a service accepts.
//!
//! Only `accessctl migrate` applies migrations (the Helm chart runs it as a
//! pre-install/pre-upgrade Job; `make dev` and the test kit run it too), so a service's
//! database user needs no DDL rights and N−1 binaries keep running after an upgrade or a
//! `helm rollback` across a migration. A service only [`check_schema`]s at start-up:
//!
//! - every migration embedded in the binary must be applied (else it refuses, saying to run
//!   `accessctl migrate`);
//! - migrations it does not know (written after it was built) are tolerated: migrations are
//!   expand/contract (docs/deploy.md "Migrations"), so the previous release still works on the
//!   newer schema.

use std::sync::LazyLock;

use sqlx::{
    PgPool,
    migrate::{Migration, Migrator},
};

use crate::{MIGRATOR, StoreError};

/// The migration runner of `accessctl migrate`: [`MIGRATOR`], tolerating applied migrations
/// it does not know (sqlx's `ignore_missing`): an older `accessctl` run against a newer
/// schema (a rollback) applies nothing and succeeds instead of refusing the database.
static RUNNER: LazyLock<Migrator> = LazyLock::new(|| {
    let mut m = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    m.set_ignore_missing(true);
    m
});

/// Applies pending migrations (sqlx takes an advisory lock, so concurrent runs serialise).
/// For `accessctl migrate`, `make dev` and tests only: services call [`check_schema`].
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    RUNNER.run(pool).await?;
    Ok(())
}

/// What a start-up check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration this binary embeds (the schema version it needs).
    pub required: i64,
    /// Applied migrations this binary does not know: a newer release migrated the database.
    /// Tolerated (expand/contract), logged.
    pub newer: Vec<i64>,
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Applied {
    version: i64,
    description: String,
    success: bool,
    checksum: Vec<u8>,
}

/// Checks that the database holds every migration this binary embeds, unchanged and
/// successful; migrations it does not know are tolerated. `Err(StoreError::Schema)` (permanent)
/// says what is missing and to run `accessctl migrate`; connection errors are
/// `StoreError::Db` (transient: the caller may retry).
pub async fn check_schema(pool: &PgPool) -> Result<SchemaStatus, StoreError> {
    let applied: Vec<Applied> = match sqlx::query_as(
        "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        // undefined_table: nothing was ever migrated here.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let status = verdict(MIGRATOR.iter(), &applied)?;
    if !status.newer.is_empty() {
        tracing::info!(
            newer = ?status.newer,
            required = status.required,
            "the database has migrations newer than this binary (a newer release ran them); \
             they are expand/contract-compatible, carrying on"
        );
    }
    Ok(status)
}

/// The pure rule of [`check_schema`].
fn verdict<'a>(
    known: impl Iterator<Item = &'a Migration>,
    applied: &[Applied],
) -> Result<SchemaStatus, StoreError> {
    let known: Vec<&Migration> = known
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let required = known.iter().map(|m| m.version).max().unwrap_or(0);
    let mut missing = Vec::new();
    for m in &known {
        match applied.iter().find(|a| a.version == m.version) {
            None => missing.push(format!("{}_{}", m.version, m.description)),
            Some(a) if !a.success => {
                return Err(StoreError::Schema(format!(
                    "migration {}_{} failed part-way in this database (success = false in \
                     _sqlx_migrations): repair it by hand, then run `accessctl migrate`",
                    a.version, a.description
                )));
            }
            Some(a) if *a.checksum != *m.checksum => {
                return Err(StoreError::Schema(format!(
                    "migration {}_{} in the database differs from the one this binary was built \
                     with (checksum mismatch): a migration file was edited after it was applied",
                    a.version, a.description
                )));
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let at = applied
            .iter()
            .filter(|a| a.success)
            .map(|a| a.version)
            .max()
            .map_or_else(|| "no migration applied".to_owned(), |v| v.to_string());
        return Err(StoreError::Schema(format!(
            "database schema is older than this binary needs (database at {at}, this binary \
             needs {required}; not applied: {}). Services do not migrate: run `accessctl \
             migrate` with this release (the Helm chart's pre-install/pre-upgrade Job does), \
             then start the service again",
            missing.join(", ")
        )));
    }
    let newer = applied
        .iter()
        .filter(|a| !known.iter().any(|m| m.version == a.version))
        .map(|a| a.version)
        .collect();
    Ok(SchemaStatus { required, newer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(m: &Migration) -> Applied {
        Applied {
            version: m.version,
            description: m.description.to_string(),
            success: true,
            checksum: m.checksum.to_vec(),
        }
    }

    fn all_applied() -> Vec<Applied> {
        MIGRATOR.iter().map(applied).collect()
    }

    #[test]
    fn every_embedded_migration_applied_passes() {
        let status = verdict(MIGRATOR.iter(), &all_applied()).unwrap();
        assert_eq!(
            status.required,
            MIGRATOR.iter().map(|m| m.version).max().unwrap()
        );
        assert!(status.newer.is_empty());
    }

    #[test]
    fn a_missing_migration_refuses_naming_it_and_the_fix() {
        let mut rows = all_applied();
        let last = rows.pop().unwrap();
        let err = verdict(MIGRATOR.iter(), &rows).unwrap_err().to_string();
        assert!(err.contains(&last.version.to_string()), "{err}");
        assert!(err.contains("accessctl migrate"), "{err}");
        let err = verdict(MIGRATOR.iter(), &[]).unwrap_err().to_string();
        assert!(err.contains("no migration applied"), "{err}");
    }

    #[test]
    fn newer_migrations_are_tolerated() {
        let mut rows = all_applied();
        rows.push(Applied {
            version: 99_991_231_235_959,
            description: "from the future".into(),
            success: true,
            checksum: vec![1, 2, 3],
        });
        let status = verdict(MIGRATOR.iter(), &rows).unwrap();
        assert_eq!(status.newer, vec![99_991_231_235_959]);
    }

    #[test]
    fn failed_or_edited_migrations_refuse() {
        let mut rows = all_applied();
        rows[0].success = false;
        assert!(
            verdict(MIGRATOR.iter(), &rows)
                .unwrap_err()
                .to_string()
                .contains("failed part-way")
        );
        let mut rows = all_applied();
        rows[1].checksum = vec![0; 48];
        assert!(
            verdict(MIGRATOR.iter(), &rows)
                .unwrap_err()
                .to_string()
                .contains("checksum mismatch")
        );
    }
}
