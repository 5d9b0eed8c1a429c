//! The CloudPass client — the only module that knows CloudPass's wire format (ours, see
//! shared/VENDORS.md), so adapting to the real API is a one-file change.

use std::sync::Arc;

use accesshub_connections::CloudpassSettings;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use vendor_http::{
    AuthedClient, HttpSettings, Method, RateLimiter, StatusCode, TokenSourceConfig, VendorClient,
    VendorError,
};

/// What the operator must do about a 403 (the API user lacks permissions).
pub const PERMISSION_HINT: &str = "CloudPass refused the request (403): check the API user's permissions on the CloudPass website (Settings → Website Users)";

/// Page size of [`CloudpassClient::find_all`]: the vendor's largest.
const FIND_PER_PAGE: u64 = 100;

/// A vehicle booking.
#[derive(Debug, Clone, Deserialize)]
pub struct VehicleBooking {
    /// CloudPass id.
    pub id: String,
    /// Our idempotency key.
    pub reference: String,
    /// Normalized plate.
    pub license_plate: String,
    /// Start.
    pub valid_from: DateTime<Utc>,
    /// End.
    pub valid_until: DateTime<Utc>,
    /// Time restriction.
    pub time_restriction_id: String,
}

/// The fields we set on a booking.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BookingFields {
    /// Our idempotency key.
    pub reference: String,
    /// Plate.
    pub license_plate: String,
    /// Start (UTC, seconds).
    #[serde(serialize_with = "secs")]
    pub valid_from: DateTime<Utc>,
    /// End (UTC, seconds).
    #[serde(serialize_with = "secs")]
    pub valid_until: DateTime<Utc>,
    /// Time restriction.
    pub time_restriction_id: String,
    /// Guest name shown in CloudPass.
    pub name: String,
}

fn secs<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl BookingFields {
    /// Whether `b` already matches these fields.
    pub fn matches(&self, b: &VehicleBooking) -> bool {
        b.license_plate == self.license_plate
            && b.valid_from == self.valid_from
            && b.valid_until == self.valid_until
            && b.time_restriction_id == self.time_restriction_id
    }
}

#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    meta: Option<PageMeta>,
}

#[derive(Deserialize)]
struct PageMeta {
    total: u64,
}

/// An id and name (sites, time restrictions).
#[derive(Debug, Clone, Deserialize)]
pub struct IdName {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// One connection's CloudPass API.
#[derive(Debug)]
pub struct CloudpassClient {
    http: AuthedClient,
    api: String,
}

/// Maps 403 to the operator hint; everything else keeps the shared classification.
fn map_err(e: VendorError) -> VendorError {
    if e.is_status(StatusCode::FORBIDDEN) {
        VendorError::Permanent(format!(
            "{PERMISSION_HINT}: {}",
            e.safe_body().unwrap_or_default()
        ))
    } else if e.is_status(StatusCode::UNAUTHORIZED) {
        VendorError::Permanent(format!(
            "CloudPass rejected the API user's credentials (401): check the client ID and secret: {}",
            e.safe_body().unwrap_or_default()
        ))
    } else {
        e
    }
}

impl CloudpassClient {
    /// A client for a connection; the token is cached inside.
    pub fn new(s: &CloudpassSettings, limiter: Arc<RateLimiter>) -> Result<Self, VendorError> {
        let base = s.base_url.trim_end_matches('/');
        let client =
            VendorClient::new("cloudpass", HttpSettings::default())?.with_rate_limit(limiter);
        Ok(CloudpassClient {
            http: AuthedClient::new(
                client,
                TokenSourceConfig {
                    token_url: format!("{base}/oauth/token"),
                    client_id: s.client_id.clone(),
                    client_secret: s.client_secret.expose().to_owned(),
                    scope: None,
                },
            ),
            api: format!("{base}/api/v1"),
        })
    }

    fn bookings_url(&self, site: &str) -> String {
        format!("{}/sites/{site}/vehicle-bookings", self.api)
    }

    /// Every booking carrying exactly our `reference` at `site`, in the vendor's (creation)
    /// order. The `reference` filter narrows the listing, but each row is checked here too and
    /// every page is read: were the filter ignored or fuzzy, trusting it would make us update
    /// or delete another guest's booking. Usually one row, or none.
    pub async fn find_all(
        &self,
        site: &str,
        reference: &str,
    ) -> Result<Vec<VehicleBooking>, VendorError> {
        let url = self.bookings_url(site);
        let mut ours = Vec::new();
        let mut seen = 0u64;
        for page in 1u64.. {
            let p: Page<VehicleBooking> = self
                .http
                .send_json("find_booking", |h| {
                    h.request(Method::GET, &url).query(&[
                        ("reference", reference),
                        ("page", &page.to_string()),
                        ("per_page", &FIND_PER_PAGE.to_string()),
                    ])
                })
                .await
                .map_err(map_err)?;
            let total = p.meta.map_or(0, |m| m.total);
            let rows = p.data.len() as u64;
            seen += rows;
            ours.extend(p.data.into_iter().filter(|b| b.reference == reference));
            if rows < FIND_PER_PAGE || seen >= total {
                break;
            }
        }
        Ok(ours)
    }

    /// One page of every booking at `site` (the reconciler's inventory), with the total
    /// number of bookings there.
    pub async fn list_page(
        &self,
        site: &str,
        page: u64,
        per_page: u64,
    ) -> Result<(Vec<VehicleBooking>, u64), VendorError> {
        let url = self.bookings_url(site);
        let p: Page<VehicleBooking> = self
            .http
            .send_json("list_bookings", |h| {
                h.request(Method::GET, &url)
                    .query(&[("page", page), ("per_page", per_page)])
            })
            .await
            .map_err(map_err)?;
        let total = p.meta.map(|m| m.total).unwrap_or(0);
        Ok((p.data, total))
    }

    /// Creates a booking. `Ok(None)` on 409: one with this reference exists already.
    pub async fn create(
        &self,
        site: &str,
        f: &BookingFields,
    ) -> Result<Option<VehicleBooking>, VendorError> {
        let url = self.bookings_url(site);
        let resp = self
            .http
            .send_raw("create_booking", |h| h.request(Method::POST, &url).json(f))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                vendor_http::decode_json("cloudpass", "create_booking", resp).await?,
            )),
            StatusCode::CONFLICT => Ok(None),
            _ => Err(map_err(
                VendorError::from_response("cloudpass", "create_booking", resp).await,
            )),
        }
    }

    /// Updates a booking to `f`.
    pub async fn update(
        &self,
        site: &str,
        id: &str,
        f: &BookingFields,
    ) -> Result<VehicleBooking, VendorError> {
        let url = format!("{}/{id}", self.bookings_url(site));
        self.http
            .send_json("update_booking", |h| h.request(Method::PATCH, &url).json(f))
            .await
            .map_err(map_err)
    }

    /// Deletes a booking; 404 means it is already gone.
    pub async fn delete(&self, site: &str, id: &str) -> Result<(), VendorError> {
        let url = format!("{}/{id}", self.bookings_url(site));
        let resp = self
            .http
            .send_raw("delete_booking", |h| h.request(Method::DELETE, &url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(map_err(
                VendorError::from_response("cloudpass", "delete_booking", resp).await,
            )),
        }
    }

    /// Sites (lookup dropdown: administration → site). Errors keep the HTTP status, so the
    /// lookup can answer 401/403 with `LookupFailure::credentials`.
    pub async fn sites(&self) -> Result<Vec<IdName>, VendorError> {
        let url = format!("{}/sites", self.api);
        let p: Page<IdName> = self
            .http
            .send_json("sites", |h| h.request(Method::GET, &url))
            .await?;
        Ok(p.data)
    }

    /// Time restrictions of a site (lookup dropdown: default time restriction). Errors keep
    /// the HTTP status, like [`sites`](Self::sites).
    pub async fn time_restrictions(&self, site: &str) -> Result<Vec<IdName>, VendorError> {
        // `site` comes from the lookup's query string: one escaped segment (review L8).
        let url = format!(
            "{}/sites/{}/time-restrictions",
            self.api,
            vendor_http::path_segment(site)?
        );
        let p: Page<IdName> = self
            .http
            .send_json("time_restrictions", |h| h.request(Method::GET, &url))
            .await?;
        Ok(p.data)
    }
}
