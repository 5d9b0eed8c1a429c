//! `reconciler`: the service binary. Connections come from the connection store (secrets
//! unsealed with `ACCESSHUB_ENCRYPTION_KEY`), or from `RECONCILER_CONNECTIONS_FILE` (a YAML
//! list) for local experiments.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use cloudpass_adapter::inventory::CloudpassInventory;
use dormakaba_adapter::inventory::DormakabaInventory;
use ipassan_adapter::inventory::IpassanInventory;
use reconciler::{
    Reconciler, Settings,
    connections::{ConnectionSource, StaticConnections},
    inventory::Inventory,
};
use tapkey_adapter::inventory::TapkeyInventory;

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = accesshub_config::CommonConfig::from_env("reconciler")?;
    let _telemetry = accesshub_telemetry::init("reconciler", cfg.log_format)?;
    // The reconciler lists vendors with the workers' clients: same egress policy.
    vendor_http::install_egress_policy(cfg.egress.clone());
    let pool = accesshub_store::connect_lazy(&cfg.database_url, 8)?;
    // Services never migrate (the Helm hook Job and `accessctl migrate` do).
    accesshub_store::check_schema(&pool)
        .await
        .context("database schema")?;
    let bus = accesshub_bus::connect(&cfg).await?;
    // Services never create or change streams outside dev mode (`accessctl streams apply`,
    // the migrations Job, does): wait for them as the workers do (then exit naming what is
    // missing, for Kubernetes to restart).
    worker_runtime::with_retries("streams", async || bus.prepare_streams(cfg.mode).await).await?;
    let connections: Arc<dyn ConnectionSource> =
        match accesshub_config::env_opt("RECONCILER_CONNECTIONS_FILE") {
            Some(p) => Arc::new(StaticConnections::from_yaml_file(&p)?),
            None => Arc::new(accesshub_connections::ConnectionStore::new(
                pool.clone(),
                accesshub_store::SecretBox::from_env()?,
            )),
        };
    let rate = accesshub_config::env_or(
        "RECONCILER_VENDOR_RATE",
        cloudpass_adapter::inventory::DEFAULT_RATE,
    )?;
    let inventories: Vec<Arc<dyn Inventory>> = vec![
        Arc::new(CloudpassInventory::with_rate(rate)),
        Arc::new(TapkeyInventory::new(rate)),
        Arc::new(IpassanInventory::new(rate)),
        // Lock systems are on-premises servers: probes get their own, lower rate.
        Arc::new(DormakabaInventory::new(accesshub_config::env_or(
            "RECONCILER_DORMAKABA_RATE",
            dormakaba_adapter::inventory::DEFAULT_RATE,
        )?)),
    ];
    let settings = Settings {
        poll_interval: accesshub_config::env_duration(
            "RECONCILER_POLL_INTERVAL",
            Duration::from_secs(5),
        )?,
        lease: accesshub_config::env_duration("RECONCILER_LEASE", Duration::from_secs(60))?,
        max_concurrent_runs: accesshub_config::env_or("RECONCILER_MAX_CONCURRENT_RUNS", 2usize)?,
        default_timezone: accesshub_config::env_or(
            "RECONCILER_DEFAULT_TIMEZONE",
            "UTC".to_owned(),
        )?,
        retention: reconciler::retention::RetentionSettings::from_env()?,
        upstream_poll: accesshub_config::env_duration(
            "RECONCILER_UPSTREAM_POLL",
            Duration::from_secs(60),
        )?,
        ..Settings::default()
    };
    // SyncMetrics registers the decrypt-failure counter too.
    let registry = accesshub_telemetry::Registry::new();
    // "Sync" re-reads the booking systems first, with the tenants' upstream credentials
    // (sealed: without the encryption key there is nothing to pull with).
    let puller = match accesshub_store::SecretBox::from_env() {
        Ok(keys) => Some(reconciler::pull::Puller::new(
            pool.clone(),
            bus.clone(),
            accesshub_upstreams::UpstreamStore::new(pool.clone(), keys),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "no encryption key: sync runs compare without pulling upstreams");
            None
        }
    };
    let mut rec = Reconciler::new(pool, bus, connections, inventories, settings)
        .with_metrics(reconciler::service::SyncMetrics::new(&registry));
    if let Some(p) = puller {
        rec = rec.with_puller(p);
    }
    let app = accesshub_telemetry::ops::ops_router(registry, rec.readiness());
    let listener = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("binding {}", cfg.http_addr))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "ops HTTP server stopped");
        }
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let s2 = shutdown.clone();
    tokio::spawn(async move {
        // SIGTERM (Kubernetes) as well as Ctrl-C: a run in progress is requeued, not lost.
        accesshub_telemetry::ops::shutdown_signal().await;
        s2.cancel();
    });
    rec.serve(shutdown).await;
    Ok(())
}
