//! `booking-ingest`: the webhook and NATS ingest service (see the library docs).

use anyhow::Context as _;

/// mimalloc: glibc's malloc (fastbin consolidation under many small, short-lived request
/// buffers) cost ~20 % of the service's CPU in the ingest profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = booking_ingest::IngestConfig::from_env().context("configuration")?;
    let _telemetry = accesshub_telemetry::init(booking_ingest::SERVICE, cfg.common.log_format)
        .context("telemetry")?;
    // The admin API (`/admin/v1`) is served by booking-ingest: its own small pool and NATS
    // connection, so admin traffic never competes with the committers for connections.
    let admin_pool = accesshub_store::connect_lazy(&cfg.common.database_url, 4)
        .context("admin API database pool")?;
    let admin_bus = accesshub_bus::connect(&cfg.common)
        .await
        .context("admin API NATS connection")?;
    cfg.extra_routes = Some(accesshub_admin::mounted(accesshub_admin::AdminState::new(
        admin_pool,
        cfg.secrets.clone(),
        admin_bus,
        accesshub_admin::AdminConfig::from_env(),
    )));
    let handle = booking_ingest::start(cfg).await.context("start")?;
    shutdown_signal().await;
    tracing::info!("shutting down: draining committers and the outbox relay");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
