//! `booking-ingest`: the webhook and NATS ingest service (see the library docs).

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = booking_ingest::IngestConfig::from_env().context("configuration")?;
    let _telemetry = accesshub_telemetry::init(booking_ingest::SERVICE, cfg.common.log_format)
        .context("telemetry")?;
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
