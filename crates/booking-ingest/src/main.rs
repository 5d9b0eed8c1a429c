//! `booking-ingest`: the webhook and NATS ingest service (see the library docs).

use anyhow::Context as _;

/// mimalloc: glibc's malloc (fastbin consolidation under many small, short-lived request
/// buffers) cost ~20 % of the service's CPU in the ingest profile.
// The image's single binary (crates/accesshub-image) brings its own.
#[cfg(not(accesshub_image))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = booking_ingest::IngestConfig::from_env().context("configuration")?;
    let _telemetry = accesshub_telemetry::init(booking_ingest::SERVICE, cfg.common.log_format)
        .context("telemetry")?;
    let handle = booking_ingest::start(cfg).await.context("start")?;
    accesshub_telemetry::ops::shutdown_signal().await;
    tracing::info!("shutting down: draining committers and the outbox relay");
    handle.shutdown().await;
    Ok(())
}
