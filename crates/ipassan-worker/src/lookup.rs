//! Lookups answered for the admin API / `accessctl` on `lookup.ipassan`: `assets` lists the
//! site's bookable assets with their rules, so an operator can map facilities to asset GUIDs.

use accesshub_bus::Bus;
use accesshub_connections::lookup::{
    LookupError, LookupFailure, LookupItem, LookupRequest, serve_lookups,
};
use accesshub_connections::{ConnectionStore, IpassanSettings, Vendor, VendorSettings};
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

/// Answers one lookup with the tenant's stored connection.
pub async fn answer(
    store: &ConnectionStore,
    req: LookupRequest,
) -> Result<Vec<LookupItem>, LookupFailure> {
    if req.what != ASSETS {
        return Err(LookupFailure::bad_request(format!(
            "ipassan answers {ASSETS:?}, not {:?}",
            req.what
        )));
    }
    let conn = store
        .get(&req.tenant, Vendor::Ipassan, &req.connection)
        .await
        .map_err(|e| LookupFailure::vendor(e.to_string(), e.class()))?;
    match conn.map(|c| c.settings) {
        Some(VendorSettings::Ipassan(s)) => assets(&s).await,
        _ => Err(LookupFailure::no_connection(
            &req.tenant,
            Vendor::Ipassan,
            &req.connection,
        )),
    }
}

/// Subscribes to `lookup.ipassan` (namespaced) and answers from `store`.
pub async fn serve(
    bus: &Bus,
    store: ConnectionStore,
) -> Result<tokio::task::JoinHandle<()>, LookupError> {
    serve_lookups(bus, Vendor::Ipassan, move |req| {
        let store = store.clone();
        async move { answer(&store, req).await }
    })
    .await
}
