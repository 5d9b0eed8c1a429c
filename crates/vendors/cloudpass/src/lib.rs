//! cloudpass-worker: BEX reservations → CloudPass vehicle bookings (seed 000).
//!
//! A confirmed (or checked-in) reservation gives one vehicle booking per normalized license
//! plate at the CloudPass site mapped to its administration, with the connection's default
//! time restriction (or the administration's), valid from check-in minus the window to
//! check-out plus the window, computed in the site's timezone (DST-correct, via
//! `Reservation::check_in/check_out`). Plates added or removed, dates moved, cancellation:
//! the bookings follow. Each booking's `reference` (`ah:<tenant>:reservation:<key>:<PLATE>`)
//! is our idempotency key: looked up before every create, and a 409 on create means "exists".

pub mod client;
pub mod inventory;
pub mod lookup;

use std::collections::{BTreeMap, BTreeSet};

use accesshub_connections::{CloudpassSettings, Vendor, VendorSettings};
use accesshub_domain::{Event, EventBody, EventKind, Reservation, sync::RemoveCommand};
use serde::{Deserialize, Serialize};
use worker_runtime::{ApplyContext, ApplyOutcome, Binding, ClientCache, Handler, HandlerError};

use client::BookingFields;
pub use client::CloudpassClient;

/// Worker name (consumer, metrics, DLQ subject).
pub const NAME: &str = "cloudpass-worker";

/// What the binding remembers: the site and the booking id per plate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudpassIds {
    /// CloudPass site the bookings live at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// Normalized plate → booking id.
    #[serde(default)]
    pub bookings: BTreeMap<String, String>,
}

/// Uppercase, without spaces and dashes: how CloudPass stores plates, so comparisons match.
pub fn normalize_plate(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// Why a reservation's desired CloudPass state cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredError {
    /// The reservation's administration is not mapped to a CloudPass site.
    Unmapped(String),
    /// Check-in/check-out cannot be computed (bad timezone or times).
    Time(String),
}

impl std::fmt::Display for DesiredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DesiredError::Unmapped(site) => {
                write!(
                    f,
                    "administration {site:?} is not mapped to a CloudPass site"
                )
            }
            DesiredError::Time(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DesiredError {}

impl accesshub_domain::Classify for DesiredError {
    /// Both need a change of the connection or the booking: retrying gives the same answer.
    fn class(&self) -> accesshub_domain::ErrorClass {
        accesshub_domain::ErrorClass::Permanent
    }
}

/// The reservation's plates, normalized, without empty ones.
pub fn plates(r: &Reservation) -> BTreeSet<String> {
    r.license_plates
        .iter()
        .map(|p| normalize_plate(p))
        .filter(|p| !p.is_empty())
        .collect()
}

/// What CloudPass should hold for a reservation at administration `site`: the CloudPass site
/// and one booking per normalized plate, valid from check-in minus the window to check-out
/// plus the window, with the administration's time restriction or the default; no bookings
/// when the status wants no access. `reference_base` is the booking's reference
/// (`ah:<tenant>:reservation:<key>`). Pure: the worker applies it, the reconciler compares
/// the vendor with it.
pub fn desired_bookings(
    settings: &CloudpassSettings,
    site: &str,
    reference_base: &str,
    r: &Reservation,
) -> Result<(String, Vec<BookingFields>), DesiredError> {
    let admin = settings
        .administrations
        .get(site)
        .ok_or_else(|| DesiredError::Unmapped(site.to_owned()))?;
    let plates = plates(r);
    if !r.status.wants_access() || plates.is_empty() {
        return Ok((admin.site_id.clone(), Vec::new()));
    }
    let bad_time = |e: accesshub_domain::TimeError| DesiredError::Time(e.to_string());
    let from = r.check_in().map_err(bad_time)?
        - chrono::Duration::minutes(i64::from(settings.window_before_minutes));
    let until = r.check_out().map_err(bad_time)?
        + chrono::Duration::minutes(i64::from(settings.window_after_minutes));
    let tr = admin
        .time_restriction_id
        .clone()
        .unwrap_or_else(|| settings.default_time_restriction_id.clone());
    let bookings = plates
        .into_iter()
        .map(|plate| BookingFields {
            reference: format!("{reference_base}:{plate}"),
            license_plate: plate,
            valid_from: from,
            valid_until: until,
            time_restriction_id: tr.clone(),
            name: r.guest.name.clone(),
        })
        .collect();
    Ok((admin.site_id.clone(), bookings))
}

/// The CloudPass adapter.
#[derive(Debug, Default)]
pub struct CloudpassHandler {
    clients: ClientCache<CloudpassClient>,
}

impl CloudpassHandler {
    /// A handler with an empty client cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Handler for CloudpassHandler {
    fn name(&self) -> &'static str {
        NAME
    }

    fn vendor(&self) -> Vendor {
        Vendor::Cloudpass
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Reservation]
    }

    async fn apply(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        let EventBody::Reservation(r) = &event.body else {
            return Err(HandlerError::permanent(
                "cloudpass-worker handles reservations only",
            ));
        };
        let VendorSettings::Cloudpass(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a CloudPass connection",
            ));
        };
        let (site, wanted) =
            desired_bookings(settings, &event.site, &ctx.reference, r).map_err(|e| match e {
                DesiredError::Unmapped(_) => HandlerError::permanent(format!(
                    "{e} in connection {:?} (administrations)",
                    ctx.connection.name
                )),
                DesiredError::Time(_) => HandlerError::permanent(e.to_string()),
            })?;
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                CloudpassClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        let prev: CloudpassIds = binding
            .and_then(|b| serde_json::from_value(b.vendor_ids.clone()).ok())
            .unwrap_or_default();
        let plates = plates(r);
        let wants = r.status.wants_access();
        let reference = |plate: &str| format!("{}:{plate}", ctx.reference);

        let mut kept = BTreeMap::new();
        {
            for fields in wanted {
                let plate = fields.license_plate.clone();
                let ctx_err = |e: vendor_http::VendorError| {
                    HandlerError::from(e).context(format!("plate {plate}"))
                };
                let id = match client
                    .find(&site, &fields.reference)
                    .await
                    .map_err(ctx_err)?
                {
                    Some(b) if fields.matches(&b) => b.id,
                    Some(b) => {
                        client
                            .update(&site, &b.id, &fields)
                            .await
                            .map_err(ctx_err)?
                            .id
                    }
                    None => match client.create(&site, &fields).await.map_err(ctx_err)? {
                        Some(b) => b.id,
                        // 409: created concurrently or by an attempt we did not see finish.
                        None => {
                            let b = client
                                .find(&site, &fields.reference)
                                .await
                                .map_err(ctx_err)?
                                .ok_or_else(|| {
                                    HandlerError::transient(format!(
                                        "CloudPass answered 409 for {} but does not list it yet",
                                        fields.reference
                                    ))
                                })?;
                            if fields.matches(&b) {
                                b.id
                            } else {
                                client
                                    .update(&site, &b.id, &fields)
                                    .await
                                    .map_err(ctx_err)?
                                    .id
                            }
                        }
                    },
                };
                kept.insert(plate, id);
            }
        }
        // Remove bookings no longer wanted: those we recorded, plus — when nothing is wanted —
        // any carrying the reference of a plate in the event (created by an unrecorded attempt).
        let prev_site = prev.site_id.clone().unwrap_or_else(|| site.clone());
        for (plate, id) in &prev.bookings {
            if !kept.contains_key(plate) || prev_site != site {
                client.delete(&prev_site, id).await?;
            }
        }
        if !wants {
            for plate in plates.iter().filter(|p| !prev.bookings.contains_key(*p)) {
                if let Some(b) = client.find(&site, &reference(plate)).await? {
                    client.delete(&site, &b.id).await?;
                }
            }
        }
        let status = if !wants {
            "cancelled"
        } else if kept.is_empty() {
            "no_plates"
        } else {
            "active"
        };
        let ids = CloudpassIds {
            site_id: Some(site),
            bookings: kept,
        };
        Ok(ApplyOutcome::new(
            status,
            serde_json::to_value(&ids).unwrap_or_default(),
        ))
    }

    /// A stray found by the reconciler: `vendor_id` is `<site>/<booking id>`. Deleting a
    /// booking that is already gone succeeds.
    async fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        _binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        let VendorSettings::Cloudpass(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a CloudPass connection",
            ));
        };
        let Some((site, id)) = cmd.vendor_id.split_once('/') else {
            return Err(HandlerError::permanent(format!(
                "vendor id {:?} is not <site>/<id>",
                cmd.vendor_id
            )));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                CloudpassClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        client.delete(site, id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plates_are_normalized() {
        assert_eq!(super::normalize_plate(" ab-12 cd "), "AB12CD");
        assert_eq!(super::normalize_plate("xx 99 yy"), "XX99YY");
    }
}
