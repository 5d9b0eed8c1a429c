//! CloudPass simulator: the wire format is ours (see `shared/VENDORS.md`), the behaviour
//! (API users with permissions, sites, time restrictions, vehicle bookings) is CloudPass's.
//!
//! Rules enforced: client-credentials tokens; an API user without permission gets 403
//! `forbidden` on every API call; `reference` is unique per site (409 `conflict` carrying
//! `existing_id`); plates are uppercased and stripped of spaces and dashes, then must be 2–10
//! ASCII alphanumerics (422); `valid_until` must be after `valid_from` (422); the
//! `time_restriction_id` must exist at the site (422); lists paginate with `page`/`per_page`
//! (1–100, default 25).

mod api;

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
    /// Vehicle bookings of all sites, in creation order.
    pub vehicle_bookings: Vec<VehicleBooking>,
    #[serde(skip)]
    pub(crate) tokens: HashMap<String, Token>,
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
        });
    }

    /// Grants or withdraws an API user's permission (existing tokens are affected at once).
    pub fn cloudpass_set_permission(
        &self,
        client_id: &str,
        has_permission: bool,
    ) -> Result<(), SimError> {
        let mut s = lock(&self.inner.cloudpass);
        let u = s
            .api_users
            .iter_mut()
            .find(|u| u.client_id == client_id)
            .ok_or_else(|| {
                SimError::InvalidFixture(format!("no CloudPass API user {client_id}"))
            })?;
        u.has_permission = has_permission;
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
        lock(&self.inner.cloudpass).vehicle_bookings.clone()
    }

    /// Appends vehicle bookings as they are, without the API's validation or the per-site
    /// reference check: for benchmarks that need a million objects without a million POSTs
    /// (each create scans the site for a duplicate reference).
    pub fn cloudpass_insert_bookings(&self, bookings: impl IntoIterator<Item = VehicleBooking>) {
        lock(&self.inner.cloudpass)
            .vehicle_bookings
            .extend(bookings);
    }

    /// The vehicle booking with this reference at this site, if any.
    pub fn cloudpass_booking_by_reference(
        &self,
        site_id: &str,
        reference: &str,
    ) -> Option<VehicleBooking> {
        lock(&self.inner.cloudpass)
            .vehicle_bookings
            .iter()
            .find(|b| b.site_id == site_id && b.reference == reference)
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
                },
                ApiUser {
                    client_id: DEMO_NOPERM_CLIENT_ID.into(),
                    client_secret: DEMO_NOPERM_CLIENT_SECRET.into(),
                    has_permission: false,
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
