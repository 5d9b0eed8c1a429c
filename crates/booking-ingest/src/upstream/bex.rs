//! Booking Experts (BEX PMS) reservation webhooks.
//!
//! Envelope (documented by BEX): `{event, subscription_id, record, context, context_id,
//! event_metadata}` with `record` a JSON:API resource `{id, type: "reservation", attributes,
//! relationships}`.
//!
//! Attribute names are ours (BEX leaves them to the integration):
//! - `status`: `confirmed | checked_in | checked_out | cancelled | no_show` (default
//!   `confirmed`); the events `reservation:cancelled`, `:checked_in`, `:checked_out` override it.
//! - `arrival_date`, `departure_date` (`YYYY-MM-DD`, local to the administration), optional
//!   `check_in_time`, `check_out_time` (`HH:MM[:SS]`) and `time_zone` (IANA) overriding the
//!   site defaults.
//! - `guest_last_name` (required), `guest_first_name`, `guest_middle_name`, `guest_email`,
//!   `guest_phone`.
//! - `rooms`, `common_areas`, `license_plates` (arrays of strings), `mobile_key` (bool).
//! - `updated_at` (RFC 3339, required): the revision (epoch millis) and `occurred_at`.
//!
//! Site = `relationships.administration.data.id`, else `context_id` when `context` is
//! `administration`. Booking key = `record.id`. Events other than `reservation:created`,
//! `:updated`, `:checked_in`, `:checked_out`, `:cancelled` are answered 422 (field `event`).

use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;

use super::{Context, Id, guest_name};
use crate::error::Reject;

/// The webhook envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// `reservation:created`, …
    pub event: String,
    /// BEX subscription id (informational).
    #[serde(default)]
    pub subscription_id: Option<Id>,
    /// The JSON:API resource.
    pub record: Record,
    /// `administration | organization | global`.
    #[serde(default)]
    pub context: Option<String>,
    /// Id of the context object.
    #[serde(default)]
    pub context_id: Option<Id>,
    /// `{changes: {attr: [old, new]}}` (informational: we always carry the whole state).
    #[serde(default)]
    pub event_metadata: Option<serde_json::Value>,
}

/// A JSON:API resource.
#[derive(Debug, Deserialize)]
pub struct Record {
    /// Reservation id: the booking key.
    pub id: Id,
    /// Must be `reservation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Reservation attributes (names are ours, see the module doc).
    pub attributes: Attributes,
    /// JSON:API relationships; `administration` gives the site.
    #[serde(default)]
    pub relationships: Option<Relationships>,
}

/// The relationships we read.
#[derive(Debug, Deserialize)]
pub struct Relationships {
    /// The administration (site) the reservation belongs to.
    #[serde(default)]
    pub administration: Option<Relationship>,
}

/// `{data: {id, type}}`.
#[derive(Debug, Deserialize)]
pub struct Relationship {
    /// The linkage (null when absent).
    pub data: Option<Linkage>,
}

/// A resource identifier.
#[derive(Debug, Deserialize)]
pub struct Linkage {
    /// Id of the related resource.
    pub id: Id,
}

/// Reservation status as we name it in BEX attributes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Booked.
    Confirmed,
    /// In house.
    CheckedIn,
    /// Left.
    CheckedOut,
    /// Cancelled.
    Cancelled,
    /// Did not arrive.
    NoShow,
}

/// Reservation attributes.
#[derive(Debug, Deserialize)]
pub struct Attributes {
    /// Lifecycle status.
    #[serde(default)]
    pub status: Option<Status>,
    /// Arrival date.
    pub arrival_date: NaiveDate,
    /// Departure date.
    pub departure_date: NaiveDate,
    /// Overrides the site's check-in time.
    #[serde(default)]
    pub check_in_time: Option<NaiveTime>,
    /// Overrides the site's check-out time.
    #[serde(default)]
    pub check_out_time: Option<NaiveTime>,
    /// Overrides the site's timezone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Guest surname.
    pub guest_last_name: String,
    /// Guest first name.
    #[serde(default)]
    pub guest_first_name: Option<String>,
    /// Guest middle name.
    #[serde(default)]
    pub guest_middle_name: Option<String>,
    /// Guest e-mail.
    #[serde(default)]
    pub guest_email: Option<String>,
    /// Guest mobile phone.
    #[serde(default)]
    pub guest_phone: Option<String>,
    /// Rooms (first = main room).
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Common areas.
    #[serde(default)]
    pub common_areas: Vec<String>,
    /// License plates.
    #[serde(default)]
    pub license_plates: Vec<String>,
    /// Guest wants a mobile key.
    #[serde(default)]
    pub mobile_key: bool,
    /// Last change upstream: the revision.
    pub updated_at: DateTime<Utc>,
}

/// Maps a BEX webhook to a reservation event.
pub fn map(env: Envelope, cx: Context<'_>) -> Result<Event, Reject> {
    let a = env.record.attributes;
    let status = match env.event.as_str() {
        "reservation:created" | "reservation:updated" => a.status.unwrap_or(Status::Confirmed),
        "reservation:checked_in" => Status::CheckedIn,
        "reservation:checked_out" => Status::CheckedOut,
        "reservation:cancelled" => Status::Cancelled,
        other => {
            return Err(Reject::semantic(
                "event",
                format!("unsupported event {other:?}"),
            ));
        }
    };
    if env.record.kind != "reservation" {
        return Err(Reject::semantic(
            "record.type",
            format!("expected \"reservation\", got {:?}", env.record.kind),
        ));
    }
    let site = env
        .record
        .relationships
        .and_then(|r| r.administration)
        .and_then(|r| r.data)
        .map(|d| d.id.to_string())
        .or_else(|| {
            (env.context.as_deref() == Some("administration"))
                .then(|| env.context_id.map(|c| c.to_string()))
                .flatten()
        })
        .ok_or_else(|| {
            Reject::field(
                "record.relationships.administration",
                "is required unless context is administration with a context_id",
            )
        })?;
    let d = cx.defaults(&site);
    let reservation = Reservation {
        status: match status {
            Status::Confirmed => ReservationStatus::Confirmed,
            Status::CheckedIn => ReservationStatus::CheckedIn,
            Status::CheckedOut => ReservationStatus::CheckedOut,
            Status::Cancelled => ReservationStatus::Cancelled,
            Status::NoShow => ReservationStatus::NoShow,
        },
        guest: Guest {
            name: guest_name(
                &a.guest_last_name,
                a.guest_first_name.as_deref(),
                a.guest_middle_name.as_deref(),
            ),
            email: a.guest_email,
            mobile_phone: a.guest_phone,
        },
        arrival: a.arrival_date,
        departure: a.departure_date,
        check_in_time: a.check_in_time.unwrap_or(d.check_in_time),
        check_out_time: a.check_out_time.unwrap_or(d.check_out_time),
        timezone: a.time_zone.unwrap_or(d.timezone),
        rooms: a.rooms,
        common_areas: a.common_areas,
        license_plates: a.license_plates,
        mobile_key: a.mobile_key,
    };
    Ok(Event::new(
        cx.tenant,
        site,
        env.record.id.to_string(),
        a.updated_at.timestamp_millis(),
        Source::Bex,
        a.updated_at,
        EventBody::Reservation(reservation),
    ))
}
