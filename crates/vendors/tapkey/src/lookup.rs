//! Lookups answered for the admin API / `accessctl` on `lookup.tapkey`: `locks` lists the
//! locks bound to the connection's owner account, so an operator can map pass types to lock
//! ids (`pass_types`).

use std::sync::Arc;

use accesshub_connections::{
    Connection, Vendor, VendorSettings,
    lookup::{LookupFailure, LookupItem, LookupRequest},
};
use accesshub_domain::Classify as _;
use vendor_http::RateLimiter;
use worker_runtime::lookups::vendor_failure;

use crate::client::TapkeyClient;

/// `what`: the owner account's bound locks.
pub const LOCKS: &str = "locks";

/// Answers one lookup with `conn` (found by the runtime from the request's tenant and
/// connection name).
pub async fn answer(
    conn: Connection,
    req: LookupRequest,
) -> Result<Vec<LookupItem>, LookupFailure> {
    let VendorSettings::Tapkey(s) = &conn.settings else {
        return Err(LookupFailure::no_connection(
            &req.tenant,
            Vendor::Tapkey,
            &req.connection,
        ));
    };
    if req.what != LOCKS {
        return Err(LookupFailure::bad_request(format!(
            "tapkey answers {LOCKS:?}, not {:?}",
            req.what
        )));
    }
    // Lookups are rare operator clicks: no rate limit of their own.
    let client = TapkeyClient::new(s, &conn.tenant, Arc::new(RateLimiter::new(0.0, 1)))
        .map_err(|e| LookupFailure::vendor(e.to_string(), e.class()))?;
    let locks = client
        .bound_locks()
        .await
        .map_err(|e| vendor_failure(Vendor::Tapkey, &e))?;
    Ok(locks
        .into_iter()
        .map(|l| LookupItem {
            detail: Some(if l.active { "active" } else { "inactive" }.to_owned()),
            id: l.id,
            name: l.title,
        })
        .collect())
}
