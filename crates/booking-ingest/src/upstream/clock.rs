//! Clock PMS+ booking events.
//!
//! Body (envelope ours): `{"event": "booking_new" | "booking_update" | "booking_checked_in" |
//! "booking_checked_out" | "booking_canceled" | "booking_no_show", "booking": {...}}`.
//!
//! Booking fields from Clock: `id`, `account_id` (the site), `number`, `arrival`,
//! `arrival_time`, `departure`, `departure_time`, `status` (`expected | checked_in |
//! checked_out | canceled | no_show`), `status_changed_at`, `updated_at` (RFC 3339: the
//! revision). Fields that are ours: `guest {last_name (required), first_name, middle_name,
//! email, phone}`, `rooms`, `common_areas`, `license_plates`, `mobile_key`, `time_zone`.
//! `arrival_time`/`departure_time` missing → the site's check-in/check-out times.
//! The booking's `status` is authoritative; the event name only has to be a known one.

use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;

use super::{Context, Id, guest_name};
use crate::error::Reject;

/// The event envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// Event name.
    pub event: ClockEvent,
    /// The booking at its latest state.
    pub booking: Booking,
}

/// Clock PMS+ booking events.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockEvent {
    /// Created.
    BookingNew,
    /// Changed.
    BookingUpdate,
    /// Checked in.
    BookingCheckedIn,
    /// Checked out.
    BookingCheckedOut,
    /// Cancelled.
    BookingCanceled,
    /// No-show.
    BookingNoShow,
}

/// Clock's booking statuses.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Expected to arrive.
    Expected,
    /// In house.
    CheckedIn,
    /// Left.
    CheckedOut,
    /// Cancelled (Clock spells it with one l).
    Canceled,
    /// Did not arrive.
    NoShow,
}

/// Guest details (ours).
#[derive(Debug, Deserialize)]
pub struct ClockGuest {
    /// Surname.
    pub last_name: String,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Middle name.
    #[serde(default)]
    pub middle_name: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile phone.
    #[serde(default)]
    pub phone: Option<String>,
}

/// A Clock PMS+ booking.
#[derive(Debug, Deserialize)]
pub struct Booking {
    /// Booking id: the booking key.
    pub id: Id,
    /// Account (property): the site.
    pub account_id: Id,
    /// Human booking number.
    #[serde(default)]
    pub number: Option<Id>,
    /// Arrival date.
    pub arrival: NaiveDate,
    /// Arrival time, if the booking has one.
    #[serde(default)]
    pub arrival_time: Option<NaiveTime>,
    /// Departure date.
    pub departure: NaiveDate,
    /// Departure time, if the booking has one.
    #[serde(default)]
    pub departure_time: Option<NaiveTime>,
    /// Status.
    pub status: Status,
    /// When the status last changed.
    #[serde(default)]
    pub status_changed_at: Option<DateTime<Utc>>,
    /// Last change: the revision.
    pub updated_at: DateTime<Utc>,
    /// Guest (ours).
    pub guest: ClockGuest,
    /// Rooms (ours).
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Common areas (ours).
    #[serde(default)]
    pub common_areas: Vec<String>,
    /// License plates (ours).
    #[serde(default)]
    pub license_plates: Vec<String>,
    /// Mobile key wanted (ours).
    #[serde(default)]
    pub mobile_key: bool,
    /// Timezone override (ours).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// Maps a Clock PMS+ booking event to a reservation event.
pub fn map(env: Envelope, cx: Context<'_>) -> Result<Event, Reject> {
    let b = env.booking;
    let site = b.account_id.to_string();
    let d = cx.defaults(&site);
    let reservation = Reservation {
        status: match b.status {
            Status::Expected => ReservationStatus::Confirmed,
            Status::CheckedIn => ReservationStatus::CheckedIn,
            Status::CheckedOut => ReservationStatus::CheckedOut,
            Status::Canceled => ReservationStatus::Cancelled,
            Status::NoShow => ReservationStatus::NoShow,
        },
        guest: Guest {
            name: guest_name(
                &b.guest.last_name,
                b.guest.first_name.as_deref(),
                b.guest.middle_name.as_deref(),
            ),
            email: b.guest.email,
            mobile_phone: b.guest.phone,
        },
        arrival: b.arrival,
        departure: b.departure,
        check_in_time: b.arrival_time.unwrap_or(d.check_in_time),
        check_out_time: b.departure_time.unwrap_or(d.check_out_time),
        timezone: b.time_zone.unwrap_or(d.timezone),
        rooms: b.rooms,
        common_areas: b.common_areas,
        license_plates: b.license_plates,
        mobile_key: b.mobile_key,
    };
    Ok(Event::new(
        cx.tenant,
        site,
        b.id.to_string(),
        b.updated_at.timestamp_millis(),
        Source::Clock,
        b.updated_at,
        EventBody::Reservation(reservation),
    ))
}
