//! iPassan: one asset booking per booked facility booking, on the asset the connection maps
//! the facility to, for exactly the booked window.
//!
//! Listing goes through ipassan-worker's client (cursor pages of every mapped asset). The
//! reference is the worker's (`ah:<tenant>:facility:<key>`); iPassan does not enforce its
//! uniqueness, so two bookings may carry one reference — the one matching is kept, the other
//! is a stray. The vendor id is the worker's `stray_id` (`<asset>/<booking>`), which its
//! `remove` re-checks before deleting. Compared fields: asset, start and end (whole seconds).

use std::{collections::BTreeSet, sync::Arc};

use accesshub_connections::Connection;
use accesshub_domain::{Event, EventBody, EventKind, FacilityStatus};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};

use accesshub_inventory::{
    DesiredObject, Fingerprint, Inventory, InventoryError, Records, VendorObject, with_retry,
};

const VENDOR: &str = "ipassan";

fn fingerprint(asset: &str, start: &DateTime<Utc>, end: &DateTime<Utc>) -> u64 {
    let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Fingerprint::new()
        .field(asset)
        .field(&ts(start))
        .field(&ts(end))
        .finish()
}

/// The asset booking a facility booking should have (pure; mirrors ipassan-worker).
pub fn desired_objects(conn: &Connection, event: &Event) -> Result<Vec<DesiredObject>, String> {
    let s = conn.settings.ipassan().map_err(|e| e.to_string())?;
    let EventBody::Facility(f) = &event.body else {
        return Ok(Vec::new());
    };
    if f.status != FacilityStatus::Booked {
        return Ok(Vec::new());
    }
    let asset = crate::desired::asset_for(s, &event.tenant, &conn.name, &f.facility_id)
        .map_err(|e| e.to_string())?;
    Ok(vec![DesiredObject {
        reference: worker_runtime::reference(
            &event.tenant,
            EventKind::Facility,
            &event.booking_key,
        ),
        fingerprint: fingerprint(asset, &f.start, &f.end),
    }])
}

/// Lists asset bookings with ipassan-worker's client and keeps ours.
#[derive(Debug)]
pub struct IpassanInventory {
    rate: f64,
}

impl IpassanInventory {
    /// At most `rate` list pages per second per connection.
    pub fn new(rate: f64) -> Self {
        IpassanInventory {
            rate: rate.max(0.1),
        }
    }
}

fn vendor_err(e: crate::client::IpassanError) -> InventoryError {
    InventoryError::call(VENDOR, &e)
}

impl Inventory for IpassanInventory {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn kinds(&self) -> &'static [EventKind] {
        &[EventKind::Facility]
    }

    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
        _records: &'a Records,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>> {
        let prefix = worker_runtime::reference(&conn.tenant, EventKind::Facility, "");
        let setup = async move {
            let s = conn.settings.ipassan()?;
            let http = vendor_http::VendorClient::new(VENDOR, vendor_http::HttpSettings::default())
                .map_err(|e| InventoryError::Config {
                    vendor: VENDOR,
                    message: e.to_string(),
                })?
                .with_rate_limit(Arc::new(vendor_http::RateLimiter::new(self.rate, 20)));
            let client = Arc::new(crate::client::IpassanClient::new(http, s));
            let assets: BTreeSet<String> = s.facilities.values().cloned().collect();
            Ok::<_, InventoryError>((client, assets))
        };
        futures::stream::once(setup)
            .map_ok(move |(client, assets)| {
                let prefix = prefix.clone();
                futures::stream::iter(assets)
                    .then(move |asset| {
                        let client = client.clone();
                        async move {
                            let list = with_retry(|| async {
                                client.list_bookings(&asset, None).await.map_err(vendor_err)
                            })
                            .await?;
                            Ok::<_, InventoryError>((asset, list))
                        }
                    })
                    .map_ok(move |(asset, list)| {
                        let prefix = prefix.clone();
                        futures::stream::iter(list.into_iter().filter_map(move |b| {
                            let key = b.reference.as_deref()?.strip_prefix(prefix.as_str())?;
                            if key.is_empty() {
                                return None;
                            }
                            Some(Ok(VendorObject {
                                booking_key: key.to_owned(),
                                fingerprint: fingerprint(&asset, &b.start, &b.end),
                                vendor_id: crate::apply::stray_id(&asset, &b.uuid),
                                reference: b.reference.clone().unwrap_or_default(),
                            }))
                        }))
                    })
                    .try_flatten()
            })
            .try_flatten()
            .boxed()
    }

    fn desired(
        &self,
        conn: &Connection,
        event: &Event,
        _now: DateTime<Utc>,
    ) -> Result<Vec<DesiredObject>, String> {
        desired_objects(conn, event)
    }
}
