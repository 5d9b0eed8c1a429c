//! Lookups answered for the admin API / `accessctl` on `lookup.cloudpass`: `sites` lists the
//! API user's sites (administration → site mapping) and `time-restrictions` (parameter
//! `site`) a site's time restrictions (the default time restriction).

use std::sync::Arc;

use accesshub_connections::{
    CloudpassSettings, Connection, Vendor, VendorSettings,
    lookup::{LookupFailure, LookupItem, LookupRequest},
};
use accesshub_domain::Classify as _;
use vendor_http::RateLimiter;
use worker_runtime::lookups::vendor_failure;

use crate::client::{CloudpassClient, IdName};

/// `what`: the API user's sites.
pub const SITES: &str = "sites";
/// `what`: a site's time restrictions (needs the parameter `site`).
pub const TIME_RESTRICTIONS: &str = "time-restrictions";

fn client(s: &CloudpassSettings) -> Result<CloudpassClient, LookupFailure> {
    // Lookups are rare operator clicks: no rate limit of their own.
    CloudpassClient::new(s, Arc::new(RateLimiter::new(0.0, 1)))
        .map_err(|e| LookupFailure::vendor(e.to_string(), e.class()))
}

fn items(list: Vec<IdName>) -> Vec<LookupItem> {
    list.into_iter()
        .map(|x| LookupItem {
            id: x.id,
            name: x.name,
            detail: None,
        })
        .collect()
}

/// Answers one lookup with `conn` (found by the runtime from the request's tenant and
/// connection name).
pub async fn answer(
    conn: Connection,
    req: LookupRequest,
) -> Result<Vec<LookupItem>, LookupFailure> {
    let VendorSettings::Cloudpass(s) = &conn.settings else {
        return Err(LookupFailure::no_connection(
            &req.tenant,
            Vendor::Cloudpass,
            &req.connection,
        ));
    };
    let failure = |e: vendor_http::VendorError| vendor_failure(Vendor::Cloudpass, &e);
    match req.what.as_str() {
        SITES => Ok(items(client(s)?.sites().await.map_err(failure)?)),
        TIME_RESTRICTIONS => {
            let Some(site) = req.params.get("site").filter(|v| !v.is_empty()) else {
                return Err(LookupFailure::bad_request(format!(
                    "{TIME_RESTRICTIONS} needs the parameter \"site\" (a CloudPass site id, see {SITES:?})"
                )));
            };
            Ok(items(
                client(s)?.time_restrictions(site).await.map_err(failure)?,
            ))
        }
        other => Err(LookupFailure::bad_request(format!(
            "cloudpass answers {SITES:?} and {TIME_RESTRICTIONS:?}, not {other:?}"
        ))),
    }
}
