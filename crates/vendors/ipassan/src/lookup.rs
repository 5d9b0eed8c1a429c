//! Lookups answered for the admin API / `accessctl` on `lookup.ipassan`: `assets` lists the
//! site's bookable assets with their rules, so an operator can map facilities to asset GUIDs.

use std::{sync::Arc, time::Duration};

use accesshub_bus::Bus;
use accesshub_connections::lookup::{LookupError, LookupFailure, LookupItem, LookupRequest};
use accesshub_connections::{
    Connection, ConnectionCache, ConnectionStore, IpassanSettings, Vendor, VendorSettings,
};
use accesshub_domain::Classify;
use vendor_http::{HttpSettings, VendorClient};

use crate::client::{IpassanClient, IpassanError, VENDOR};

/// `what` values this worker answers.
pub const ASSETS: &str = "assets";

/// Lists the connection's assets with slot, max booking time and the one-per-slot rule.
pub async fn assets(s: &IpassanSettings) -> Result<Vec<LookupItem>, LookupFailure> {
    let http = VendorClient::new(VENDOR, HttpSettings::default())
        .map_err(|e| LookupFailure::vendor(e.to_string(), e.class()))?;
    let list = IpassanClient::new(http, s)
        .list_assets()
        .await
        .map_err(|e| match e {
            IpassanError::AccessDenied { .. } => LookupFailure::credentials(Vendor::Ipassan, 403),
            e if e.status() == Some(401) => LookupFailure::credentials(Vendor::Ipassan, 401),
            e => LookupFailure::vendor(e.to_string(), e.class()),
        })?;
    Ok(list
        .into_iter()
        .map(|a| LookupItem {
            detail: Some(format!(
                "{}-minute slots, max {} minutes{}",
                a.time_slot_minutes,
                a.max_booking_minutes,
                if a.one_booking_per_slot {
                    ", one booking per slot"
                } else {
                    ""
                }
            )),
            id: a.uuid,
            name: a.name,
        })
        .collect())
}

/// Answers one lookup with `conn` (found by the runtime from the request's tenant and
/// connection name).
pub async fn answer(
    conn: Connection,
    req: LookupRequest,
) -> Result<Vec<LookupItem>, LookupFailure> {
    if req.what != ASSETS {
        return Err(LookupFailure::bad_request(format!(
            "ipassan answers {ASSETS:?}, not {:?}",
            req.what
        )));
    }
    match conn.settings {
        VendorSettings::Ipassan(s) => assets(&s).await,
        _ => Err(LookupFailure::no_connection(
            &req.tenant,
            Vendor::Ipassan,
            &req.connection,
        )),
    }
}

/// Subscribes to `lookup.ipassan` (namespaced) and answers from `store` (uncached; the
/// worker binary uses its own connections through `worker_runtime::lookups::spawn`).
pub async fn serve(
    bus: &Bus,
    store: ConnectionStore,
) -> Result<tokio::task::JoinHandle<()>, LookupError> {
    // TTL zero: every lookup reads the store, so a saved change is seen at once.
    let connections = Arc::new(ConnectionCache::new(store, Duration::ZERO));
    worker_runtime::lookups::serve(bus, Vendor::Ipassan, connections, answer).await
}
