//! The normalized event envelope and its payloads.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the event schema written by this build (proto-schemas/v1).
pub const SCHEMA_VERSION: u32 = 1;

/// What kind of booking an event describes; also the second subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A stay at a hotel or holiday park.
    Reservation,
    /// A facility booking (gym, function room).
    Facility,
    /// A coworking time pass.
    Pass,
    /// A one-shot request to encode a key card or send a mobile key.
    #[serde(rename = "keyreq")]
    KeyRequest,
}

impl EventKind {
    /// All kinds, for stream and schema setup.
    pub const ALL: [EventKind; 4] = [
        EventKind::Reservation,
        EventKind::Facility,
        EventKind::Pass,
        EventKind::KeyRequest,
    ];

    /// The subject token and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Reservation => "reservation",
            EventKind::Facility => "facility",
            EventKind::Pass => "pass",
            EventKind::KeyRequest => "keyreq",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind {s:?}"))
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which upstream system produced the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Booking Experts PMS webhooks.
    Bex,
    /// Clock PMS+.
    Clock,
    /// Nexudus coworking.
    Nexudus,
    /// connecX building platform.
    Connecx,
    /// Any system speaking accesshub's own schema.
    Native,
    /// The reconciler (repairs).
    Reconciler,
}

impl Source {
    /// Every source, for lookups and per-source metrics.
    pub const ALL: [Source; 6] = [
        Source::Bex,
        Source::Clock,
        Source::Nexudus,
        Source::Connecx,
        Source::Native,
        Source::Reconciler,
    ];

    /// Wire name; also used in URLs (`/webhooks/<source>/<tenant>`) and subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bex => "bex",
            Source::Clock => "clock",
            Source::Nexudus => "nexudus",
            Source::Connecx => "connecx",
            Source::Native => "native",
            Source::Reconciler => "reconciler",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown source {s:?}"))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalized event: the whole desired state of one booking at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// UUIDv7: unique, time-ordered; also the JetStream `Nats-Msg-Id`.
    pub id: Uuid,
    /// Tenant (an organization of an upstream system).
    pub tenant: String,
    /// Site within the tenant (administration, property, building).
    pub site: String,
    /// The booking's stable key within the tenant.
    pub booking_key: String,
    /// Monotonic revision of the desired state; workers apply only newer revisions.
    pub revision: i64,
    /// Upstream system.
    pub source: Source,
    /// When the upstream change happened.
    pub occurred_at: DateTime<Utc>,
    /// Payload schema version.
    pub schema_version: u32,
    /// Kind and desired state.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The payload, tagged by kind: `{"kind": "reservation", "payload": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum EventBody {
    /// A stay.
    Reservation(Reservation),
    /// A facility booking.
    Facility(FacilityBooking),
    /// A time pass.
    Pass(Pass),
    /// A key request.
    #[serde(rename = "keyreq")]
    KeyRequest(KeyRequest),
}

impl EventBody {
    /// The kind of this payload.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Reservation(_) => EventKind::Reservation,
            EventBody::Facility(_) => EventKind::Facility,
            EventBody::Pass(_) => EventKind::Pass,
            EventBody::KeyRequest(_) => EventKind::KeyRequest,
        }
    }
}

impl Event {
    /// A new event with a fresh UUIDv7 and the current schema version.
    pub fn new(
        tenant: impl Into<String>,
        site: impl Into<String>,
        booking_key: impl Into<String>,
        revision: i64,
        source: Source,
        occurred_at: DateTime<Utc>,
        body: EventBody,
    ) -> Self {
        Event {
            id: Uuid::now_v7(),
            tenant: tenant.into(),
            site: site.into(),
            booking_key: booking_key.into(),
            revision,
            source,
            occurred_at,
            schema_version: SCHEMA_VERSION,
            body,
        }
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// Whether this event's state ends access (by status alone, whatever the time): such an
    /// event wins over a state of the same revision that does not, at ingest and in the
    /// worker — deletions and cancellations need not bump the upstream's revision, and must
    /// never lose to an equal one. A reactivation still needs a strictly newer revision.
    pub fn ends_access(&self) -> bool {
        match &self.body {
            EventBody::Reservation(r) => !r.status.wants_access(),
            EventBody::Facility(f) => f.status == FacilityStatus::Cancelled,
            EventBody::Pass(p) => p.status != PassStatus::Active,
            EventBody::KeyRequest(_) => false,
        }
    }

    /// The subject this event is published on.
    pub fn subject(&self) -> String {
        crate::subjects::booking(self.kind(), &self.tenant, &self.booking_key)
    }
}

/// The revision rule between two states of one booking, each `(revision, ends access)`:
/// whether `a` replaces `b`. Newer wins; at the same revision an ending wins over a state that
/// does not end access (an upstream's delete need not bump its last-change time); a
/// reactivation needs a strictly newer revision. booking-ingest's batch upsert (`WRITE_BATCH`)
/// applies the same rule in SQL; DLQ replay refuses an event the stored state supersedes.
pub fn supersedes(a: (i64, bool), b: (i64, bool)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 && !b.1)
}

/// Lifecycle of a stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Booked, not yet arrived: access should exist for the stay.
    Confirmed,
    /// Guest is in house.
    CheckedIn,
    /// Guest left: access ends now.
    CheckedOut,
    /// Cancelled: access must not exist.
    Cancelled,
    /// Guest never came: treated as cancelled.
    NoShow,
}

impl ReservationStatus {
    /// Whether access should exist for this reservation.
    pub fn wants_access(self) -> bool {
        matches!(
            self,
            ReservationStatus::Confirmed | ReservationStatus::CheckedIn
        )
    }
}

/// A guest as lock systems want it.
/// Debug masks personal data (see [`crate::pii`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    /// "Surname, First, Middle" — dormakaba's mobile app matches on the part before the first comma.
    pub name: String,
    /// E-mail address, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Mobile phone in international format, if known; needed for mobile keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
}

impl Guest {
    /// The surname: the text up to the first comma ("Doe, John, Paul" → "Doe").
    pub fn surname(&self) -> &str {
        self.name.split(',').next().unwrap_or_default().trim()
    }
}

/// A stay: dates plus the site's check-in/check-out times in its timezone.
/// Debug masks personal data (see [`crate::pii`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// Lifecycle status.
    pub status: ReservationStatus,
    /// The main guest.
    pub guest: Guest,
    /// Arrival date (local to the site).
    pub arrival: NaiveDate,
    /// Departure date (local to the site).
    pub departure: NaiveDate,
    /// The site's check-in time.
    pub check_in_time: NaiveTime,
    /// The site's check-out time.
    pub check_out_time: NaiveTime,
    /// IANA timezone of the site, e.g. `Europe/Amsterdam`.
    pub timezone: String,
    /// Rooms; the first is the main room.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Common areas (pool, gym) the guest may enter.
    #[serde(default)]
    pub common_areas: Vec<String>,
    /// Vehicle license plates as entered upstream.
    #[serde(default)]
    pub license_plates: Vec<String>,
    /// The guest asked for a mobile key.
    #[serde(default)]
    pub mobile_key: bool,
}

/// Why a local time could not be placed on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The timezone name is not an IANA zone.
    #[error("unknown timezone {0:?}")]
    UnknownTimezone(String),
}

impl Reservation {
    /// Parses the site timezone.
    pub fn tz(&self) -> Result<chrono_tz::Tz, TimeError> {
        self.timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| TimeError::UnknownTimezone(self.timezone.clone()))
    }

    /// Check-in instant (arrival date at check-in time, site timezone).
    pub fn check_in(&self) -> Result<DateTime<Utc>, TimeError> {
        Ok(local_to_utc(
            self.tz()?,
            self.arrival.and_time(self.check_in_time),
        ))
    }

    /// Check-out instant (departure date at check-out time, site timezone).
    pub fn check_out(&self) -> Result<DateTime<Utc>, TimeError> {
        Ok(local_to_utc(
            self.tz()?,
            self.departure.and_time(self.check_out_time),
        ))
    }
}

/// Places a local wall-clock time on the UTC timeline, DST-correct: an ambiguous time (clocks
/// go back) takes the earlier instant, a skipped time (clocks go forward) moves forward past the gap.
pub fn local_to_utc(tz: chrono_tz::Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // In a spring-forward gap: the first valid minute after it.
            let mut probe = local;
            for _ in 0..(4 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Lifecycle of a facility booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacilityStatus {
    /// The slot is booked.
    Booked,
    /// The booking was cancelled or deleted.
    Cancelled,
}

/// A resident of a building.
/// Debug masks personal data (see [`crate::pii`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resident {
    /// Upstream id of the resident.
    pub id: String,
    /// E-mail; how the vendor's person is found.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// A facility booking (connecX → iPassan asset booking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityBooking {
    /// Lifecycle status.
    pub status: FacilityStatus,
    /// Upstream facility id; mapped to a vendor asset by the connection.
    pub facility_id: String,
    /// Who booked it.
    pub resident: Resident,
    /// Start of the booked window.
    pub start: DateTime<Utc>,
    /// End of the booked window.
    pub end: DateTime<Utc>,
}

/// Lifecycle of a time pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassStatus {
    /// Valid until expiry.
    Active,
    /// Used up: access ends now.
    Used,
    /// Deleted upstream: access ends now.
    Removed,
}

/// Holder of a pass.
/// Debug masks personal data (see [`crate::pii`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassHolder {
    /// Upstream id (Nexudus CoworkerId).
    pub id: String,
    /// E-mail: the Tapkey contact identifier.
    pub email: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A coworking time pass (Nexudus → Tapkey grants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pass {
    /// Lifecycle status.
    pub status: PassStatus,
    /// Who holds it.
    pub holder: PassHolder,
    /// Upstream pass type id; mapped to locks by the connection.
    pub pass_type: String,
    /// Human name of the pass type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_type_name: Option<String>,
    /// Access starts here (defaults to when the event is applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// Access ends here.
    pub expires_at: DateTime<Utc>,
}

impl Pass {
    /// Whether access should exist at `now`.
    pub fn wants_access(&self, now: DateTime<Utc>) -> bool {
        self.status == PassStatus::Active && self.expires_at > now
    }
}

/// What a key request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    /// Encode new key cards (invalidates earlier cards).
    NewKey,
    /// Encode additional cards for the same stay.
    DuplicateKey,
    /// Send a mobile key to the guest's phone.
    MobileKey,
}

/// A one-shot request to produce keys for a reservation.
/// Debug masks the phone number (see [`crate::pii`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// Id the front desk polls for the outcome.
    pub request_id: Uuid,
    /// The reservation's booking key.
    pub reservation_key: String,
    /// What to do.
    pub action: KeyAction,
    /// Encoder identifier from the connection's encoder list (not for mobile keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_id: Option<String>,
    /// Number of cards to encode.
    #[serde(default = "one")]
    pub key_count: u32,
    /// Who asked (front-desk user), for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The guest's mobile number as entered at the desk while issuing the key (international
    /// format): the mobile key goes to this number rather than the reservation's. Personal
    /// data: masked wherever it is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    /// Send a mobile key too: a card request (`new_key`, `duplicate_key`) during which the
    /// desk entered a phone number (dormakaba issues a mobile key when a number is given at
    /// issuance). Implied by `action: mobile_key`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mobile_key: bool,
}

impl KeyRequest {
    /// Whether a mobile key is to be sent (the action, or the flag on a card request).
    pub fn wants_mobile_key(&self) -> bool {
        self.action == KeyAction::MobileKey || self.mobile_key
    }
}

fn one() -> u32 {
    1
}

/// Outcome of a key request, published on `results.keyreq.<tenant>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyResult {
    /// The request.
    pub request_id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// `pending` (retrying), `encoded`, `sent` (mobile) or `failed`.
    pub status: KeyResultStatus,
    /// Human-readable detail ("encoder busy, retrying", fault name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the outcome was recorded.
    pub at: DateTime<Utc>,
}

/// Status of a key request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyResultStatus {
    /// A transient fault; retrying.
    Pending,
    /// Cards encoded.
    Encoded,
    /// Mobile key delivered.
    Sent,
    /// Gave up; see message.
    Failed,
}

#[cfg(test)]
mod revision_rule_tests {
    use super::supersedes;

    #[test]
    fn newer_wins_and_an_ending_wins_a_tie_but_a_reactivation_does_not() {
        assert!(
            supersedes((3, false), (2, true)),
            "newer wins, ending or not"
        );
        assert!(!supersedes((2, true), (3, false)), "older never wins");
        assert!(supersedes((5, true), (5, false)), "an ending wins the tie");
        assert!(
            !supersedes((5, false), (5, true)),
            "a reactivation needs a newer revision"
        );
        assert!(
            !supersedes((5, true), (5, true)),
            "the same ending again is not newer"
        );
        assert!(!supersedes((5, false), (5, false)));
    }
}

// Debug impls that mask personal data: events travel through `{:?}` in panics, test output and
// any future `debug!`, and none of those should carry a guest register.
use crate::pii::{mask_email, mask_name, mask_phone, mask_plate};

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("name", &mask_name(&self.name))
            .field("email", &self.email.as_deref().map(mask_email))
            .field(
                "mobile_phone",
                &self.mobile_phone.as_deref().map(mask_phone),
            )
            .finish()
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plates: Vec<String> = self.license_plates.iter().map(|p| mask_plate(p)).collect();
        f.debug_struct("Reservation")
            .field("status", &self.status)
            .field("guest", &self.guest)
            .field("arrival", &self.arrival)
            .field("departure", &self.departure)
            .field("check_in_time", &self.check_in_time)
            .field("check_out_time", &self.check_out_time)
            .field("timezone", &self.timezone)
            .field("rooms", &self.rooms)
            .field("common_areas", &self.common_areas)
            .field("license_plates", &plates)
            .field("mobile_key", &self.mobile_key)
            .finish()
    }
}

impl std::fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRequest")
            .field("request_id", &self.request_id)
            .field("reservation_key", &self.reservation_key)
            .field("action", &self.action)
            .field("encoder_id", &self.encoder_id)
            .field("key_count", &self.key_count)
            .field("requested_by", &self.requested_by.as_deref().map(mask_name))
            .field(
                "mobile_phone",
                &self.mobile_phone.as_deref().map(mask_phone),
            )
            .field("mobile_key", &self.mobile_key)
            .finish()
    }
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("id", &self.id)
            .field("email", &mask_email(&self.email))
            .field("first_name", &mask_name(&self.first_name))
            .field("last_name", &mask_name(&self.last_name))
            .finish()
    }
}

impl std::fmt::Debug for PassHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassHolder")
            .field("id", &self.id)
            .field("email", &mask_email(&self.email))
            .field("name", &self.name.as_deref().map(mask_name))
            .finish()
    }
}

#[cfg(test)]
mod pii_debug_tests {
    use super::*;

    /// Security review L6: `{:?}` of an event must not print the guest's data.
    #[test]
    fn event_debug_masks_personal_data() {
        let r = Reservation {
            status: ReservationStatus::Confirmed,
            guest: Guest {
                name: "Zwaardemaker, Quirina".into(),
                email: Some("quirina@zw.example".into()),
                mobile_phone: Some("+31687654321".into()),
            },
            arrival: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            departure: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap_or_default(),
            check_in_time: NaiveTime::MIN,
            check_out_time: NaiveTime::MIN,
            timezone: "Europe/Amsterdam".into(),
            rooms: vec!["101".into()],
            common_areas: vec![],
            license_plates: vec!["QZ99XY".into()],
            mobile_key: false,
        };
        let ev = Event::new(
            "t",
            "s",
            "k",
            1,
            Source::Bex,
            Utc::now(),
            EventBody::Reservation(r),
        );
        let pass = PassHolder {
            id: "c1".into(),
            email: "pat@zw.example".into(),
            name: Some("Pat Quist".into()),
        };
        let res = Resident {
            id: "r1".into(),
            email: "res@zw.example".into(),
            first_name: "Renske".into(),
            last_name: "Quist".into(),
        };
        let s = format!("{ev:?} {pass:?} {res:?}");
        for pii in [
            "Zwaardemaker",
            "Quirina",
            "quirina@",
            "87654321",
            "QZ99XY",
            "pat@",
            "Pat Quist",
            "res@",
            "Renske",
            "Quist",
        ] {
            assert!(!s.contains(pii), "{pii} in {s}");
        }
        assert!(s.contains("101"), "{s}");
    }
}
