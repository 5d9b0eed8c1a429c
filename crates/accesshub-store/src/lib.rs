//! PostgreSQL for accesshub: the pool, the embedded migrations, and the box that encrypts
//! vendor and webhook secrets at rest.

pub mod audit;
pub mod secrets;

use std::time::Duration;

use accesshub_domain::{Classify, ErrorClass};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub use secrets::{
    DECRYPT_FAILURES, DECRYPT_FAILURES_HELP, DecryptFailures, SealFormat, SealedInfo, SecretBox,
    SecretError, connection_aad, decrypt_failures, source_aad, upstream_aad,
};
pub use sqlx;

pub mod schema;

/// Embedded migrations (crates/accesshub-store/migrations), applied only by `accessctl migrate`
/// (the Helm chart's pre-install/pre-upgrade Job, `make dev`, the test kit). Services never
/// migrate: they [`check_schema`] at start-up and refuse a database that is behind them.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub use schema::{SchemaStatus, check_schema, migrate};

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error("DATABASE_URL is invalid: {0}")]
    Url(String),
    /// Query or connection error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database schema is older than this binary needs (or a migration it knows is
    /// broken there): the service refuses to start until `accessctl migrate` has run.
    #[error("{0}")]
    Schema(String),
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Url(_) | StoreError::Migrate(_) | StoreError::Schema(_) => {
                ErrorClass::Permanent
            }
            StoreError::Db(e) => db_error_class(e),
        }
    }
}

/// Connection loss, pool timeouts, serialization failures and deadlocks are transient;
/// constraint violations and bad SQL are not.
pub fn db_error_class(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => ErrorClass::Transient,
        sqlx::Error::Database(db) => sqlstate_class(db.code().as_deref()),
        _ => ErrorClass::Permanent,
    }
}

/// The class of a Postgres error by its SQLSTATE: conflicts between transactions, a server
/// going away and exhausted resources pass; everything else (constraints, bad data, missing
/// tables) fails the same way again.
fn sqlstate_class(code: Option<&str>) -> ErrorClass {
    match code {
        // serialization_failure, deadlock_detected, admin shutdown, cannot connect now
        Some("40001" | "40P01" | "57P01" | "57P03") => ErrorClass::Transient,
        // connection exceptions
        Some(c) if c.starts_with("08") => ErrorClass::Transient,
        // insufficient resources: too many connections, out of (shared) memory — e.g. a full
        // lock table while the workers hold many booking locks — disk full
        Some(c) if c.starts_with("53") => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Opens a pool. Connections are made lazily so a service starts (and reports not-ready)
/// while Postgres is down, instead of crash-looping.
pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(lazy_pool(parse_url(database_url)?, max_connections))
}

fn parse_url(database_url: &str) -> Result<PgConnectOptions, StoreError> {
    database_url
        .parse()
        .map_err(|e: sqlx::Error| StoreError::Url(e.to_string()))
}

fn lazy_pool(opts: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts)
}

/// [`connect_lazy`] for services whose statements carry whole batches as arrays (`UNNEST`,
/// `= ANY($1)`): every execution is planned with its real parameters. A prepared statement's
/// generic plan, cached while the tables were empty, picks sequential scans and hash joins
/// and keeps them after the tables hold millions of rows (until an ANALYZE happens to
/// invalidate it); planning a batch statement costs far less than one such scan.
pub fn connect_lazy_batched(
    database_url: &str,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    connect_lazy_with(
        database_url,
        max_connections,
        &[("plan_cache_mode", "force_custom_plan")],
    )
}

/// [`connect_lazy`] whose prepared statements always run on their cached generic plan. For a
/// pool that runs a large fixed-shape statement written so that its plan does not depend on
/// statistics (primary-key probes): planning such a statement on every execution (as
/// [`connect_lazy_batched`] does) costs more than running it.
pub fn connect_lazy_generic(
    database_url: &str,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    connect_lazy_with(
        database_url,
        max_connections,
        &[("plan_cache_mode", "force_generic_plan")],
    )
}

/// [`connect_lazy`] with session settings of the caller's choosing, for a pool with one
/// narrow job (e.g. `synchronous_commit = off` for writes that are safe to lose in a crash).
pub fn connect_lazy_with(
    database_url: &str,
    max_connections: u32,
    settings: &[(&str, &str)],
) -> Result<PgPool, StoreError> {
    let opts = parse_url(database_url)?.options(settings.iter().copied());
    Ok(lazy_pool(opts, max_connections))
}

/// Cheap liveness check of the database, for readiness probes.
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod sqlstate_tests {
    use super::*;

    #[test]
    fn resource_and_connection_errors_pass_the_rest_do_not() {
        for code in [
            "40001", "40P01", "57P01", "57P03", "08006", "53200", "53300", "53100",
        ] {
            assert_eq!(sqlstate_class(Some(code)), ErrorClass::Transient, "{code}");
        }
        for code in ["23505", "22P02", "42P01", "42703"] {
            assert_eq!(sqlstate_class(Some(code)), ErrorClass::Permanent, "{code}");
        }
        assert_eq!(sqlstate_class(None), ErrorClass::Permanent);
    }
}
