//! The admin service process: the API under [`PREFIX`](crate::PREFIX) plus `/healthz`,
//! `/readyz` and `/metrics`, on one cluster-internal listener.
//!
//! A service of its own (not mounted in booking-ingest) so the public webhook endpoint never
//! carries the admin API, and the two scale and fail independently.

use std::{net::SocketAddr, sync::Arc};

use accesshub_config::{CommonConfig, ConfigError, env_or};
use accesshub_store::SecretBox;
use accesshub_telemetry::{metrics::Registry, ops};
use axum::middleware;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{AdminConfig, AdminState, mounted};

/// Service name (logs, traces, metrics labels).
pub const SERVICE: &str = "accesshub-admin";

/// The admin service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Postgres (pool or migrations).
    #[error(transparent)]
    Store(#[from] accesshub_store::StoreError),
    /// The encryption key is missing or malformed.
    #[error(transparent)]
    Secrets(#[from] accesshub_store::SecretError),
    /// NATS.
    #[error(transparent)]
    Bus(#[from] accesshub_bus::BusError),
    /// The listener.
    #[error("HTTP listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything the service needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Database, NATS, listener address, namespace, log format.
    pub common: CommonConfig,
    /// Seals and opens vendor and webhook secrets (`ACCESSHUB_ENCRYPTION_KEY`).
    pub secrets: SecretBox,
    /// Bootstrap token and lookup timeout.
    pub admin: AdminConfig,
    /// Check at start-up that the database holds every migration this binary knows, and
    /// refuse to start otherwise (true outside tests). Services never migrate: the Helm hook
    /// Job and `accessctl migrate` do.
    pub check_schema: bool,
    /// Postgres connections (`ACCESSHUB_ADMIN_DB_CONNECTIONS`, default 10: a change holds one for its audit record while it is made, see `audit`).
    pub db_connections: u32,
}

impl ServiceConfig {
    /// From the environment, like every accesshub service.
    pub fn from_env() -> Result<Self, ServiceError> {
        Ok(ServiceConfig {
            common: CommonConfig::from_env(SERVICE)?,
            secrets: SecretBox::from_env()?,
            admin: admin_from_env()?,
            check_schema: true,
            db_connections: env_or("ACCESSHUB_ADMIN_DB_CONNECTIONS", 10)?,
        })
    }

    /// For tests: an ephemeral port, no schema check (the test database is migrated).
    pub fn for_test(common: CommonConfig, secrets: SecretBox, admin: AdminConfig) -> Self {
        ServiceConfig {
            common,
            secrets,
            admin,
            check_schema: false,
            db_connections: 4,
        }
    }
}

/// [`AdminConfig::from_env`], refusing to start without a bootstrap token
/// (`ACCESSHUB_ADMIN_TOKEN`) unless `ACCESSHUB_MODE=dev`: an admin API nobody can call is a
/// broken install, found at start-up rather than at the first `accessctl` command.
fn admin_from_env() -> Result<AdminConfig, ConfigError> {
    accesshub_config::env_required_unless_dev("ACCESSHUB_ADMIN_TOKEN")?;
    Ok(AdminConfig::from_env())
}

/// A running admin service.
#[derive(Debug)]
pub struct AdminHandle {
    addr: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl AdminHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes in-flight requests.
    pub async fn shutdown(self) {
        self.stop.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "admin server stopped with an error"),
            Err(e) => tracing::error!(error = %e, "admin server task failed"),
        }
    }
}

/// Connects (lazily: a database or NATS that is still starting makes `/readyz` fail, not the
/// process), checks the schema (refusing one older than this binary), and serves.
pub async fn start(cfg: ServiceConfig) -> Result<AdminHandle, ServiceError> {
    let pool = accesshub_store::connect_lazy(&cfg.common.database_url, cfg.db_connections)?;
    if cfg.check_schema {
        accesshub_store::check_schema(&pool).await?;
    }
    let bus = accesshub_bus::connect(&cfg.common).await?;
    let registry = Registry::new();
    // Connections and webhook secrets are unsealed here (lookups, tests, rotation).
    registry.register(
        accesshub_store::DECRYPT_FAILURES,
        accesshub_store::DECRYPT_FAILURES_HELP,
        accesshub_store::decrypt_failures(SERVICE),
    );
    let ready_pool = pool.clone();
    let ready_bus = bus.clone();
    let readiness: ops::ReadinessCheck = Arc::new(move || {
        let pool = ready_pool.clone();
        let bus = ready_bus.clone();
        Box::pin(async move {
            if !bus.is_connected() {
                return Err("NATS not connected".to_owned());
            }
            accesshub_store::ping(&pool)
                .await
                .map_err(|_| "PostgreSQL not reachable".to_owned())
        })
    });
    let http_metrics = ops::HttpMetrics::new(&registry, SERVICE);
    tracing::info!(egress = %cfg.common.egress, "vendor egress allow-list");
    // The BEX look-ups call the booking system from here: addresses are checked at connect
    // time as in the workers and the reconciler.
    vendor_http::install_egress_policy(cfg.common.egress.clone());
    let state =
        AdminState::new(pool, cfg.secrets, bus, cfg.admin).with_egress(cfg.common.egress.clone());
    let app = mounted(state.clone())
        .merge(crate::console(&state))
        .merge(ops::ops_router(registry, readiness))
        .layer(middleware::from_fn_with_state(
            http_metrics,
            ops::track_http,
        ));
    let listener = tokio::net::TcpListener::bind(cfg.common.http_addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
    });
    tracing::info!(%addr, "admin API listening");
    Ok(AdminHandle { addr, stop, server })
}
