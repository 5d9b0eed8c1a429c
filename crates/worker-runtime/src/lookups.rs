//! Lookups (the admin API's dropdowns) answered by a worker with the same connections it
//! applies events with, so a lookup and the next event agree on credentials and mappings.
//! The worker only writes the vendor call; finding the connection, the NATS subscription and
//! the error answers are here, once, for every vendor.

use std::{future::Future, sync::Arc};

use accesshub_bus::Bus;
use accesshub_config::CommonConfig;
use accesshub_connections::{
    Connection, Vendor,
    lookup::{LookupError, LookupFailure, LookupItem, LookupRequest, serve_lookups},
};

use crate::source::ConnectionSource;

/// Answers `lookup.<vendor>` (namespaced) on `bus`: the request's connection is found by name
/// in `connections`, then `answer` asks the vendor. A missing connection answers
/// [`LookupFailure::no_connection`]. The subscription exists when this returns.
pub async fn serve<F, Fut>(
    bus: &Bus,
    vendor: Vendor,
    connections: Arc<dyn ConnectionSource>,
    answer: F,
) -> Result<tokio::task::JoinHandle<()>, LookupError>
where
    F: Fn(Connection, LookupRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<LookupItem>, LookupFailure>> + Send + 'static,
{
    let answer = Arc::new(answer);
    serve_lookups(bus, vendor, move |req: LookupRequest| {
        let connections = Arc::clone(&connections);
        let answer = Arc::clone(&answer);
        async move {
            let conn = connections
                .by_name(&req.tenant, vendor, &req.connection)
                .await
                .map_err(|e| LookupFailure::vendor(e.message, e.class))?;
            match conn {
                Some(conn) => answer(conn, req).await,
                None => Err(LookupFailure::no_connection(
                    &req.tenant,
                    vendor,
                    &req.connection,
                )),
            }
        }
    })
    .await
}

/// [`serve`] in the background on its own NATS connection, for a worker's `main` (call it
/// from `serve_main`'s handler closure with `cfg.common` and `cfg.connections`). A failure is
/// logged and disables lookups only; the worker keeps applying events.
pub fn spawn<F, Fut>(
    common: CommonConfig,
    vendor: Vendor,
    connections: Arc<dyn ConnectionSource>,
    answer: F,
) where
    F: Fn(Connection, LookupRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<LookupItem>, LookupFailure>> + Send + 'static,
{
    tokio::spawn(async move {
        let bus = match accesshub_bus::connect(&common).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, %vendor, "NATS unavailable: lookups disabled");
                return;
            }
        };
        match serve(&bus, vendor, connections, answer).await {
            Ok(task) => {
                tracing::info!(%vendor, "answering lookups");
                let _ = task.await;
            }
            Err(e) => tracing::warn!(error = %e, %vendor, "lookups disabled"),
        }
    });
}

/// The usual mapping of a vendor's HTTP status for lookups: 401/403 tell the operator where
/// to fix the credentials ([`LookupFailure::credentials`]); anything else is a vendor error.
pub fn vendor_failure(vendor: Vendor, e: &vendor_http::VendorError) -> LookupFailure {
    use accesshub_domain::Classify as _;
    match e.status() {
        Some(status @ (401 | 403)) => LookupFailure::credentials(vendor, status),
        _ => LookupFailure::vendor(e.to_string(), e.class()),
    }
}
