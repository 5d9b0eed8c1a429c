//! Tapkey: one grant per lock mapped to the pass type, valid until the pass expires.
//!
//! Tapkey grants carry no reference field. tapkey-worker records the grant ids it issued in the
//! booking's binding (`vendor_ids.grants`: lock → grant id), so a grant is *ours* exactly when
//! its id is in one of this tenant's Tapkey bindings; every other grant of the owner account is
//! never returned, never touched. The comparison key is `<booking key>#<lock>`.
//!
//! Compared fields: lock and `validBefore` (the pass's expiry, millisecond precision). The
//! start is not compared: when upstream gives none the worker keeps the first event's time,
//! which the desired state in Postgres does not carry.
//!
//! Ownership comes from the worker's records, which the engine hands over (grant id → booking
//! key):
//! ~100 bytes per grant, fine for the pass volumes Tapkey owner accounts hold (tens of
//! thousands), not meant for a million.

use std::{collections::HashMap, sync::Arc};

use accesshub_connections::Connection;
use accesshub_domain::{Event, EventBody, EventKind};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};

use crate::desired::desired_grants;
use accesshub_inventory::{
    DesiredObject, Fingerprint, Inventory, InventoryError, Records, VendorObject, with_retry,
};

const VENDOR: &str = "tapkey";
const PAGE: u64 = 500;

/// Comparison key of one grant of one pass.
pub fn reference(booking_key: &str, lock: &str) -> String {
    format!("{booking_key}#{lock}")
}

fn fingerprint(lock: &str, valid_before: Option<&DateTime<Utc>>) -> u64 {
    let before = valid_before
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default();
    Fingerprint::new().field(lock).field(&before).finish()
}

/// The grants a pass should have: the worker's own [`desired_grants`], reduced to reference
/// and fingerprint.
pub fn desired_objects(
    conn: &Connection,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Vec<DesiredObject>, String> {
    let s = conn.settings.tapkey().map_err(|e| e.to_string())?;
    let EventBody::Pass(pass) = &event.body else {
        return Ok(Vec::new());
    };
    let d = desired_grants(s, pass, now);
    let locks = d.wanted_locks(&pass.pass_type).map_err(|e| e.to_string())?;
    Ok(locks
        .iter()
        .map(|lock| DesiredObject {
            reference: reference(&event.booking_key, lock),
            fingerprint: fingerprint(lock, Some(&d.valid_before)),
        })
        .collect())
}

/// Lists the owner account's active grants with tapkey-worker's client and keeps ours.
#[derive(Debug)]
pub struct TapkeyInventory {
    rate: f64,
}

impl TapkeyInventory {
    /// At most `rate` list pages per second.
    pub fn new(rate: f64) -> Self {
        TapkeyInventory {
            rate: rate.max(0.1),
        }
    }
}

/// Grant id → booking key, from the worker's records (`grants`: lock → grant id).
fn owned(records: &Records) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (key, ids) in records {
        if let Some(grants) = ids.get("grants").and_then(|g| g.as_object()) {
            for id in grants.values().filter_map(|v| v.as_str()) {
                map.insert(id.to_owned(), key.clone());
            }
        }
    }
    map
}

fn vendor_err(e: vendor_http::VendorError) -> InventoryError {
    InventoryError::call(VENDOR, &e)
}

impl Inventory for TapkeyInventory {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn kinds(&self) -> &'static [EventKind] {
        &[EventKind::Pass]
    }

    /// Grants carry no reference: ours are those the worker recorded.
    fn needs_records(&self) -> bool {
        true
    }

    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
        records: &'a Records,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>> {
        let setup = async move {
            let s = conn.settings.tapkey()?;
            let limiter = Arc::new(vendor_http::RateLimiter::new(self.rate, 20));
            let client = Arc::new(crate::TapkeyClient::new(s, limiter).map_err(vendor_err)?);
            let owned = Arc::new(owned(records));
            Ok::<_, InventoryError>((client, owned))
        };
        futures::stream::once(setup)
            .map_ok(|(client, owned)| {
                futures::stream::try_unfold(Some(0u64), move |skip| {
                    let client = client.clone();
                    async move {
                        let Some(skip) = skip else {
                            return Ok::<_, InventoryError>(None);
                        };
                        let page = with_retry(|| async {
                            client
                                .list_active_grants(skip, PAGE)
                                .await
                                .map_err(vendor_err)
                        })
                        .await?;
                        let next = (page.len() as u64 == PAGE).then_some(skip + PAGE);
                        Ok(Some((
                            futures::stream::iter(page.into_iter().map(Ok)),
                            next,
                        )))
                    }
                })
                .try_flatten()
                .try_filter_map(move |g| {
                    let ours = owned.get(&g.id).map(|key| VendorObject {
                        reference: reference(key, &g.bound_lock_id),
                        booking_key: key.clone(),
                        fingerprint: fingerprint(&g.bound_lock_id, g.valid_before.as_ref()),
                        vendor_id: g.id,
                    });
                    futures::future::ready(Ok(ours))
                })
            })
            .try_flatten()
            .boxed()
    }

    fn desired(
        &self,
        conn: &Connection,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Vec<DesiredObject>, String> {
        desired_objects(conn, event, now)
    }
}
