//! `serve_main`: everything a worker binary does, so each `main.rs` is a few lines.

use std::{sync::Arc, time::Duration};

use accesshub_config::{CommonConfig, env_opt};
use accesshub_connections::{ConnectionCache, ConnectionStore, DEFAULT_TTL};
use accesshub_domain::ErrorClass;
use accesshub_retry::{Backoff, RetryPolicy, retry_notify};
use accesshub_store::SecretBox;
pub use accesshub_telemetry::ops::shutdown_signal;

use crate::{
    Handler, WorkerConfig, WorkerError,
    runner::start,
    source::{ConnectionSource, SourceError, StaticConnections},
};

/// Installs ring as rustls' process-wide provider (reqwest's and sqlx/async-nats' backends
/// are both compiled in; rustls refuses to guess). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Start-up waits: Postgres or NATS may still be coming up. 250 ms doubling to 8 s, 18 retries:
/// about a minute on average with full jitter (the caps add up to ~110 s).
const START_UP: RetryPolicy = RetryPolicy::limited(
    Backoff::new(Duration::from_millis(250), Duration::from_secs(8)),
    18,
);

/// Retries `f` under [`START_UP`], whatever the error (a fresh cluster answers with errors
/// that look permanent until it is up). Public for the reconciler's start-up.
pub async fn with_retries<T, E: std::fmt::Display>(
    what: &str,
    f: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    retry_notify(&START_UP, f, |e, wait| {
        tracing::warn!(error = %e, ?wait, "{what} failed; retrying");
    })
    .await
}

/// Where a worker reads connections, from the environment:
///
/// - `ACCESSHUB_CONNECTIONS_FILE` set: that YAML/JSON list, read once (local or static setups
///   without the admin API; changes need a restart);
/// - otherwise the Postgres connection store (what the admin API and `accessctl apply` write),
///   through a [`ConnectionCache`] kept fresh by change notifications (see [`serve_main`]).
///   Secrets are sealed at rest, so `ACCESSHUB_ENCRYPTION_KEY` is then required.
enum Connections {
    File(StaticConnections),
    Store(Arc<ConnectionCache>),
}

impl Connections {
    fn from_env(database_url: &str) -> Result<Self, WorkerError> {
        if let Some(path) = env_opt("ACCESSHUB_CONNECTIONS_FILE") {
            tracing::info!(%path, "connections from ACCESSHUB_CONNECTIONS_FILE (static: restart to apply changes)");
            return Ok(Connections::File(StaticConnections::from_file(&path)?));
        }
        let secrets = SecretBox::from_env().map_err(|e| SourceError {
            message: format!(
                "{e}: the worker reads connections from the Postgres connection store, whose \
                 secrets are encrypted with this key (set it to the admin API's key, or set \
                 ACCESSHUB_CONNECTIONS_FILE for a static connections file)"
            ),
            class: ErrorClass::Permanent,
        })?;
        let pool = accesshub_store::connect_lazy(database_url, 4)?;
        let store = ConnectionStore::new(pool, secrets);
        tracing::info!("connections from the Postgres connection store");
        Ok(Connections::Store(Arc::new(ConnectionCache::new(
            store,
            DEFAULT_TTL,
        ))))
    }

    fn source(&self) -> Arc<dyn ConnectionSource> {
        match self {
            Connections::File(f) => Arc::new(f.clone()),
            Connections::Store(c) => c.clone(),
        }
    }
}

/// The whole life of a worker process: configuration from the environment, telemetry, the
/// ops server (`/healthz`, `/readyz`, `/metrics` on `ACCESSHUB_HTTP_ADDR`), the schema check
/// (the database must hold every migration this binary knows; run `accessctl migrate`),
/// the streams' check (they must exist with the settings workers rely on; run `accessctl
/// streams apply`; created here only in dev mode), the worker itself, and a graceful stop on SIGTERM.
///
/// Connections come from the Postgres connection store (needs `ACCESSHUB_ENCRYPTION_KEY`;
/// the start fails with a clear error without it), cached and invalidated by the store's
/// `config.connection.<vendor>.*` notifications, so changes made through the admin API apply
/// without a restart. For local or static setups `ACCESSHUB_CONNECTIONS_FILE` (YAML/JSON
/// list) replaces the store.
pub async fn serve_main<H, F>(service: &'static str, make_handler: F) -> Result<(), WorkerError>
where
    H: Handler,
    F: FnOnce(&WorkerConfig) -> Result<H, WorkerError>,
{
    install_crypto_provider();
    let common = CommonConfig::from_env(service)?;
    let _telemetry = accesshub_telemetry::init(service, common.log_format)?;
    // Before any vendor client exists: every client built from now on enforces it.
    vendor_http::install_egress_policy(common.egress.clone());
    tracing::info!(egress = %common.egress, "vendor egress allow-list");
    let connections = Connections::from_env(&common.database_url)?;
    let cfg = WorkerConfig::from_env(common, connections.source())?;
    let pool = accesshub_store::connect_lazy(&cfg.common.database_url, 2)?;
    // Services never migrate (the Helm hook Job and `accessctl migrate` do): wait for the
    // database, then refuse at once if its schema is older than this binary needs.
    with_retries("database", async || {
        match accesshub_store::check_schema(&pool).await {
            Err(e @ accesshub_store::StoreError::Schema(_)) => Ok(Err(e)),
            other => other.map(Ok),
        }
    })
    .await??;
    pool.close().await;
    let bus = accesshub_bus::connect(&cfg.common).await?;
    // Outside dev mode only checked: `accessctl streams apply` (the migrations Job) creates
    // and changes streams; until it has run this waits (readiness stays false: no ops server
    // yet) and then exits naming the stream, for Kubernetes to restart it.
    let mode = cfg.common.mode;
    with_retries("streams", async || bus.prepare_streams(mode).await).await?;
    let handler = make_handler(&cfg)?;
    let listener_task = match &connections {
        Connections::Store(cache) => Some(
            with_retries("connection change subscription", async || {
                cache.listen(&bus, Some(handler.vendor())).await
            })
            .await
            .map_err(SourceError::from)?,
        ),
        Connections::File(_) => None,
    };
    let addr = cfg.common.http_addr;
    let registry = cfg.registry.clone();
    let handle = start(cfg, handler).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = accesshub_telemetry::ops::ops_router(registry, handle.readiness());
    let ops = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "ops server stopped");
        }
    });
    tracing::info!(%addr, service, "worker started");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight messages");
    let result = handle.shutdown().await;
    ops.abort();
    if let Some(t) = listener_task {
        t.abort();
    }
    result
}
