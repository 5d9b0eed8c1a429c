//! Clock PMS+: bookings as its PMS API serves them and as its notifications carry them, and
//! the ONE mapping of a booking to a [`Reservation`] event, used by booking-ingest's webhook
//! and by the reconciler's pull alike (a pulled booking and a pushed one are the same event).
//!
//! **Documented by Clock** (developers.clock-software.com, "bookings" table; VENDORS.md
//! "Upstream APIs"; docs/upstreams.md): `id` (the booking key), `account_id` (the account, i.e.
//! the property: our site), `number`, `arrival`, `departure` (`YYYY-MM-DD`), `arrival_time`,
//! `departure_time` (free text as staff or an OTA typed it: used only when it reads as a time),
//! `status` (`expected | checked_in | checked_out | canceled | no_show`), `status_changed_at`,
//! `created_at`, `updated_at` (UTC; the revision). Notification event names `booking_new`,
//! `booking_update`, `booking_checked_in`, `booking_checked_out`, `booking_canceled`,
//! `booking_no_show` (and `booking_expected`).
//!
//! **Ours** (Clock's payloads and the booking's guest/room shape in the API are not public in
//! this form; one place to change): the notification envelope `{event, booking}`, and the
//! booking fields `guest {last_name (required), first_name, middle_name, email, phone}`,
//! `rooms`, `common_areas`, `license_plates`, `mobile_key`, `time_zone`.
//!
//! `arrival_time`/`departure_time` missing (or not a time) → the site's check-in/check-out
//! times. The booking's `status` is authoritative; the event name only has to be a known one.

pub mod client;

use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::{Context, Id, MapError, guest_name};

pub use client::{BookingQuery, ClockClient};

/// The notification envelope (ours).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// Event name.
    pub event: ClockEvent,
    /// The booking at its latest state.
    pub booking: Booking,
}

/// Clock PMS+ booking notification events.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockEvent {
    /// Created.
    BookingNew,
    /// Changed.
    BookingUpdate,
    /// Back to expected (e.g. a check-in undone).
    BookingExpected,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// A Clock PMS+ booking (API resource and notification payload).
#[derive(Debug, Deserialize)]
pub struct Booking {
    /// Booking id: the booking key.
    pub id: Id,
    /// Account (property): the site.
    pub account_id: Id,
    /// Human booking number (not unique).
    #[serde(default)]
    pub number: Option<Id>,
    /// Arrival date.
    pub arrival: NaiveDate,
    /// Arrival time, when it reads as one (Clock's field is free text).
    #[serde(default, deserialize_with = "free_text_time")]
    pub arrival_time: Option<NaiveTime>,
    /// Departure date.
    pub departure: NaiveDate,
    /// Departure time, when it reads as one.
    #[serde(default, deserialize_with = "free_text_time")]
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

/// Clock documents `arrival_time`/`departure_time` as free text ("as specified by the staff
/// or OTA ... not necessarily structured as time"): a value that is not `HH:MM[:SS]` is
/// treated as absent (the site's default applies) rather than refusing the booking.
fn free_text_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.and_then(|s| {
        let s = s.trim();
        NaiveTime::parse_from_str(s, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
            .ok()
    }))
}

/// Maps a notification: the booking through [`map_booking`].
pub fn map_webhook(env: Envelope, cx: Context<'_>) -> Result<Box<Event>, MapError> {
    map_booking(env.booking, cx)
}

/// THE mapping of a Clock booking (notification and pull).
pub fn map_booking(b: Booking, cx: Context<'_>) -> Result<Box<Event>, MapError> {
    let site = b.account_id.to_string();
    let d = cx.defaults(&site);
    let reservation = Reservation {
        status: status(b.status),
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
    Ok(Box::new(Event::new(
        cx.tenant,
        site,
        b.id.to_string(),
        b.updated_at.timestamp_millis(),
        Source::Clock,
        b.updated_at,
        EventBody::Reservation(reservation),
    )))
}

/// A Clock status as ours.
pub fn status(s: Status) -> ReservationStatus {
    match s {
        Status::Expected => ReservationStatus::Confirmed,
        Status::CheckedIn => ReservationStatus::CheckedIn,
        Status::CheckedOut => ReservationStatus::CheckedOut,
        Status::Canceled => ReservationStatus::Cancelled,
        Status::NoShow => ReservationStatus::NoShow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn booking(extra: serde_json::Value) -> Booking {
        let mut b = json!({
            "id": 4711, "account_id": 16449, "number": "B-1", "arrival": "2030-07-14",
            "departure": "2030-07-16", "status": "expected",
            "updated_at": "2030-07-01T10:00:00Z", "guest": {"last_name": "Doe"},
            "rooms": ["101"], "mobile_key": true
        });
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value(b).unwrap()
    }

    #[test]
    fn free_text_times_fall_back_to_the_site_defaults() {
        let doc = json!({"16449": {"check_in_time": "14:00", "timezone": "Europe/Sofia"}});
        let cx = Context {
            tenant: "t",
            site_defaults: &doc,
        };
        let ev = map_booking(
            booking(json!({"arrival_time": "late, after dinner", "departure_time": "10:30"})),
            cx,
        )
        .unwrap();
        let EventBody::Reservation(r) = &ev.body else {
            panic!()
        };
        assert_eq!(ev.site, "16449");
        assert_eq!(ev.booking_key, "4711");
        assert_eq!(r.check_in_time, NaiveTime::from_hms_opt(14, 0, 0).unwrap());
        assert_eq!(
            r.check_out_time,
            NaiveTime::from_hms_opt(10, 30, 0).unwrap()
        );
        assert_eq!(r.timezone, "Europe/Sofia");
        assert_eq!(r.status, ReservationStatus::Confirmed);
        let ev = map_booking(booking(json!({"status": "canceled"})), cx).unwrap();
        assert!(ev.ends_access());
    }
}
