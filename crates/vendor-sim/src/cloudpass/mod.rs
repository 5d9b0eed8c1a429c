//! CloudPass simulator: the wire format is ours (see `shared/VENDORS.md`), the behaviour
//! (API users with permissions, sites, time restrictions, vehicle bookings) is CloudPass's.
//!
//! Rules enforced: client-credentials tokens; an API user without permission gets 403
//! `forbidden` on every API call; an API user sees only its account's sites (another
//! account's site is 404, as if it did not exist); `reference` is unique per site (409 `conflict` carrying
//! `existing_id`; not with de-duplication off, see [`crate::SimState::set_dedupe`]); plates are uppercased and stripped of spaces and dashes, then must be 2–10
//! ASCII alphanumerics (422); `valid_until` must be after `valid_from` (422); the
//! `time_restriction_id` must exist at the site (422); lists paginate with `page`/`per_page`
//! (1–100, default 25).

mod api;
pub(crate) mod paged;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::state::{SimState, lock};

pub(crate) use api::router;

/// An API user ("Settings → Website Users") whose Client ID / secret obtain tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiUser {
    /// Client ID.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Whether the user has the API permission; without it every API call answers 403.
    #[serde(default = "yes")]
    pub has_permission: bool,
    /// The sites of the user's account; another account's site answers 404 as if it did not
    /// exist. Empty: every site.
    #[serde(default)]
    pub sites: Vec<String>,
}

impl ApiUser {
    /// Whether `site` belongs to the user's account.
    pub fn sees(&self, site: &str) -> bool {
        self.sites.is_empty() || self.sites.iter().any(|s| s == site)
    }
}

fn yes() -> bool {
    true
}

/// A CloudPass site (what a PMS administration maps to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Site id (string).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A time restriction defined at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeRestriction {
    /// The site it belongs to.
    pub site_id: String,
    /// Time restriction id (string).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A vehicle booking as stored (the wire form omits `site_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleBooking {
    /// Generated id (UUID text).
    pub id: String,
    /// The site it belongs to.
    pub site_id: String,
    /// Our idempotency key, unique per site.
    pub reference: String,
    /// Normalised plate: uppercase, no spaces or dashes.
    pub license_plate: String,
    /// Start of access.
    pub valid_from: DateTime<Utc>,
    /// End of access.
    pub valid_until: DateTime<Utc>,
    /// The time restriction applied.
    pub time_restriction_id: String,
    /// Free text (guest name).
    pub name: Option<String>,
    /// When it was created (simulated clock).
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) client_id: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Everything the CloudPass simulator holds.
#[derive(Debug, Default, Serialize)]
pub struct CloudPassState {
    /// API users.
    pub api_users: Vec<ApiUser>,
    /// Sites.
    pub sites: Vec<Site>,
    /// Time restrictions of all sites.
    pub time_restrictions: Vec<TimeRestriction>,
    /// Vehicle bookings of all sites (serialized as one list in creation order).
    pub vehicle_bookings: VehicleBookings,
    #[serde(skip)]
    pub(crate) tokens: HashMap<String, Token>,
    /// Deliberate deviations, switched on by tests (off after a reset).
    #[serde(skip)]
    pub(crate) modes: CloudPassModes,
}

/// Ways the simulator can behave worse than documented, to prove the client does not rely on
/// the vendor for its safety (`PUT /modes/cloudpass` on the control API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudPassModes {
    /// `GET …/vehicle-bookings?reference=` ignores the filter and lists the whole site (as an
    /// API that does not know the parameter would): a client that trusts the filter takes
    /// another guest's booking for its own.
    #[serde(default)]
    pub ignore_reference_filter: bool,
}

impl CloudPassState {
    fn api_user_mut(&mut self, client_id: &str) -> Result<&mut ApiUser, SimError> {
        self.api_users
            .iter_mut()
            .find(|u| u.client_id == client_id)
            .ok_or_else(|| SimError::InvalidFixture(format!("no CloudPass API user {client_id}")))
    }
}

/// Vehicle bookings indexed the way a real API pages them: per site in creation order
/// ([`paged::Paged`], O(log N + page) per list page), by id and by per-site reference (O(1)).
/// Before this, every list page filtered all bookings: O(N²) to list N.
#[derive(Debug, Default)]
pub struct VehicleBookings {
    items: paged::Grouped<VehicleBooking>,
    /// site → reference → sequence numbers, oldest first (more than one only when
    /// de-duplication is off or bookings were inserted raw).
    by_ref: HashMap<String, HashMap<String, Vec<u64>>>,
}

impl VehicleBookings {
    /// Number of bookings at all sites.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.len() == 0
    }

    /// Appends a booking (no validation: the API checks the reference before calling this).
    pub fn insert(&mut self, b: VehicleBooking) {
        let (site, id, reference) = (b.site_id.clone(), b.id.clone(), b.reference.clone());
        let seq = self.items.insert(&site, &id, b);
        self.index_ref(&site, reference, seq);
    }

    fn index_ref(&mut self, site: &str, reference: String, seq: u64) {
        let seqs = self
            .by_ref
            .entry(site.to_owned())
            .or_default()
            .entry(reference)
            .or_default();
        let at = seqs.partition_point(|s| *s < seq);
        seqs.insert(at, seq);
    }

    fn unindex_ref(&mut self, site: &str, reference: &str, seq: u64) {
        if let Some(refs) = self.by_ref.get_mut(site)
            && let Some(seqs) = refs.get_mut(reference)
        {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                refs.remove(reference);
            }
        }
    }

    /// The oldest booking with this reference at this site.
    pub fn by_reference(&self, site: &str, reference: &str) -> Option<&VehicleBooking> {
        let seq = *self.by_ref.get(site)?.get(reference)?.first()?;
        self.items.get_seq(site, seq)
    }

    /// Every booking with this reference at this site, oldest first.
    pub fn with_reference(&self, site: &str, reference: &str) -> Vec<&VehicleBooking> {
        self.by_ref
            .get(site)
            .and_then(|m| m.get(reference))
            .into_iter()
            .flatten()
            .filter_map(|s| self.items.get_seq(site, *s))
            .collect()
    }

    /// The booking with this id at this site.
    pub fn get(&self, site: &str, id: &str) -> Option<&VehicleBooking> {
        self.items.get(site, id)
    }

    /// Changes a booking in place (creation order kept); keeps the reference index right.
    pub fn update(
        &mut self,
        site: &str,
        id: &str,
        f: impl FnOnce(&mut VehicleBooking),
    ) -> Option<&VehicleBooking> {
        let (seq, b) = self.items.get_mut(site, id)?;
        let old_ref = b.reference.clone();
        f(b);
        let new_ref = b.reference.clone();
        if new_ref != old_ref {
            self.unindex_ref(site, &old_ref, seq);
            self.index_ref(site, new_ref, seq);
        }
        self.items.get_seq(site, seq)
    }

    /// Removes the booking with this id at this site.
    pub fn remove(&mut self, site: &str, id: &str) -> Option<VehicleBooking> {
        let (seq, b) = self.items.remove(site, id)?;
        self.unindex_ref(site, &b.reference, seq);
        Some(b)
    }

    /// Bookings at a site.
    pub fn count(&self, site: &str) -> usize {
        self.items.count(site)
    }

    /// Bookings `offset..offset + limit` of a site, in creation order: O(log N + limit).
    pub fn page(
        &self,
        site: &str,
        offset: usize,
        limit: usize,
    ) -> impl Iterator<Item = &VehicleBooking> {
        self.items.page(site, offset, limit)
    }

    /// All bookings of all sites in creation order (O(N log N); snapshots and tests).
    pub fn all(&self) -> Vec<&VehicleBooking> {
        self.items.all()
    }
}

impl Serialize for VehicleBookings {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.all())
    }
}

/// Fixture document for [`SimState::seed_cloudpass`] / `POST /seed/cloudpass`.
/// Objects are upserted by id (client id for API users).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloudPassFixture {
    /// API users to add or replace.
    #[serde(default)]
    pub api_users: Vec<ApiUser>,
    /// Sites with their time restrictions.
    #[serde(default)]
    pub sites: Vec<SiteFixture>,
}

/// A site and its time restrictions, for [`CloudPassFixture`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteFixture {
    /// Site id.
    pub id: String,
    /// Site name.
    pub name: String,
    /// `(id, name)` of the site's time restrictions.
    #[serde(default)]
    pub time_restrictions: Vec<IdName>,
}

/// An `{id, name}` pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdName {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// Demo API user with permission (documented in `docs/simulators.md`).
pub const DEMO_CLIENT_ID: &str = "demo-cloudpass-client";
/// Secret of [`DEMO_CLIENT_ID`].
pub const DEMO_CLIENT_SECRET: &str = "demo-cloudpass-secret";
/// Demo API user *without* permission (every API call → 403).
pub const DEMO_NOPERM_CLIENT_ID: &str = "demo-cloudpass-noperm";
/// Secret of [`DEMO_NOPERM_CLIENT_ID`].
pub const DEMO_NOPERM_CLIENT_SECRET: &str = "demo-cloudpass-noperm-secret";
/// Demo site "Amsterdam Centrum".
pub const DEMO_SITE_AMSTERDAM: &str = "cp-site-amsterdam";
/// Demo site "Utrecht Parkeergarage".
pub const DEMO_SITE_UTRECHT: &str = "cp-site-utrecht";
/// Demo time restriction "24/7" at Amsterdam.
pub const DEMO_TR_AMSTERDAM_24_7: &str = "cp-tr-ams-247";

impl SimState {
    /// Adds or replaces CloudPass API users, sites and time restrictions.
    pub fn seed_cloudpass(&self, f: CloudPassFixture) -> Result<(), SimError> {
        let mut s = lock(&self.inner.cloudpass);
        for u in f.api_users {
            s.api_users.retain(|x| x.client_id != u.client_id);
            s.api_users.push(u);
        }
        for site in f.sites {
            s.sites.retain(|x| x.id != site.id);
            s.sites.push(Site {
                id: site.id.clone(),
                name: site.name,
            });
            for tr in site.time_restrictions {
                s.time_restrictions
                    .retain(|x| x.id != tr.id || x.site_id != site.id);
                s.time_restrictions.push(TimeRestriction {
                    site_id: site.id.clone(),
                    id: tr.id,
                    name: tr.name,
                });
            }
        }
        Ok(())
    }

    /// Adds (or replaces) an API user; `has_permission = false` makes every API call 403.
    pub fn cloudpass_add_api_user(
        &self,
        client_id: &str,
        client_secret: &str,
        has_permission: bool,
    ) {
        let mut s = lock(&self.inner.cloudpass);
        s.api_users.retain(|x| x.client_id != client_id);
        s.api_users.push(ApiUser {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            has_permission,
            sites: Vec::new(),
        });
    }

    /// Limits an API user's account to `sites` (empty: every site).
    pub fn cloudpass_set_user_sites(
        &self,
        client_id: &str,
        sites: &[&str],
    ) -> Result<(), SimError> {
        lock(&self.inner.cloudpass).api_user_mut(client_id)?.sites =
            sites.iter().map(|x| (*x).to_owned()).collect();
        Ok(())
    }

    /// Grants or withdraws an API user's permission (existing tokens are affected at once).
    pub fn cloudpass_set_permission(
        &self,
        client_id: &str,
        has_permission: bool,
    ) -> Result<(), SimError> {
        lock(&self.inner.cloudpass)
            .api_user_mut(client_id)?
            .has_permission = has_permission;
        Ok(())
    }

    /// Adds (or renames) a site.
    pub fn cloudpass_add_site(&self, id: &str, name: &str) {
        let mut s = lock(&self.inner.cloudpass);
        s.sites.retain(|x| x.id != id);
        s.sites.push(Site {
            id: id.to_owned(),
            name: name.to_owned(),
        });
    }

    /// Adds a time restriction to an existing site.
    pub fn cloudpass_add_time_restriction(
        &self,
        site_id: &str,
        id: &str,
        name: &str,
    ) -> Result<(), SimError> {
        let mut s = lock(&self.inner.cloudpass);
        if !s.sites.iter().any(|x| x.id == site_id) {
            return Err(SimError::InvalidFixture(format!(
                "no CloudPass site {site_id}"
            )));
        }
        s.time_restrictions
            .retain(|x| x.id != id || x.site_id != site_id);
        s.time_restrictions.push(TimeRestriction {
            site_id: site_id.to_owned(),
            id: id.to_owned(),
            name: name.to_owned(),
        });
        Ok(())
    }

    /// All vehicle bookings (every site), in creation order.
    pub fn cloudpass_bookings(&self) -> Vec<VehicleBooking> {
        lock(&self.inner.cloudpass)
            .vehicle_bookings
            .all()
            .into_iter()
            .cloned()
            .collect()
    }

    /// Appends vehicle bookings as they are, without the API's validation or the per-site
    /// reference check (a duplicate reference is kept: the reference filter then lists every
    /// copy, oldest first): for benchmarks that need a million objects without a million
    /// POSTs, and for tests that need a duplicate the API would refuse.
    pub fn cloudpass_insert_bookings(&self, bookings: impl IntoIterator<Item = VehicleBooking>) {
        let mut s = lock(&self.inner.cloudpass);
        for b in bookings {
            s.vehicle_bookings.insert(b);
        }
    }

    /// Switches the deliberate deviations of [`CloudPassModes`].
    pub fn cloudpass_set_modes(&self, modes: CloudPassModes) {
        lock(&self.inner.cloudpass).modes = modes;
    }

    /// The deviations in force.
    pub fn cloudpass_modes(&self) -> CloudPassModes {
        lock(&self.inner.cloudpass).modes
    }

    /// The (first created) vehicle booking with this reference at this site, if any.
    pub fn cloudpass_booking_by_reference(
        &self,
        site_id: &str,
        reference: &str,
    ) -> Option<VehicleBooking> {
        lock(&self.inner.cloudpass)
            .vehicle_bookings
            .by_reference(site_id, reference)
            .cloned()
    }

    pub(crate) fn seed_cloudpass_demo(&self) {
        let tr = |id: &str, name: &str| IdName {
            id: id.to_owned(),
            name: name.to_owned(),
        };
        let fixture = CloudPassFixture {
            api_users: vec![
                ApiUser {
                    client_id: DEMO_CLIENT_ID.into(),
                    client_secret: DEMO_CLIENT_SECRET.into(),
                    has_permission: true,
                    sites: Vec::new(),
                },
                ApiUser {
                    client_id: DEMO_NOPERM_CLIENT_ID.into(),
                    client_secret: DEMO_NOPERM_CLIENT_SECRET.into(),
                    has_permission: false,
                    sites: Vec::new(),
                },
            ],
            sites: vec![
                SiteFixture {
                    id: DEMO_SITE_AMSTERDAM.into(),
                    name: "Amsterdam Centrum".into(),
                    time_restrictions: vec![
                        tr(DEMO_TR_AMSTERDAM_24_7, "24/7"),
                        tr("cp-tr-ams-day", "Daytime 07:00-23:00"),
                    ],
                },
                SiteFixture {
                    id: DEMO_SITE_UTRECHT.into(),
                    name: "Utrecht Parkeergarage".into(),
                    time_restrictions: vec![tr("cp-tr-utr-247", "24/7")],
                },
            ],
        };
        // Infallible for this fixture.
        let _ = self.seed_cloudpass(fixture);
    }
}

/// Normalises a plate (uppercase, no spaces/dashes) and checks 2–10 ASCII alphanumerics.
pub fn normalize_plate(raw: &str) -> Option<String> {
    let p: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = (2..=10).contains(&p.chars().count()) && p.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then_some(p)
}

/// `{error:{code, message}}` with the given status.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn booking(i: usize, site: &str) -> VehicleBooking {
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        VehicleBooking {
            id: format!("id-{i}"),
            site_id: site.to_owned(),
            reference: format!("ref-{i}"),
            license_plate: format!("PL{i}"),
            valid_from: t,
            valid_until: t + chrono::Duration::hours(1),
            time_restriction_id: "tr".into(),
            name: None,
            created_at: t,
        }
    }

    #[test]
    fn bookings_page_per_site_in_creation_order_and_keep_indexes_right() {
        let mut v = VehicleBookings::default();
        for i in 0..1000 {
            v.insert(booking(i, if i % 2 == 0 { "a" } else { "b" }));
        }
        assert_eq!(v.count("a"), 500);
        let page: Vec<&str> = v.page("a", 250, 3).map(|b| b.id.as_str()).collect();
        assert_eq!(page, ["id-500", "id-502", "id-504"]);
        assert!(v.remove("a", "id-1").is_none(), "wrong site");
        assert!(v.remove("a", "id-502").is_some());
        let page: Vec<&str> = v.page("a", 250, 3).map(|b| b.id.as_str()).collect();
        assert_eq!(page, ["id-500", "id-504", "id-506"]);
        assert!(v.by_reference("a", "ref-502").is_none());
        v.update("b", "id-3", |b| b.reference = "renamed".into())
            .unwrap();
        assert!(v.by_reference("b", "ref-3").is_none());
        assert_eq!(v.by_reference("b", "renamed").unwrap().id, "id-3");
        assert_eq!(v.len(), 999);
        let all = v.all();
        assert_eq!(all[0].id, "id-0");
        assert_eq!(all[1].id, "id-1");
        assert_eq!(all[998].id, "id-999");
        assert_eq!(v.page("b", 499, 10).count(), 1);
        assert_eq!(v.page("c", 0, 10).count(), 0);
    }
}
