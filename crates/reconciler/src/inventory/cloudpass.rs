//! CloudPass: one vehicle booking per license plate of a confirmed reservation, at the
//! CloudPass site mapped to the reservation's administration.
//!
//! Reference format (shared with cloudpass-worker): `ah.<tenant>.<booking key>.<plate>`, tenant
//! and key escaped as subject tokens so `.` splits unambiguously. Only bookings whose reference
//! has this shape *and* this tenant are ours; everything else at the site is left alone.
//!
//! Compared fields: site, normalized plate, valid_from, valid_until (UTC, whole seconds) and
//! time restriction. The guest name is informational and not compared.

use std::{collections::BTreeSet, time::Duration};

use accesshub_connections::{CloudpassSettings, Connection, VendorSettings};
use accesshub_domain::{Event, EventBody, EventKind, subjects};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};
use serde::Deserialize;

use super::{DesiredObject, Fingerprint, Inventory, InventoryError, VendorObject};

const VENDOR: &str = "cloudpass";
/// CloudPass's largest page.
const PER_PAGE: u64 = 100;
/// Pages fetched concurrently (the vendor's rate limit is the real bound).
const PAGE_CONCURRENCY: usize = 4;

/// Our reference for one plate of one reservation.
pub fn reference(tenant: &str, booking_key: &str, plate: &str) -> String {
    format!(
        "ah.{}.{}.{}",
        subjects::token(tenant),
        subjects::token(booking_key),
        plate
    )
}

/// `(tenant, booking key, plate)` of one of our references; `None` for anything else.
pub fn parse_reference(r: &str) -> Option<(String, String, &str)> {
    let mut it = r.splitn(4, '.');
    if it.next()? != "ah" {
        return None;
    }
    let tenant = it.next()?;
    let key = it.next()?;
    let plate = it.next()?;
    if tenant.is_empty() || key.is_empty() || plate.is_empty() || plate.contains('.') {
        return None;
    }
    Some((subjects::untoken(tenant), subjects::untoken(key), plate))
}

/// CloudPass's plate rule: uppercase, no spaces or dashes, 2–10 ASCII alphanumerics.
pub fn normalize_plate(raw: &str) -> Option<String> {
    let p: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = (2..=10).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then_some(p)
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
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

fn settings(conn: &Connection) -> Result<&CloudpassSettings, InventoryError> {
    match &conn.settings {
        VendorSettings::Cloudpass(s) => Ok(s),
        _ => Err(InventoryError::Config {
            vendor: VENDOR,
            message: "not a CloudPass connection".into(),
        }),
    }
}

/// The vehicle bookings a reservation should have (pure; mirrors cloudpass-worker).
pub fn desired_objects(conn: &Connection, event: &Event) -> Result<Vec<DesiredObject>, String> {
    let s = settings(conn).map_err(|e| e.to_string())?;
    let EventBody::Reservation(r) = &event.body else {
        return Ok(Vec::new());
    };
    if !r.status.wants_access() || r.license_plates.is_empty() {
        return Ok(Vec::new());
    }
    let admin = s.administrations.get(&event.site).ok_or_else(|| {
        format!(
            "administration {:?} is not mapped to a CloudPass site",
            event.site
        )
    })?;
    let tr = admin
        .time_restriction_id
        .as_deref()
        .unwrap_or(&s.default_time_restriction_id);
    let from = r.check_in().map_err(|e| e.to_string())?
        - chrono::Duration::minutes(i64::from(s.window_before_minutes));
    let until = r.check_out().map_err(|e| e.to_string())?
        + chrono::Duration::minutes(i64::from(s.window_after_minutes));
    let from = trunc(from);
    let until = trunc(until);
    let mut plates = BTreeSet::new();
    for p in &r.license_plates {
        plates.insert(normalize_plate(p).ok_or_else(|| format!("invalid license plate {p:?}"))?);
    }
    Ok(plates
        .into_iter()
        .map(|p| DesiredObject {
            reference: reference(&event.tenant, &event.booking_key, &p),
            fingerprint: fingerprint(&admin.site_id, &p, &from, &until, tr),
        })
        .collect())
}

fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<WireBooking>,
    meta: Meta,
}

#[derive(Debug, Deserialize)]
struct Meta {
    total: u64,
}

#[derive(Debug, Deserialize)]
struct WireBooking {
    id: String,
    reference: String,
    license_plate: String,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    time_restriction_id: String,
}

/// Lists CloudPass vehicle bookings over HTTP.
#[derive(Debug, Clone)]
pub struct CloudpassInventory {
    http: reqwest::Client,
}

impl CloudpassInventory {
    /// With its own HTTP client (timeouts so a hung vendor fails the run instead of hanging it).
    pub fn new() -> Result<Self, InventoryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| InventoryError::Config {
                vendor: VENDOR,
                message: format!("HTTP client: {e}"),
            })?;
        Ok(CloudpassInventory { http })
    }

    async fn token(&self, s: &CloudpassSettings) -> Result<String, InventoryError> {
        let url = format!("{}/oauth/token", s.base_url.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", s.client_id.as_str()),
                ("client_secret", s.client_secret.expose()),
            ])
            .send()
            .await
            .map_err(transport)?;
        let t: TokenResponse = decode(resp).await?;
        Ok(t.access_token)
    }

    async fn page(
        &self,
        s: &CloudpassSettings,
        token: &str,
        site: &str,
        page: u64,
    ) -> Result<Page, InventoryError> {
        let url = format!(
            "{}/api/v1/sites/{site}/vehicle-bookings",
            s.base_url.trim_end_matches('/')
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .query(&[("page", page), ("per_page", PER_PAGE)])
            .send()
            .await
            .map_err(transport)?;
        decode(resp).await
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

fn transport(e: reqwest::Error) -> InventoryError {
    InventoryError::Transport {
        vendor: VENDOR,
        message: e.to_string(),
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, InventoryError> {
    let status = resp.status();
    if !status.is_success() {
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        return Err(InventoryError::Status {
            vendor: VENDOR,
            status: status.as_u16(),
            message: body.chars().take(300).collect(),
            retry_after,
        });
    }
    let bytes = resp.bytes().await.map_err(transport)?;
    serde_json::from_slice(&bytes).map_err(|e| InventoryError::Decode {
        vendor: VENDOR,
        message: e.to_string(),
    })
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
            let s = settings(conn)?;
            let token = self.token(s).await?;
            let mut total = 0u64;
            for site in Self::sites(s) {
                total += self.page(s, &token, &site, 1).await?.meta.total;
            }
            Ok(usize::try_from(total).unwrap_or(usize::MAX))
        })
    }

    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>> {
        let tenant = conn.tenant.clone();
        let stream = async_stream(self, conn).try_filter_map(move |(site, b)| {
            let key = parse_reference(&b.reference)
                .filter(|(t, _, _)| *t == tenant)
                .map(|(_, key, _)| key);
            let ours = key.map(|key| VendorObject {
                fingerprint: fingerprint(
                    &site,
                    &b.license_plate,
                    &b.valid_from,
                    &b.valid_until,
                    &b.time_restriction_id,
                ),
                vendor_id: format!("{site}/{}", b.id),
                booking_key: key,
                reference: b.reference,
            });
            futures::future::ready(Ok(ours))
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

/// Every booking of every mapped site, page by page (first page sequential for the total,
/// the rest a few at a time, in order).
fn async_stream<'a>(
    inv: &'a CloudpassInventory,
    conn: &'a Connection,
) -> BoxStream<'a, Result<(String, WireBooking), InventoryError>> {
    let fut = async move {
        let s = settings(conn)?;
        let token = inv.token(s).await?;
        Ok::<_, InventoryError>((s, token))
    };
    futures::stream::once(fut)
        .map_ok(move |(s, token)| {
            let sites = CloudpassInventory::sites(s);
            futures::stream::iter(sites)
                .then({
                    let token = token.clone();
                    move |site| {
                        let token = token.clone();
                        async move {
                            let first = inv.page(s, &token, &site, 1).await?;
                            Ok::<_, InventoryError>((site, token, first))
                        }
                    }
                })
                .map_ok(move |(site, token, first)| {
                    let pages = first.meta.total.div_ceil(PER_PAGE).max(1);
                    let first_items = futures::stream::iter(
                        first
                            .data
                            .into_iter()
                            .map({
                                let site = site.clone();
                                move |b| Ok((site.clone(), b))
                            })
                            .collect::<Vec<_>>(),
                    );
                    let rest = futures::stream::iter(2..=pages)
                        .map({
                            let site = site.clone();
                            move |p| {
                                let site = site.clone();
                                let token = token.clone();
                                async move {
                                    let page = inv.page(s, &token, &site, p).await?;
                                    Ok::<_, InventoryError>(futures::stream::iter(
                                        page.data
                                            .into_iter()
                                            .map(move |b| Ok((site.clone(), b)))
                                            .collect::<Vec<_>>(),
                                    ))
                                }
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
        let r = reference("acme.nl", "R 1.2", "AB12CD");
        assert_eq!(
            parse_reference(&r),
            Some(("acme.nl".to_owned(), "R 1.2".to_owned(), "AB12CD"))
        );
        assert_eq!(parse_reference("MANUAL-123"), None);
        assert_eq!(parse_reference("ah.t.k"), None);
        assert_eq!(normalize_plate("ab-12 cd").as_deref(), Some("AB12CD"));
        assert_eq!(normalize_plate("x"), None);
    }
}
