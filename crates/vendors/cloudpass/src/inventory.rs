//! CloudPass: one vehicle booking per license plate of a confirmed reservation, at the
//! CloudPass site mapped to the reservation's administration.
//!
//! Listing goes through cloudpass-worker's own client (token cache, error classification, rate
//! limit). The reference is the worker's: `ah:<tenant>:reservation:<booking key>:<PLATE>`
//! (`worker_runtime::reference` plus the normalized plate). Only bookings whose reference starts
//! with this tenant's prefix are ours; everything else at the site is left alone.
//!
//! Compared fields are exactly those of the worker's `BookingFields::matches`: normalized plate,
//! valid_from, valid_until (UTC, whole seconds) and time restriction — plus the site. The guest
//! name is informational and not compared. The desired side ([`desired_objects`]) is the
//! worker's own pure [`crate::desired::desired_bookings`], the function its `apply` sets.

use std::{collections::BTreeSet, sync::Arc};

use accesshub_connections::{CloudpassSettings, Connection};
use accesshub_domain::{Event, EventBody, EventKind};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};

use accesshub_inventory::{
    DesiredObject, Fingerprint, Inventory, InventoryError, Records, VendorObject, with_retry,
};
use worker_runtime::ClientCache;

const VENDOR: &str = "cloudpass";
/// CloudPass's largest page.
const PER_PAGE: u64 = 100;
/// Offset pages fetched concurrently (the vendor's rate limit is the real bound). Offset
/// pages are independent requests, so they can be in flight together, unlike cursor pages.
pub const PAGE_CONCURRENCY: usize = 4;

/// Our reference for one plate of one reservation (what cloudpass-worker sets).
pub fn reference(tenant: &str, booking_key: &str, plate: &str) -> String {
    crate::desired::plate_reference(
        &worker_runtime::reference(tenant, EventKind::Reservation, booking_key),
        plate,
    )
}

/// `(booking key, plate)` of one of `tenant`'s references; `None` for anything else (other
/// tenants' objects, objects created by hand).
pub fn parse_reference<'a>(tenant: &str, r: &'a str) -> Option<(&'a str, &'a str)> {
    let prefix = worker_runtime::reference(tenant, EventKind::Reservation, "");
    let rest = r.strip_prefix(prefix.as_str())?;
    let (key, plate) = rest.rsplit_once(':')?;
    (!key.is_empty() && !plate.is_empty()).then_some((key, plate))
}

/// The worker's normalization, then CloudPass's plate rule (2–10 ASCII alphanumerics): a plate
/// the vendor would refuse makes the booking unjudgeable (failed), not a repair every night.
pub fn normalize_plate(raw: &str) -> Option<String> {
    let p = crate::normalize_plate(raw);
    let ok = (2..=10).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then_some(p)
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The time restriction as compared: only when the connection re-applies it. Otherwise an
/// existing booking keeps whatever restriction it has (the configured one is for new
/// bookings), so a difference there is no drift to repair.
pub fn compared_time_restriction(reapply: bool, time_restriction_id: &str) -> &str {
    if reapply { time_restriction_id } else { "" }
}

/// Fingerprint of the compared fields.
pub fn fingerprint(
    site_id: &str,
    plate: &str,
    valid_from: &DateTime<Utc>,
    valid_until: &DateTime<Utc>,
    time_restriction_id: &str,
) -> u64 {
    Fingerprint::new()
        .field(site_id)
        .field(plate)
        .field(&ts(valid_from))
        .field(&ts(valid_until))
        .field(time_restriction_id)
        .finish()
}

/// The vehicle bookings a reservation should have: cloudpass-worker's own
/// [`crate::desired_bookings`] (what its `apply` sets), reduced to reference and
/// fingerprint. A plate CloudPass would refuse makes the booking unjudgeable.
pub fn desired_objects(conn: &Connection, event: &Event) -> Result<Vec<DesiredObject>, String> {
    let s = conn.settings.cloudpass().map_err(|e| e.to_string())?;
    let EventBody::Reservation(r) = &event.body else {
        return Ok(Vec::new());
    };
    let base = worker_runtime::reference(&event.tenant, EventKind::Reservation, &event.booking_key);
    let (site, bookings) =
        match crate::desired_bookings(s, &event.site, &base, r, event.occurred_at) {
            Ok(x) => x,
            // An administration the connection does not list has access control off (issue 21:
            // install per administration; another upstream's reservations of the same tenant
            // land here too): no vehicle booking should exist for it. Not a failure of the run.
            Err(crate::DesiredError::Unmapped(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
    bookings
        .into_iter()
        .map(|b| {
            let plate = normalize_plate(&b.license_plate).ok_or_else(|| {
                format!(
                    "invalid license plate {:?}",
                    accesshub_domain::pii::mask_plate(&b.license_plate)
                )
            })?;
            Ok(DesiredObject {
                fingerprint: fingerprint(
                    &site,
                    &plate,
                    &trunc(b.valid_from),
                    &trunc(b.valid_until),
                    compared_time_restriction(s.reapply_time_restriction, &b.time_restriction_id),
                ),
                reference: b.reference,
            })
        })
        .collect()
}

fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Lists CloudPass vehicle bookings with cloudpass-worker's client.
#[derive(Debug)]
pub struct CloudpassInventory {
    /// List requests per second per connection (the vendor's rate limit is shared with the
    /// worker: keep this well below it).
    rate: f64,
    /// Clients per connection (token cache); replaced when the connection's version changes.
    clients: ClientCache<crate::CloudpassClient>,
}

impl CloudpassInventory {
    /// An inventory listing at most [`DEFAULT_RATE`] pages per second per connection.
    pub fn new() -> Result<Self, InventoryError> {
        Ok(Self::with_rate(DEFAULT_RATE))
    }

    /// An inventory listing at most `rate` pages per second per connection.
    pub fn with_rate(rate: f64) -> Self {
        CloudpassInventory {
            rate: rate.max(0.1),
            clients: Default::default(),
        }
    }

    async fn client(
        &self,
        conn: &Connection,
    ) -> Result<Arc<crate::CloudpassClient>, InventoryError> {
        let s = conn.settings.cloudpass()?;
        self.clients
            .get_or_try_init(conn, || {
                let limiter = Arc::new(vendor_http::RateLimiter::new(self.rate, 20));
                crate::CloudpassClient::new(s, limiter).map_err(|e| vendor_err(&e))
            })
            .await
    }

    fn sites(s: &CloudpassSettings) -> Vec<String> {
        let set: BTreeSet<&str> = s
            .administrations
            .values()
            .map(|a| a.site_id.as_str())
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }
}

/// Default pages per second the listing may request from one connection.
pub const DEFAULT_RATE: f64 = 50.0;

fn vendor_err(e: &vendor_http::VendorError) -> InventoryError {
    InventoryError::call(VENDOR, e)
}

impl Inventory for CloudpassInventory {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn kinds(&self) -> &'static [EventKind] {
        &[EventKind::Reservation]
    }

    fn size_hint<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> futures::future::BoxFuture<'a, Result<usize, InventoryError>> {
        Box::pin(async move {
            let client = self.client(conn).await?;
            let mut total = 0u64;
            for site in Self::sites(conn.settings.cloudpass()?) {
                total += client
                    .list_page(&site, 1, 1)
                    .await
                    .map_err(|e| vendor_err(&e))?
                    .1;
            }
            Ok(usize::try_from(total).unwrap_or(usize::MAX))
        })
    }

    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
        _records: &'a Records,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>> {
        let tenant = conn.tenant.clone();
        let reapply = conn
            .settings
            .cloudpass()
            .is_ok_and(|s| s.reapply_time_restriction);
        let stream = all_bookings(self, conn).try_filter_map(move |(site, b)| {
            futures::future::ready(Ok(vendor_object(&tenant, &site, b, reapply)))
        });
        Box::pin(stream)
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

type Booking = crate::client::VehicleBooking;

/// The comparison view of one listed booking, if it carries `tenant`'s reference.
/// The time restriction takes part only when the connection re-applies it
/// ([`compared_time_restriction`]).
pub fn vendor_object(
    tenant: &str,
    site: &str,
    b: Booking,
    reapply_time_restriction: bool,
) -> Option<VendorObject> {
    let key = parse_reference(tenant, &b.reference).map(|(key, _)| key.to_owned())?;
    Some(VendorObject {
        fingerprint: fingerprint(
            site,
            &b.license_plate,
            &b.valid_from,
            &b.valid_until,
            compared_time_restriction(reapply_time_restriction, &b.time_restriction_id),
        ),
        vendor_id: format!("{site}/{}", b.id),
        booking_key: key,
        reference: b.reference,
    })
}

/// Every booking of every mapped site, page by page: the first page of a site gives the
/// total, the rest are fetched a few at a time, in order.
fn all_bookings<'a>(
    inv: &'a CloudpassInventory,
    conn: &'a Connection,
) -> BoxStream<'a, Result<(String, Booking), InventoryError>> {
    let setup = async move {
        let s = conn.settings.cloudpass()?;
        Ok::<_, InventoryError>((inv.client(conn).await?, CloudpassInventory::sites(s)))
    };
    futures::stream::once(setup)
        .map_ok(move |(client, sites)| {
            futures::stream::iter(sites)
                .then(move |site| {
                    let client = client.clone();
                    async move {
                        let (first, total) = with_retry(|| async {
                            client
                                .list_page(&site, 1, PER_PAGE)
                                .await
                                .map_err(|e| vendor_err(&e))
                        })
                        .await?;
                        Ok::<_, InventoryError>((client, site, first, total))
                    }
                })
                .map_ok(move |(client, site, first, total)| {
                    let pages = total.div_ceil(PER_PAGE).max(1);
                    let tag = |site: String, v: Vec<Booking>| {
                        futures::stream::iter(v.into_iter().map(move |b| Ok((site.clone(), b))))
                    };
                    let first_items = tag(site.clone(), first);
                    let rest = futures::stream::iter(2..=pages)
                        .map(move |p| {
                            let client = client.clone();
                            let site = site.clone();
                            async move {
                                let (items, _) = with_retry(|| async {
                                    client
                                        .list_page(&site, p, PER_PAGE)
                                        .await
                                        .map_err(|e| vendor_err(&e))
                                })
                                .await?;
                                Ok::<_, InventoryError>(tag(site, items))
                            }
                        })
                        .buffered(PAGE_CONCURRENCY)
                        .try_flatten();
                    first_items.chain(rest)
                })
                .try_flatten()
        })
        .try_flatten()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_roundtrip_and_foreign_ones_are_rejected() {
        let r = reference("acme", "R:1", "AB12CD");
        assert_eq!(r, "ah:acme:reservation:R:1:AB12CD");
        assert_eq!(parse_reference("acme", &r), Some(("R:1", "AB12CD")));
        assert_eq!(parse_reference("other", &r), None);
        assert_eq!(parse_reference("acme", "MANUAL-123"), None);
        assert_eq!(parse_reference("acme", "ah:acme:pass:P1"), None);
        assert_eq!(normalize_plate("ab-12 cd").as_deref(), Some("AB12CD"));
        assert_eq!(normalize_plate("x"), None);
    }

    /// A reservation of an administration the connection does not list (another upstream's,
    /// or one not activated) wants nothing at CloudPass: a full sync must not count it as
    /// failed (it did: 32 "failed" of 64 checked on a tenant with BEX and Clock), nor create.
    #[test]
    fn a_reservation_of_an_unmapped_administration_wants_nothing_and_is_no_failure() {
        use accesshub_connections::{
            CloudpassAdministration, CloudpassSettings, Secret, VendorSettings,
        };
        use accesshub_domain::{ReservationStatus, Source};
        let conn = Connection {
            tenant: "acme".into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Cloudpass(CloudpassSettings {
                base_url: "https://x".into(),
                client_id: "c".into(),
                client_secret: Secret::new("s"),
                administrations: [(
                    "12".to_owned(),
                    CloudpassAdministration {
                        site_id: "s".into(),
                        time_restriction_id: None,
                    },
                )]
                .into(),
                default_time_restriction_id: "tr".into(),
                reapply_time_restriction: false,
                window_before_minutes: 30,
                window_after_minutes: 30,
            }),
            version: 1,
        };
        let event = |site: &str| {
            Event::new(
                "acme",
                site,
                "R1",
                1,
                Source::Bex,
                "2030-06-30T10:00:00Z".parse().unwrap(),
                EventBody::Reservation(crate::desired::tests::stay(ReservationStatus::Confirmed)),
            )
        };
        assert_eq!(desired_objects(&conn, &event("12")).unwrap().len(), 1);
        assert_eq!(desired_objects(&conn, &event("77")), Ok(Vec::new()));
    }
}
