//! Clock PMS+: bookings as its PMS API serves them and as its notifications carry them, and
//! the ONE mapping of a booking to a [`Reservation`] event, used by booking-ingest's webhook
//! and by the reconciler's pull alike (a pulled booking and a pushed one are the same event).
//!
//! **Documented by Clock** (developers.clock-software.com, "bookings", "booking_guests",
//! "guests" tables; the Postman collection's booking CREATE/VIEW; VENDORS.md "Upstream APIs";
//! docs/upstreams.md): `id` (the booking key), `account_id` (the account, i.e. the property:
//! our site), `number`, `arrival`, `departure` (`YYYY-MM-DD`), `arrival_time`,
//! `departure_time` (free text as staff or an OTA typed it: used only when it reads as a
//! time), `status` (`expected | checked_in | checked_out | canceled | no_show`),
//! `status_changed_at`, `created_at`, `updated_at` (UTC; the revision). The booking carries
//! its room, room type and rate **as references** (`arrival_room_id`, `current_room_id` after
//! a room move, `arrival_room_type_id`, `rate_id`) and its main guest as a flat snapshot
//! (`guest_first_name`, `guest_middle_name`, `guest_last_name`, `guest_e_mail`,
//! `guest_phone_number`; empty until staff fill them in) plus a reference to the guest
//! profile (`main_booking_guest`). The pull resolves the references through the API
//! ([`client::References`]: `GET …/rooms/{id}`, `GET …/guests/{id}`) before this mapping runs;
//! the rate is not looked up (nothing of it opens a door). Notification event names
//! `booking_new`, `booking_update`, `booking_checked_in`, `booking_checked_out`,
//! `booking_canceled`, `booking_no_show` (and `booking_expected`).
//!
//! **Ours** (Clock's notification payload is not public; one place to change): the
//! notification envelope `{event, booking}`, and the inline booking fields `guest {last_name,
//! first_name, middle_name, email, phone}` (an alternative to the flat snapshot), `rooms`
//! (room numbers, when the sender resolved them), `common_areas`, `license_plates`,
//! `mobile_key`, `time_zone`.
//!
//! Rooms: `rooms` when given, else what the pull resolved from `current_room_id` /
//! `arrival_room_id` (the room's `name`, its number as staff entered it). Guest: the flat
//! snapshot, else `guest`; a surname is required (`booking.guest_last_name`).
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

/// Guest details (ours: the inline alternative to Clock's flat `guest_*` snapshot).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClockGuest {
    /// Surname.
    #[serde(default)]
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
    /// The room assigned at arrival (reference to the rooms table; none before assignment).
    #[serde(default)]
    pub arrival_room_id: Option<Id>,
    /// The room the guest is in now (after a room move); wins over `arrival_room_id`.
    #[serde(default)]
    pub current_room_id: Option<Id>,
    /// The booked room type (reference; not needed for access).
    #[serde(default)]
    pub arrival_room_type_id: Option<Id>,
    /// The rate (reference; not needed for access, never looked up).
    #[serde(default)]
    pub rate_id: Option<Id>,
    /// The main guest's profile (reference to the guests table).
    #[serde(default)]
    pub main_booking_guest: Option<Id>,
    /// Main guest's first name (snapshot on the booking).
    #[serde(default)]
    pub guest_first_name: Option<String>,
    /// Main guest's middle name.
    #[serde(default)]
    pub guest_middle_name: Option<String>,
    /// Main guest's surname.
    #[serde(default)]
    pub guest_last_name: Option<String>,
    /// Main guest's e-mail.
    #[serde(default)]
    pub guest_e_mail: Option<String>,
    /// Main guest's phone number.
    #[serde(default)]
    pub guest_phone_number: Option<String>,
    /// Guest (ours, inline).
    #[serde(default)]
    pub guest: Option<ClockGuest>,
    /// Room numbers (ours; else resolved from the room references by the pull).
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

impl Booking {
    /// The room reference that counts: the current room, else the arrival room.
    pub fn room_ref(&self) -> Option<String> {
        self.current_room_id
            .as_ref()
            .or(self.arrival_room_id.as_ref())
            .map(ToString::to_string)
    }

    /// Whether a surname is known (flat snapshot or inline guest).
    pub fn has_guest_name(&self) -> bool {
        filled(self.guest_last_name.as_deref()).is_some()
            || self
                .guest
                .as_ref()
                .is_some_and(|g| filled(Some(&g.last_name)).is_some())
    }
}

/// A value that is there and not blank (Clock serves unfilled guest fields as `""`).
fn filled(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
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
    let inline = b.guest.clone().unwrap_or_default();
    let pick = |flat: Option<&str>, inline: Option<&str>| {
        filled(flat).or(filled(inline)).map(str::to_owned)
    };
    let last = pick(b.guest_last_name.as_deref(), Some(&inline.last_name))
        .ok_or_else(|| MapError::field("booking.guest_last_name", "is required"))?;
    let first = pick(b.guest_first_name.as_deref(), inline.first_name.as_deref());
    let middle = pick(
        b.guest_middle_name.as_deref(),
        inline.middle_name.as_deref(),
    );
    let reservation = Reservation {
        status: status(b.status),
        guest: Guest {
            name: guest_name(&last, first.as_deref(), middle.as_deref()),
            email: pick(b.guest_e_mail.as_deref(), inline.email.as_deref()),
            mobile_phone: pick(b.guest_phone_number.as_deref(), inline.phone.as_deref()),
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

    #[test]
    fn the_flat_guest_snapshot_wins_and_blank_fields_count_as_absent() {
        let doc = json!({});
        let cx = Context {
            tenant: "t",
            site_defaults: &doc,
        };
        // As Clock serves it: the main guest flat on the booking, the room a reference.
        let b = booking(json!({
            "guest": null, "rooms": [], "guest_last_name": "Petrova", "guest_first_name": "Maria",
            "guest_e_mail": "", "guest_phone_number": "+359888123456",
            "arrival_room_id": 7101, "current_room_id": 7102, "rate_id": 784160
        }));
        assert_eq!(
            b.room_ref().as_deref(),
            Some("7102"),
            "the current room wins"
        );
        let ev = map_booking(b, cx).unwrap();
        let EventBody::Reservation(r) = &ev.body else {
            panic!()
        };
        assert_eq!(r.guest.name, "Petrova, Maria");
        assert_eq!(r.guest.email, None, "a blank e-mail is no e-mail");
        assert_eq!(r.guest.mobile_phone.as_deref(), Some("+359888123456"));
        // Neither a snapshot nor an inline guest: the surname is required.
        let e =
            map_booking(booking(json!({"guest": null, "guest_last_name": " "})), cx).unwrap_err();
        assert_eq!(e, MapError::field("booking.guest_last_name", "is required"));
    }
}
