//! `accesshub-admin`: the cluster-internal admin API service (see the library docs).

use anyhow::Context as _;

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = accesshub_admin::service::ServiceConfig::from_env().context("configuration")?;
    let _telemetry =
        accesshub_telemetry::init(accesshub_admin::service::SERVICE, cfg.common.log_format)
            .context("telemetry")?;
    let handle = accesshub_admin::service::start(cfg)
        .await
        .context("start")?;
    accesshub_telemetry::ops::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    handle.shutdown().await;
    Ok(())
}
