//! `dormakaba-worker`: reservations and key requests → Saflok / Ambiance. Everything but the
//! handler comes from worker-runtime's `serve_main`; `encoder-test` lookups are answered with
//! the worker's own connections.
//!
//! `dormakaba-worker edge` is the same binary at a hotel: the thin
//! relay between the local leaf node and the lock server on the LAN (docs/deploy.md
//! "On-premises lock servers"). It needs no database and no inbound port.

use std::time::Duration;

use accesshub_config::CommonConfig;
use accesshub_connections::Vendor;
use dormakaba_adapter::edge::{EdgeLink, RelayConfig, run_relay};
use dormakaba_adapter::{DormakabaHandler, WORKER};
use tokio_util::sync::CancellationToken;

/// Service name of the edge relay (logs, traces, NATS connection name).
const EDGE: &str = "dormakaba-edge";

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    // Not an ACCESSHUB_MODE value: that one says production or dev (fail-fast configuration).
    if std::env::args().nth(1).as_deref() == Some("edge") {
        return edge_main().await;
    }
    worker_runtime::serve_main(WORKER, |cfg| {
        worker_runtime::lookups::spawn(
            cfg.common.clone(),
            Vendor::Dormakaba,
            cfg.connections.clone(),
            dormakaba_adapter::lookup::answer,
        );
        let link = EdgeLink::new(cfg.common.clone(), &cfg.registry);
        let interval =
            accesshub_config::env_duration("ACCESSHUB_EDGE_PING_INTERVAL", Duration::from_secs(5))?;
        let (common, watched) = (cfg.common.clone(), link.clone());
        tokio::spawn(async move {
            let bus = match accesshub_bus::connect(&common).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "edge watcher: NATS");
                    return;
                }
            };
            let pool = match accesshub_store::connect_lazy(&common.database_url, 2) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "edge watcher: Postgres");
                    return;
                }
            };
            dormakaba_adapter::resume::watch(
                watched,
                pool,
                bus,
                interval,
                CancellationToken::new(),
            )
            .await;
        });
        Ok(DormakabaHandler::with_edge(link))
    })
    .await?;
    Ok(())
}

/// The edge relay: local leaf node in, lock server on the LAN out.
async fn edge_main() -> anyhow::Result<()> {
    worker_runtime::install_crypto_provider();
    let common = CommonConfig::from_env(EDGE)?;
    let _telemetry = accesshub_telemetry::init(EDGE, common.log_format)?;
    let cfg = RelayConfig::from_env()?;
    let bus = accesshub_bus::connect(&common).await?;
    let client = bus.client.clone();
    let ready_client = client.clone();
    let readiness: accesshub_telemetry::ops::ReadinessCheck = std::sync::Arc::new(move || {
        let c = ready_client.clone();
        Box::pin(async move {
            if c.connection_state() == async_nats::connection::State::Connected {
                Ok(())
            } else {
                Err("not connected to the local leaf node".to_owned())
            }
        })
    });
    let registry = accesshub_telemetry::Registry::default();
    let listener = tokio::net::TcpListener::bind(common.http_addr).await?;
    let app = accesshub_telemetry::ops::ops_router(registry, readiness);
    let ops = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "ops server stopped");
        }
    });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        worker_runtime::shutdown_signal().await;
        stop.cancel();
    });
    let result = run_relay(client, cfg, shutdown).await;
    ops.abort();
    result?;
    Ok(())
}
