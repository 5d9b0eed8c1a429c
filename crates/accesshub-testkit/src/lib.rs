//! Test isolation against the real services: each test gets its own PostgreSQL database
//! (migrated) and its own NATS namespace (stream names and subjects prefixed), so tests run in
//! parallel on the shared local NATS and Postgres without seeing each other.

pub mod http;
pub mod logs;

use accesshub_bus::Bus;
use accesshub_config::CommonConfig;
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Base URL of the server tests create their databases on (`TEST_DATABASE_URL` or local).
/// Loopback needs no TLS: `sslmode=prefer` would encrypt every statement on both sides and
/// show up in every profile.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".to_owned())
}

/// `admin_url()` with its database replaced by `db` (query parameters kept).
fn url_for(db: &str) -> String {
    let base = admin_url();
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (base.as_str(), String::new()),
    };
    match path.rfind('/') {
        Some(i) => format!("{}/{db}{query}", &path[..i]),
        None => format!("{path}/{db}{query}"),
    }
}

/// A fresh, migrated database for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Database name (`ah_t_<uuid>`).
    pub name: String,
    /// Connection URL.
    pub url: String,
    /// Pool to it.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates and migrates a new database. Panics (test-only) if Postgres is unreachable,
    /// with a message saying how to start it.
    pub async fn new() -> TestDb {
        let db = TestDb::unmigrated().await;
        accesshub_store::migrate(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        db
    }

    /// A new, empty database (no migration applied): for tests of what a service does on a
    /// schema older than it needs.
    pub async fn unmigrated() -> TestDb {
        let name = format!("ah_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL not reachable at {}: {e} (run deploy/dev-services.sh)",
                    admin_url()
                )
            });
        let sql = format!("CREATE DATABASE \"{name}\"");
        conn.execute(sqlx::AssertSqlSafe(sql))
            .await
            .unwrap_or_else(|e| panic!("create test database: {e}"));
        let url = url_for(&name);
        let pool = accesshub_store::connect_lazy(&url, 20).unwrap_or_else(|e| panic!("pool: {e}"));
        TestDb { name, url, pool }
    }

    /// Drops the database (call at the end of a test; leftovers are removed by `make test`).
    pub async fn drop_db(self) {
        self.pool.close().await;
        if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = conn.execute(sqlx::AssertSqlSafe(sql)).await;
        }
    }
}

/// Version of the migration [`next_release_migrator`] adds.
pub const NEXT_RELEASE_VERSION: i64 = 99_991_231_235_959;

/// The embedded migrations plus one "from the next release" running `sql` (an expand step:
/// docs/deploy.md "Migrations"), for tests of what the current binaries do on a schema a
/// newer release migrated (`helm rollback`).
pub fn next_release_migrator(sql: &'static str) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    let mut all: Vec<sqlx::migrate::Migration> =
        accesshub_store::MIGRATOR.iter().cloned().collect();
    all.push(sqlx::migrate::Migration::new(
        NEXT_RELEASE_VERSION,
        "next_release_expand".into(),
        sqlx::migrate::MigrationType::Simple,
        sql.into_sql_str(),
        false,
    ));
    sqlx::migrate::Migrator::with_migrations(all)
}

/// A unique namespace on the shared NATS server, with its streams created.
#[derive(Debug, Clone)]
pub struct TestBus {
    /// The namespace prefix.
    pub namespace: String,
    /// Connected bus.
    pub bus: Bus,
}

impl TestBus {
    /// Connects with a new namespace and creates the streams (memory storage).
    pub async fn new(db_url: &str) -> TestBus {
        let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let cfg = CommonConfig::for_test("test", &namespace, db_url);
        let bus = accesshub_bus::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("NATS: {e} (run deploy/dev-services.sh)"));
        bus.ensure_streams()
            .await
            .unwrap_or_else(|e| panic!("streams: {e}"));
        TestBus { namespace, bus }
    }

    /// Configuration for a service under test sharing this namespace and database.
    pub fn config(&self, service: &str, db_url: &str) -> CommonConfig {
        CommonConfig::for_test(service, &self.namespace, db_url)
    }

    /// Deletes this namespace's streams.
    pub async fn cleanup(&self) {
        self.bus.delete_streams().await;
    }
}

/// Both at once: the usual start of an integration test.
pub async fn isolated() -> (TestDb, TestBus) {
    let db = TestDb::new().await;
    let bus = TestBus::new(&db.url).await;
    (db, bus)
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after `timeout`. Tests settle on
/// observed state this way instead of sleeping for a guessed time.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
