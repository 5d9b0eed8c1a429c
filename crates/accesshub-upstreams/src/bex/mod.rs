//! Booking Experts (BEX PMS): API v3 reservation resources, App webhooks, and the one mapping
//! of a reservation to a [`Reservation`] event, used by booking-ingest's webhook and by the
//! reconciler's pull alike.
//!
//! **Documented by BEX** (VENDORS.md "Upstream APIs"; docs/upstreams.md):
//! - A reservation is a JSON:API resource `{id, type: "reservation", attributes,
//!   relationships}` of `GET /v3/administrations/{id}/reservations`, attributes `booking_nr`,
//!   `start_date`, `end_date` (`YYYY-MM-DD`, the administration's local dates), `state`,
//!   `last_name`, `created_at`, `updated_at`. Guests come from
//!   `.../reservations/{rid}/guests` (`first_name`, `last_name`, `email`).
//! - App webhooks post `{event, subscription_id, record, context, context_id, event_metadata}`;
//!   `record` is a JSON:API document `{data: resource}` (a bare resource is accepted too);
//!   event names use a pipe (`reservation|confirmed`), some prose a colon: both are accepted.
//!
//! **Ours** (BEX documents no API attribute for them; one place to change, [`ours`]):
//! - [`ours::LICENSE_PLATES`] (`license_plates`, array of strings): the license plate module's
//!   plates.
//! - `rooms`, `common_areas` (arrays of strings), `mobile_key` (bool), `guest_first_name`,
//!   `guest_middle_name`, `guest_email`, `guest_phone`, `check_in_time`, `check_out_time`,
//!   `time_zone` (optional overrides of the site defaults).
//! - The earlier fixture names are accepted as aliases: `arrival_date` (= `start_date`),
//!   `departure_date` (= `end_date`), `status` (= `state`), `guest_last_name` (= `last_name`).
//! - `state` values: `confirmed` (also when absent), `checked_in`, `checked_out`, `cancelled`
//!   (or `canceled`), `no_show`; any other state (an option, a request, a quotation) grants no
//!   access and maps to `cancelled`.
//!
//! Rooms: a reservation references the accommodation it occupies (the seeds' "Object ID") as
//! `relationships.rentable` (BEX: "Availabilities represent a stay in or at a Rentable";
//! `GET /v3/administrations/{id}/rentables` lists them, [`client::BexClient::rentables`]).
//! Without our `rooms` attribute, the rentable's id is the room the event carries: a
//! dormakaba connection's `rooms` map turns object ids into lock-system room numbers, so no
//! free-text room name is relied on.
//!
//! Organization: an administration belongs to an organization (`relationships.organization`
//! of `GET /v3/administrations`); a tenant tied to its organization
//! (`tenant_sources.organization_id`) pulls no administration of another
//! ([`foreign_administrations`]).
//!
//! Site = `relationships.administration.data.id`, else the webhook's `context_id` when
//! `context` is `administration`, else (pull) the administration that was paged. Booking key
//! = the resource id. Revision = `updated_at` in epoch milliseconds.

pub mod client;

use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Context, Id, Ignored, MapError, Mapped, from_value_at, guest_name};

pub use client::{BexClient, ReservationQuery};

/// Attribute names that are ours, in one place (see the module doc).
pub mod ours {
    /// The reservation attribute holding the license plates (array of strings). BEX holds
    /// plates per reservation (its license plate module) but documents no API attribute.
    pub const LICENSE_PLATES: &str = "license_plates";
}

/// A JSON:API reservation resource (API v3, and a webhook's `record.data`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReservationResource {
    /// Reservation id: the booking key.
    pub id: Id,
    /// `reservation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Attributes (documented ones and ours, see the module doc).
    pub attributes: Attributes,
    /// JSON:API relationships; `administration` gives the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationships: Option<Relationships>,
}

/// The relationships we read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Relationships {
    /// The administration (site) the reservation belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administration: Option<Relationship>,
    /// The rentable (accommodation object) the reservation occupies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rentable: Option<Relationship>,
}

/// `{data: {id, type}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Relationship {
    /// The linkage (null when absent).
    pub data: Option<Linkage>,
}

/// A resource identifier.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Linkage {
    /// Id of the related resource.
    pub id: Id,
    /// Its type.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// Reservation attributes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Attributes {
    /// BEX: the reservation number shown to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_nr: Option<Id>,
    /// BEX: arrival date (administration-local).
    #[serde(alias = "arrival_date")]
    pub start_date: NaiveDate,
    /// BEX: departure date (administration-local).
    #[serde(alias = "departure_date")]
    pub end_date: NaiveDate,
    /// BEX: lifecycle state (values: see the module doc).
    #[serde(default, alias = "status", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// BEX: the booker's surname.
    #[serde(
        default,
        alias = "guest_last_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_name: Option<String>,
    /// BEX: created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// BEX: last change: the revision.
    pub updated_at: DateTime<Utc>,
    /// Ours: guest first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_first_name: Option<String>,
    /// Ours: guest middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_middle_name: Option<String>,
    /// Ours: guest e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_email: Option<String>,
    /// Ours: guest mobile phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_phone: Option<String>,
    /// Ours: overrides the site's check-in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_in_time: Option<NaiveTime>,
    /// Ours: overrides the site's check-out time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_out_time: Option<NaiveTime>,
    /// Ours: overrides the site's timezone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Ours: rooms (first = main room).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Ours: common areas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_areas: Vec<String>,
    /// Ours ([`ours::LICENSE_PLATES`]): license plates.
    #[serde(
        default,
        rename = "license_plates",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub license_plates: Vec<String>,
    /// Ours: the guest wants a mobile key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mobile_key: bool,
}

/// A guest of `GET .../reservations/{rid}/guests`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GuestResource {
    /// Guest id.
    pub id: Id,
    /// Attributes.
    pub attributes: GuestAttributes,
}

/// Guest attributes (BEX).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GuestAttributes {
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Surname.
    #[serde(default)]
    pub last_name: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone (not documented for guests; read when present).
    #[serde(default)]
    pub phone: Option<String>,
}

/// An administration of `GET /v3/administrations`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AdministrationResource {
    /// Administration id: the site.
    pub id: Id,
    /// Attributes we read.
    pub attributes: AdministrationAttributes,
    /// `organization`: the organization the administration belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationships: Option<AdministrationRelationships>,
}

/// The administration relationships we read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AdministrationRelationships {
    /// The organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Relationship>,
}

impl AdministrationResource {
    /// The organization's id, when BEX names it.
    pub fn organization(&self) -> Option<String> {
        self.relationships
            .as_ref()
            .and_then(|r| r.organization.as_ref())
            .and_then(|r| r.data.as_ref())
            .map(|d| d.id.to_string())
    }
}

/// Of `wanted` administrations, those BEX lists under another organization than the tenant's
/// `organization` (none when the tenant is tied to no organization): they are not pulled.
/// An administration BEX does not list at all is left to its listing (which fails on its own).
pub fn foreign_administrations<'a>(
    listed: &[AdministrationResource],
    organization: Option<&str>,
    wanted: impl IntoIterator<Item = &'a String>,
) -> Vec<(&'a String, String)> {
    let Some(org) = organization else {
        return Vec::new();
    };
    wanted
        .into_iter()
        .filter_map(|a| {
            let theirs = listed
                .iter()
                .find(|l| l.id.to_string() == *a)?
                .organization()?;
            (theirs != org).then_some((a, theirs))
        })
        .collect()
}

/// A rentable of `GET /v3/administrations/{id}/rentables`: an accommodation object (room,
/// pitch, house) reservations occupy; its id is what a connection's room map is keyed by.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RentableResource {
    /// Rentable (object) id.
    pub id: Id,
    /// Attributes we read.
    #[serde(default)]
    pub attributes: RentableAttributes,
}

/// Rentable attributes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RentableAttributes {
    /// Display name ("Kamer 12", "Chalet 4").
    #[serde(default)]
    pub name: Option<String>,
}

/// Administration attributes (BEX: no IANA zone, only `utc_offset`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AdministrationAttributes {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Current offset from UTC, e.g. `+01:00`.
    #[serde(default)]
    pub utc_offset: Option<String>,
}

/// The App webhook envelope; `record` stays raw until the event name says what it holds.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// `reservation|confirmed`, `reservation:created`, …
    pub event: String,
    /// BEX subscription id (informational).
    #[serde(default)]
    pub subscription_id: Option<Id>,
    /// A JSON:API document `{data: resource}` (or a bare resource).
    pub record: serde_json::Value,
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

impl Envelope {
    /// The organization the webhook names: its `context_id` when `context` is
    /// `organization` (BEX names the context object of an App subscription; an
    /// `administration` context names the administration only).
    pub fn organization(&self) -> Option<String> {
        (self.context.as_deref() == Some("organization"))
            .then(|| self.context_id.as_ref().map(Id::to_string))
            .flatten()
    }
}

/// Install per organization for webhooks, as [`foreign_administrations`] is for the pull: a
/// tenant tied to its BEX organization (`organization`) does not act on a webhook naming
/// another one — ignored (`foreign_organization`), never applied. A webhook naming no
/// organization, or a tenant tied to none, passes.
pub fn check_organization(env: &Envelope, organization: Option<&str>) -> Result<(), Ignored> {
    match (env.organization(), organization) {
        (Some(theirs), Some(ours)) if theirs != ours => Err(Ignored::new(
            "foreign_organization",
            format!("organization {theirs} is not this tenant's BEX organization"),
        )),
        _ => Ok(()),
    }
}

/// What a webhook event does to the reservation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `created`, `updated`, `moved`: the record's `state` is authoritative.
    FromState,
    /// `confirmed`.
    Confirmed,
    /// `checked_in`.
    CheckedIn,
    /// `checked_out`.
    CheckedOut,
    /// `cancelled`, `deleted`: access ends.
    Cancelled,
}

/// `reservation|moved` or `reservation:moved` → (resource, action); `None` for a name that
/// is not `<resource><|:><action>`.
pub fn split_event(name: &str) -> Option<(&str, &str)> {
    name.split_once('|').or_else(|| name.split_once(':'))
}

/// The action of a reservation event, or why it is ignored.
pub fn action(event: &str) -> Result<Action, Ignored> {
    let Some((resource, what)) = split_event(event) else {
        return Err(Ignored::new(
            "unsupported_event",
            format!("event {event:?} is not <resource>|<action>"),
        ));
    };
    if resource != "reservation" {
        return Err(Ignored::new(
            "unsupported_resource",
            format!("events of {resource:?} are not used"),
        ));
    }
    Ok(match what {
        "created" | "updated" | "moved" => Action::FromState,
        "confirmed" => Action::Confirmed,
        "checked_in" => Action::CheckedIn,
        "checked_out" => Action::CheckedOut,
        "cancelled" | "canceled" | "deleted" => Action::Cancelled,
        other => {
            return Err(Ignored::new(
                "unsupported_event",
                format!("reservation action {other:?} is not used"),
            ));
        }
    })
}

/// Maps a webhook: the event name decides first (an unsupported one is ignored without
/// reading the record), then the record goes through [`map_reservation`].
pub fn map_webhook(env: Envelope, cx: Context<'_>) -> Result<Mapped, MapError> {
    let act = match action(&env.event) {
        Ok(a) => a,
        Err(ignored) => return Ok(Mapped::Ignored(ignored)),
    };
    let (prefix, raw) = match env.record {
        serde_json::Value::Object(mut o) if o.contains_key("data") => (
            "record.data",
            o.remove("data").unwrap_or(serde_json::Value::Null),
        ),
        other => ("record", other),
    };
    let res: ReservationResource = from_value_at(prefix, raw)?;
    let fallback_site = (env.context.as_deref() == Some("administration"))
        .then(|| env.context_id.map(|c| c.to_string()))
        .flatten();
    map_reservation(res, act, fallback_site.as_deref(), None, cx, prefix).map(Mapped::Event)
}

/// THE mapping of a reservation (webhook and pull). `fallback_site` is used when the resource
/// names no administration; `guests` (pull) name the guest when given; `path` prefixes the
/// field names of errors.
pub fn map_reservation(
    res: ReservationResource,
    act: Action,
    fallback_site: Option<&str>,
    guests: Option<&[GuestResource]>,
    cx: Context<'_>,
    path: &str,
) -> Result<Box<Event>, MapError> {
    if res.kind != "reservation" {
        return Err(MapError::semantic(
            format!("{path}.type"),
            format!("expected \"reservation\", got {:?}", res.kind),
        ));
    }
    let a = res.attributes;
    let rels = res.relationships.unwrap_or_default();
    let rentable = rels.rentable.and_then(|r| r.data).map(|d| d.id.to_string());
    let site = rels
        .administration
        .and_then(|r| r.data)
        .map(|d| d.id.to_string())
        .or_else(|| fallback_site.map(str::to_owned))
        .ok_or_else(|| {
            MapError::field(
                format!("{path}.relationships.administration"),
                "is required unless context is administration with a context_id",
            )
        })?;
    let status = match act {
        Action::FromState => state(a.state.as_deref()),
        Action::Confirmed => match a.state.as_deref() {
            None => ReservationStatus::Confirmed,
            s => state(s),
        },
        Action::CheckedIn => ReservationStatus::CheckedIn,
        Action::CheckedOut => ReservationStatus::CheckedOut,
        Action::Cancelled => ReservationStatus::Cancelled,
    };
    let main_guest = guests.and_then(|g| g.first()).map(|g| &g.attributes);
    let last = main_guest
        .and_then(|g| g.last_name.clone())
        .filter(|s| !s.trim().is_empty())
        .or(a.last_name)
        .ok_or_else(|| MapError::field(format!("{path}.attributes.last_name"), "is required"))?;
    let first = main_guest
        .and_then(|g| g.first_name.clone())
        .or(a.guest_first_name);
    let d = cx.defaults(&site);
    let reservation = Reservation {
        status,
        guest: Guest {
            name: guest_name(&last, first.as_deref(), a.guest_middle_name.as_deref()),
            email: main_guest.and_then(|g| g.email.clone()).or(a.guest_email),
            mobile_phone: main_guest.and_then(|g| g.phone.clone()).or(a.guest_phone),
        },
        arrival: a.start_date,
        departure: a.end_date,
        check_in_time: a.check_in_time.unwrap_or(d.check_in_time),
        check_out_time: a.check_out_time.unwrap_or(d.check_out_time),
        timezone: a.time_zone.unwrap_or(d.timezone),
        // Our free-text rooms when sent, else the rentable (object id) BEX references.
        rooms: if a.rooms.is_empty() {
            rentable.into_iter().collect()
        } else {
            a.rooms
        },
        common_areas: a.common_areas,
        license_plates: a.license_plates,
        mobile_key: a.mobile_key,
    };
    Ok(Box::new(Event::new(
        cx.tenant,
        site,
        res.id.to_string(),
        a.updated_at.timestamp_millis(),
        Source::Bex,
        a.updated_at,
        EventBody::Reservation(reservation),
    )))
}

/// A `state` attribute as our status (see the module doc).
pub fn state(s: Option<&str>) -> ReservationStatus {
    match s {
        None | Some("confirmed") => ReservationStatus::Confirmed,
        Some("checked_in") => ReservationStatus::CheckedIn,
        Some("checked_out") => ReservationStatus::CheckedOut,
        Some("no_show") => ReservationStatus::NoShow,
        Some(_) => ReservationStatus::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cx(doc: &serde_json::Value) -> Context<'_> {
        Context {
            tenant: "acme",
            site_defaults: doc,
        }
    }

    fn env(event: &str, record: serde_json::Value) -> Envelope {
        serde_json::from_value(json!({
            "event": event, "subscription_id": "s", "context": "administration",
            "context_id": 12, "record": record
        }))
        .unwrap()
    }

    fn api_record() -> serde_json::Value {
        json!({"data": {"id": "9001", "type": "reservation", "attributes": {
            "booking_nr": "BX-1", "start_date": "2030-07-14", "end_date": "2030-07-18",
            "state": "confirmed", "last_name": "Doe", "updated_at": "2030-07-01T10:00:00Z",
            "license_plates": ["AB-123-C"]
        }}})
    }

    #[test]
    fn pipe_and_colon_event_names_map_the_api_resource() {
        let doc = json!({"*": {"timezone": "Europe/Amsterdam"}});
        for name in [
            "reservation|confirmed",
            "reservation:confirmed",
            "reservation|moved",
        ] {
            let Mapped::Event(ev) = map_webhook(env(name, api_record()), cx(&doc)).unwrap() else {
                panic!("{name} ignored")
            };
            assert_eq!(ev.site, "12");
            assert_eq!(ev.booking_key, "9001");
            let EventBody::Reservation(r) = &ev.body else {
                panic!()
            };
            assert_eq!(r.status, ReservationStatus::Confirmed);
            assert_eq!(r.license_plates, vec!["AB-123-C".to_owned()]);
            assert_eq!(r.timezone, "Europe/Amsterdam");
        }
        let Mapped::Event(ev) =
            map_webhook(env("reservation|deleted", api_record()), cx(&doc)).unwrap()
        else {
            panic!()
        };
        assert!(ev.ends_access());
    }

    #[test]
    fn the_rentable_is_the_room_unless_rooms_are_sent() {
        let doc = json!({});
        let mut record = api_record();
        record["data"]["relationships"] =
            json!({"rentable": {"data": {"id": "5501", "type": "rentable"}}});
        let Mapped::Event(ev) =
            map_webhook(env("reservation|confirmed", record.clone()), cx(&doc)).unwrap()
        else {
            panic!()
        };
        let EventBody::Reservation(r) = &ev.body else {
            panic!()
        };
        assert_eq!(r.rooms, vec!["5501".to_owned()], "the object id");
        assert_eq!(ev.site, "12", "site still from the context");
        record["data"]["attributes"]["rooms"] = json!(["Kamer 12"]);
        let Mapped::Event(ev) =
            map_webhook(env("reservation|confirmed", record), cx(&doc)).unwrap()
        else {
            panic!()
        };
        let EventBody::Reservation(r) = &ev.body else {
            panic!()
        };
        assert_eq!(r.rooms, vec!["Kamer 12".to_owned()], "ours, explicit, wins");
    }

    #[test]
    fn administrations_of_another_organization_are_foreign() {
        let listed: Vec<AdministrationResource> = serde_json::from_value(json!([
            {"id": "1001", "attributes": {"name": "A"},
             "relationships": {"organization": {"data": {"id": "org-1", "type": "organization"}}}},
            {"id": "2002", "attributes": {"name": "B"},
             "relationships": {"organization": {"data": {"id": "org-2", "type": "organization"}}}},
            {"id": "3003", "attributes": {"name": "C"}}
        ]))
        .unwrap();
        let wanted = ["1001".to_owned(), "2002".to_owned(), "3003".to_owned()];
        assert_eq!(
            foreign_administrations(&listed, Some("org-1"), &wanted),
            vec![(&wanted[1], "org-2".to_owned())]
        );
        assert!(foreign_administrations(&listed, None, &wanted).is_empty());
    }

    #[test]
    fn a_webhook_naming_another_organization_is_ignored() {
        let of = |context: &str, id: serde_json::Value| -> Envelope {
            serde_json::from_value(json!({
                "event": "reservation|confirmed", "context": context, "context_id": id,
                "record": api_record()
            }))
            .unwrap()
        };
        let foreign = check_organization(&of("organization", json!("org-2")), Some("org-1"));
        assert_eq!(foreign.unwrap_err().reason, "foreign_organization");
        assert!(check_organization(&of("organization", json!(7)), Some("7")).is_ok());
        assert!(check_organization(&of("organization", json!("org-2")), None).is_ok());
        // An administration context names no organization.
        assert!(check_organization(&of("administration", json!(12)), Some("org-1")).is_ok());
    }

    #[test]
    fn unsupported_actions_and_resources_are_ignored_not_errors() {
        let doc = json!({});
        for (name, reason) in [
            ("reservation|option_expired", "unsupported_event"),
            ("invoice|created", "unsupported_resource"),
            ("ping", "unsupported_event"),
        ] {
            match map_webhook(env(name, json!({"nonsense": true})), cx(&doc)).unwrap() {
                Mapped::Ignored(i) => assert_eq!(i.reason, reason, "{name}"),
                Mapped::Event(_) => panic!("{name} mapped"),
            }
        }
    }

    #[test]
    fn missing_fields_are_named_by_path() {
        let e = map_webhook(
            env(
                "reservation|created",
                json!({"data": {"id": 1, "type": "reservation", "attributes": {"end_date": "2030-01-02", "updated_at": "2030-01-01T00:00:00Z"}}}),
            ),
            cx(&json!({})),
        )
        .unwrap_err();
        assert_eq!(
            e,
            MapError::field("record.data.attributes.start_date", "is required")
        );
    }
}
