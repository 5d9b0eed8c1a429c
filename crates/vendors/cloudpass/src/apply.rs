//! Makes CloudPass hold exactly the desired vehicle bookings of one reservation. Idempotent
//! by construction: every booking is found by its reference before it is created, a 409 on
//! create means "exists", and bookings no longer wanted are deleted, including those of an
//! attempt that crashed before its record was saved.

use std::collections::{BTreeMap, BTreeSet};

use worker_runtime::{HandlerError, Status};

use crate::{CloudpassClient, CloudpassIds, client::BookingFields, desired::plate_reference};

/// What one reservation should come to at CloudPass.
#[derive(Debug)]
pub struct Target<'a> {
    /// The CloudPass site of the reservation's administration.
    pub site: String,
    /// One booking per plate (empty when no access is wanted).
    pub wanted: Vec<BookingFields>,
    /// Every normalized plate of the reservation, wanted or not.
    pub plates: BTreeSet<String>,
    /// Whether the reservation's status wants access at all.
    pub wants: bool,
    /// The booking's reference (`ah:<tenant>:reservation:<key>`).
    pub reference_base: &'a str,
}

/// Short status of the binding after [`apply`].
pub fn status(wants: bool, ids: &CloudpassIds) -> Status {
    if !wants {
        Status::Cancelled
    } else if ids.bookings.is_empty() {
        Status::NoPlates
    } else {
        Status::Active
    }
}

/// Creates, updates and deletes bookings until CloudPass holds `target`; `prev` is what the
/// binding recorded.
pub async fn apply(
    client: &CloudpassClient,
    target: Target<'_>,
    prev: &CloudpassIds,
) -> Result<CloudpassIds, HandlerError> {
    let Target {
        site,
        wanted,
        plates,
        wants,
        reference_base,
    } = target;
    let reference = |plate: &str| plate_reference(reference_base, plate);

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
    Ok(CloudpassIds {
        site_id: Some(site),
        bookings: kept,
    })
}
