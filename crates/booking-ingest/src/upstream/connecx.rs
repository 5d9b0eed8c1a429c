//! connecX facility bookings (no public API; the format is ours):
//! `{booking_id, facility_id, building_id?, resident {id, email, first_name, last_name},
//! start, end, status: booked | cancelled, updated_at}` with RFC 3339 instants.
//! Site = `building_id` (optional, ours), falling back to `"default"`. Booking key =
//! `booking_id`; revision = `updated_at` in epoch millis.

use accesshub_domain::{Event, EventBody, FacilityBooking, FacilityStatus, Resident, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Context, Id};
use crate::error::Reject;

/// Site used when a booking names no building.
pub const DEFAULT_SITE: &str = "default";

/// A connecX facility booking.
#[derive(Debug, Deserialize)]
pub struct Booking {
    /// Booking id: the booking key.
    pub booking_id: Id,
    /// Facility (mapped to a vendor asset by the connection).
    pub facility_id: Id,
    /// Building: the site (ours, optional).
    #[serde(default)]
    pub building_id: Option<Id>,
    /// Who booked.
    pub resident: ConnecxResident,
    /// Start of the slot.
    pub start: DateTime<Utc>,
    /// End of the slot.
    pub end: DateTime<Utc>,
    /// `booked | cancelled`.
    pub status: FacilityStatus,
    /// Last change: the revision.
    pub updated_at: DateTime<Utc>,
}

/// The resident as connecX sends it.
#[derive(Debug, Deserialize)]
pub struct ConnecxResident {
    /// Resident id.
    pub id: Id,
    /// E-mail.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// Maps a connecX booking to a facility event.
pub fn map(b: Booking, cx: Context<'_>) -> Result<Event, Reject> {
    let site = b
        .building_id
        .map(|b| b.to_string())
        .unwrap_or_else(|| DEFAULT_SITE.to_owned());
    Ok(Event::new(
        cx.tenant,
        site,
        b.booking_id.to_string(),
        b.updated_at.timestamp_millis(),
        Source::Connecx,
        b.updated_at,
        EventBody::Facility(FacilityBooking {
            status: b.status,
            facility_id: b.facility_id.to_string(),
            resident: Resident {
                id: b.resident.id.to_string(),
                email: b.resident.email,
                first_name: b.resident.first_name,
                last_name: b.resident.last_name,
            },
            start: b.start,
            end: b.end,
        }),
    ))
}
