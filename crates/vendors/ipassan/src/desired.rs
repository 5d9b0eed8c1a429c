//! Facility → asset mapping and iPassan's booking rules, as plain functions.
//!
//! The rules are checked before calling iPassan so a booking that can never succeed goes to
//! the DLQ with a reason naming the rule and the values, instead of a bare vendor 422 — and
//! so a replacement never deletes the current booking for a new window the vendor would
//! refuse anyway.

use accesshub_connections::IpassanSettings;
use accesshub_domain::{Classify, ErrorClass, FacilityBooking, FacilityStatus};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};

use crate::client::{Asset, AssetBooking};

/// A booking that breaks a rule or a mapping that is missing: retrying cannot fix either,
/// an operator or the resident must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The connection has no asset for the facility.
    #[error(
        "facility {facility} is not mapped to an iPassan asset in connection {tenant}/{connection} (add it under settings.facilities)"
    )]
    FacilityNotMapped {
        /// Upstream facility id.
        facility: String,
        /// Tenant.
        tenant: String,
        /// Connection name.
        connection: String,
    },
    /// The mapped asset does not exist at the connection's site.
    #[error(
        "facility {facility} is mapped to iPassan asset {asset}, which does not exist at site {site}"
    )]
    AssetNotFound {
        /// Upstream facility id.
        facility: String,
        /// Asset GUID from the mapping.
        asset: String,
        /// Site GUID.
        site: String,
    },
    /// `end <= start`.
    #[error("rule 'end after start' broken: booking ends at {end}, not after its start {start}")]
    EmptyWindow {
        /// Start.
        start: String,
        /// End.
        end: String,
    },
    /// Start or end not on a slot boundary.
    #[error(
        "rule 'time slot boundaries' broken: {which} {value} is not on a {slot}-minute slot boundary of asset {asset} (slots start at minutes since midnight UTC divisible by {slot})"
    )]
    OffSlot {
        /// `start` or `end`.
        which: &'static str,
        /// The offending time.
        value: String,
        /// Slot length in minutes.
        slot: u32,
        /// Asset name and GUID.
        asset: String,
    },
    /// Longer than the asset's max booking time.
    #[error(
        "rule 'max booking time' broken: booking of {minutes} minutes ({start} - {end}) exceeds the maximum of {max} minutes of asset {asset}"
    )]
    TooLong {
        /// Requested duration.
        minutes: i64,
        /// Asset maximum.
        max: u32,
        /// Start.
        start: String,
        /// End.
        end: String,
        /// Asset name and GUID.
        asset: String,
    },
    /// The asset allows one booking per slot and someone else holds part of the window.
    #[error(
        "rule 'one booking per time slot' broken: asset {asset} already has booking {other} for {other_window}, overlapping the requested {requested}"
    )]
    Overlap {
        /// Asset name and GUID.
        asset: String,
        /// The other booking's GUID.
        other: String,
        /// Its window, `start - end`.
        other_window: String,
        /// The requested window, `start - end`.
        requested: String,
    },
    /// The person lacks an access profile the asset requires (iPassan's 422). Only an
    /// iPassan operator can grant profiles; we never do.
    #[error(
        "rule 'access profiles' broken: resident {resident} does not hold the {kind} access profile {profile} required by asset {asset}: grant it in iPassan, then replay (iPassan said: {vendor_message})"
    )]
    MissingProfile {
        /// Resident e-mail and iPassan person GUID.
        resident: String,
        /// `door/zone` or `floor`.
        kind: &'static str,
        /// Profile name (quoted) and GUID as iPassan named it.
        profile: String,
        /// Asset name and GUID.
        asset: String,
        /// The vendor's message, verbatim.
        vendor_message: String,
    },
    /// A reconciler removal command whose vendor id is not `<asset>/<booking>`.
    #[error("stray vendor id {vendor_id:?} is not <asset GUID>/<booking GUID>")]
    BadStrayId {
        /// The id received.
        vendor_id: String,
    },
    /// The resident cannot become an iPassan person.
    #[error("resident {resident}: {reason}")]
    BadResident {
        /// Upstream resident id.
        resident: String,
        /// Why.
        reason: String,
    },
}

impl Classify for RuleError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// `2030-05-01T14:00:00Z`, as in messages and on the wire.
pub fn ts(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "Rooftop BBQ (6b1f…)" for messages: operators know the name, support needs the GUID.
pub fn asset_label(a: &Asset) -> String {
    if a.name.is_empty() {
        a.uuid.clone()
    } else {
        format!("{} ({})", a.name, a.uuid)
    }
}

/// The asset GUID a facility maps to in the connection.
pub fn asset_for<'a>(
    settings: &'a IpassanSettings,
    tenant: &str,
    connection: &str,
    facility: &str,
) -> Result<&'a str, RuleError> {
    settings
        .facilities
        .get(facility)
        .map(String::as_str)
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| RuleError::FacilityNotMapped {
            facility: facility.to_owned(),
            tenant: tenant.to_owned(),
            connection: connection.to_owned(),
        })
}

/// Where a booking's asset bookings of ours can be, from what earlier attempts left
/// (`apply::VendorIds::trace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace<'a> {
    /// No attempt of any event of the booking can have reached iPassan before this one (the
    /// runtime's durable attempt marker): nothing of ours exists yet.
    Nowhere,
    /// The record was written by a build that records a create's asset durably before sending
    /// it: ours are only on the recorded asset and on the asset of a create that may have
    /// been under way when an attempt died.
    Recorded {
        /// The asset the binding records.
        asset: Option<&'a str>,
        /// The asset of a create recorded as under way.
        creating: Option<&'a str>,
    },
    /// Nothing trustworthy: a record of an older build, or none although an earlier attempt
    /// may have called iPassan. An attempt killed between a create and its record may have
    /// left a booking on any mapped asset (the facility may have changed since).
    Anywhere {
        /// The asset the binding records, if any.
        asset: Option<&'a str>,
    },
}

/// The assets to search for a booking's asset bookings, each once (GUIDs compare without
/// case): the desired asset, then the ones `trace` names; for [`Trace::Anywhere`] every asset
/// the connection maps a facility to as well, and for [`Trace::Nowhere`] none at all. One
/// list call per asset: one for most events, two when a booking moves to another asset, one
/// per mapped asset only after an older build's record (the cross-asset sweep is the
/// reconciler's, docs/sync.md).
pub fn assets_to_search<'a>(
    settings: &'a IpassanSettings,
    desired: Option<&'a str>,
    trace: Trace<'a>,
) -> Vec<&'a str> {
    let (named, mapped): (Vec<&str>, bool) = match trace {
        Trace::Nowhere => return Vec::new(),
        Trace::Recorded { asset, creating } => (asset.into_iter().chain(creating).collect(), false),
        Trace::Anywhere { asset } => (asset.into_iter().collect(), true),
    };
    let mapped = settings
        .facilities
        .values()
        .map(|a| a.trim())
        .filter(|_| mapped);
    let mut out: Vec<&str> = Vec::new();
    for a in desired.into_iter().chain(named).chain(mapped) {
        let a = a.trim();
        if !a.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            out.push(a);
        }
    }
    out
}

/// Whether `t` is on a slot boundary: whole minute, minutes since midnight UTC divisible by
/// the slot (iPassan's definition; a zero slot means no slot rule).
pub fn on_slot(t: &DateTime<Utc>, slot_minutes: u32) -> bool {
    if slot_minutes == 0 {
        return true;
    }
    t.second() == 0
        && t.nanosecond() == 0
        && (t.hour() * 60 + t.minute()).is_multiple_of(slot_minutes)
}

/// The window rules: end after start, both on slot boundaries, duration within the maximum.
pub fn check_window(
    asset: &Asset,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), RuleError> {
    if end <= start {
        return Err(RuleError::EmptyWindow {
            start: ts(&start),
            end: ts(&end),
        });
    }
    for (which, t) in [("start", &start), ("end", &end)] {
        if !on_slot(t, asset.time_slot_minutes) {
            return Err(RuleError::OffSlot {
                which,
                value: ts(t),
                slot: asset.time_slot_minutes,
                asset: asset_label(asset),
            });
        }
    }
    let minutes = (end - start).num_minutes();
    if minutes > i64::from(asset.max_booking_minutes) {
        return Err(RuleError::TooLong {
            minutes,
            max: asset.max_booking_minutes,
            start: ts(&start),
            end: ts(&end),
            asset: asset_label(asset),
        });
    }
    Ok(())
}

/// Half-open windows overlap; adjacent ones (one ends when the other starts) do not.
pub fn overlaps(
    a_start: DateTime<Utc>,
    a_end: DateTime<Utc>,
    b_start: DateTime<Utc>,
    b_end: DateTime<Utc>,
) -> bool {
    a_start < b_end && b_start < a_end
}

/// One booking per slot: when the asset says so, no booking other than ours (by reference)
/// may overlap the requested window. Ours are excluded because they are being replaced.
pub fn check_overlap(
    asset: &Asset,
    existing: &[AssetBooking],
    reference: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), RuleError> {
    if !asset.one_booking_per_slot {
        return Ok(());
    }
    match existing
        .iter()
        .filter(|b| b.reference.as_deref() != Some(reference))
        .find(|b| overlaps(b.start, b.end, start, end))
    {
        None => Ok(()),
        Some(other) => Err(RuleError::Overlap {
            asset: asset_label(asset),
            other: other.uuid.clone(),
            other_window: format!("{} - {}", ts(&other.start), ts(&other.end)),
            requested: format!("{} - {}", ts(&start), ts(&end)),
        }),
    }
}

/// Recognises iPassan's 422 refusing a create that overlaps another booking of a
/// one-booking-per-slot asset ("… allows one booking per time slot and booking <guid> already
/// holds <start> - <end>") as the same rule error the pre-check gives: a plain create is not
/// pre-checked (the list of every booking of the asset cost a call per page of them). `None`
/// for other messages.
pub fn refused_overlap(
    message: &str,
    asset: &Asset,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<RuleError> {
    if !message
        .to_ascii_lowercase()
        .contains("one booking per time slot")
    {
        return None;
    }
    let (other, other_window) = match message.find("already holds") {
        Some(i) => (
            message
                .get(..i)
                .unwrap_or_default()
                .trim_end()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned(),
            message
                .get(i + "already holds".len()..)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        None => ("(not named)".to_owned(), message.trim().to_owned()),
    };
    Some(RuleError::Overlap {
        asset: asset_label(asset),
        other,
        other_window,
        requested: format!("{} - {}", ts(&start), ts(&end)),
    })
}

/// Recognises iPassan's 422 for a missing access profile ("… does not hold the floor access
/// profile 'Floor 7' (guid) required by …") and names the profile. `None` for other messages.
pub fn missing_profile(
    message: &str,
    asset: &Asset,
    resident: &str,
    person: &str,
) -> Option<RuleError> {
    let lower = message.to_ascii_lowercase();
    let (kind, marker) = if let Some(i) = lower.find("door/zone access profile") {
        ("door/zone", i + "door/zone access profile".len())
    } else if let Some(i) = lower.find("floor access profile") {
        ("floor", i + "floor access profile".len())
    } else if lower.contains("access profile") {
        (
            "required",
            lower.find("access profile")? + "access profile".len(),
        )
    } else {
        return None;
    };
    // The profile as iPassan named it: the text up to " required" (name and GUID), else the
    // asset's profile GUID of that kind.
    let rest = message.get(marker..).unwrap_or_default().trim_start();
    let named = rest
        .find(" required")
        .map(|i| rest.get(..i).unwrap_or_default().trim().to_owned())
        .filter(|s| !s.is_empty());
    let fallback = match kind {
        "door/zone" => asset.door_access_profile.clone(),
        "floor" => asset.floor_access_profile.clone(),
        _ => None,
    };
    let profile = named.or(fallback).unwrap_or_else(|| "(unnamed)".to_owned());
    Some(RuleError::MissingProfile {
        // The person GUID identifies them for the operator; the address stays masked (L7).
        resident: format!(
            "{} (iPassan person {person})",
            accesshub_domain::pii::mask_email(resident)
        ),
        kind,
        profile,
        asset: asset_label(asset),
        vendor_message: accesshub_domain::pii::mask_emails_in(message),
    })
}

/// One of our bookings found at the vendor, with the asset it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours {
    /// Asset GUID.
    pub asset: String,
    /// The booking.
    pub booking: AssetBooking,
}

/// Where and when a booking's current desired state wants its one asset booking: what the
/// reconciler compares (asset, start, end), without the person, which only a vendor call can
/// tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Asset GUID (from the connection's mapping).
    pub asset: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
}

/// What `booking` wants through the connection `settings` belong to: `None` when it wants no
/// asset booking there (cancelled, or its facility is not mapped).
pub fn wanted(
    settings: &IpassanSettings,
    tenant: &str,
    connection: &str,
    booking: &FacilityBooking,
) -> Option<Wanted> {
    if booking.status != FacilityStatus::Booked {
        return None;
    }
    let asset = asset_for(settings, tenant, connection, &booking.facility_id).ok()?;
    Some(Wanted {
        asset: asset.trim().to_owned(),
        start: booking.start,
        end: booking.end,
    })
}

/// The copy of a booking's reference to keep when iPassan holds several (it does not enforce
/// the reference's uniqueness): only copies on the wanted asset qualify; among them one that
/// already has the wanted window, then the one the binding records (`recorded`: asset and
/// booking GUID), then the oldest (iPassan lists by creation). Every other copy is a
/// duplicate. The reconciler's engine keeps the first exact copy, else the first listed, so
/// the two agree wherever the record does not decide; preferring an exact copy over the
/// record means a sync that follows a lost event leaves the wanted window in one pass.
pub fn keeper<'a>(
    copies: &'a [Ours],
    wanted: &Wanted,
    recorded: Option<(&str, &str)>,
) -> Option<&'a Ours> {
    let exact = |o: &Ours| o.booking.start == wanted.start && o.booking.end == wanted.end;
    let is_recorded = |o: &Ours| {
        recorded.is_some_and(|(a, b)| o.asset.eq_ignore_ascii_case(a) && o.booking.uuid == b)
    };
    copies
        .iter()
        .enumerate()
        .filter(|(_, o)| o.asset.eq_ignore_ascii_case(&wanted.asset))
        .min_by_key(|(i, o)| (!exact(o), !is_recorded(o), *i))
        .map(|(_, o)| o)
}

/// The booking we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Asset GUID.
    pub asset: String,
    /// Person GUID.
    pub person: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
}

/// What to do to get from our existing bookings to the desired one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// An existing booking that already matches (nothing to create).
    pub keep: Option<Ours>,
    /// Deleted BEFORE creating: our bookings on the same one-booking-per-slot asset that
    /// overlap the new window — iPassan would refuse the new booking while they exist.
    pub delete_first: Vec<Ours>,
    /// Whether a new booking must be created.
    pub create: bool,
    /// Deleted AFTER the new booking exists, so no moment of the new window is uncovered.
    pub delete_after: Vec<Ours>,
}

/// Plans the replacement.
///
/// Make-before-break: the new booking is created first and the old ones deleted afterwards,
/// so no moment of the new window is ever without a booking. The exception is iPassan's own
/// rule: on an asset with one booking per slot, a new window that overlaps our old booking
/// cannot be created while the old one exists. Then (and only for those overlapping old
/// bookings) we delete first and create right after — accepting a gap of one API call for
/// the overlapping part, because the vendor's rule leaves no other way; the caller restores
/// the old booking if the create fails.
pub fn plan(desired: &Desired, ours: &[Ours], one_booking_per_slot: bool) -> Plan {
    let keep = ours
        .iter()
        .find(|o| {
            o.asset.eq_ignore_ascii_case(&desired.asset)
                && o.booking.person_uuid == desired.person
                && o.booking.start == desired.start
                && o.booking.end == desired.end
        })
        .cloned();
    let mut p = Plan {
        create: keep.is_none(),
        keep: keep.clone(),
        ..Plan::default()
    };
    for o in ours {
        if keep
            .as_ref()
            .is_some_and(|k| k.booking.uuid == o.booking.uuid)
        {
            continue;
        }
        let blocks = p.create
            && one_booking_per_slot
            && o.asset.eq_ignore_ascii_case(&desired.asset)
            && overlaps(o.booking.start, o.booking.end, desired.start, desired.end);
        if blocks {
            p.delete_first.push(o.clone());
        } else {
            p.delete_after.push(o.clone());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn asset(slot: u32, max: u32, one: bool) -> Asset {
        Asset {
            uuid: "a1".into(),
            name: "Rooftop BBQ".into(),
            time_slot_minutes: slot,
            max_booking_minutes: max,
            one_booking_per_slot: one,
            door_access_profile: Some("d1".into()),
            floor_access_profile: Some("f7".into()),
        }
    }

    fn booking(uuid: &str, start: &str, end: &str, reference: Option<&str>) -> AssetBooking {
        AssetBooking {
            uuid: uuid.into(),
            person_uuid: "p1".into(),
            start: t(start),
            end: t(end),
            reference: reference.map(Into::into),
            title: None,
        }
    }

    #[test]
    fn mapping() {
        let s = IpassanSettings {
            base_url: "http://x".into(),
            client_id: "c".into(),
            client_secret: accesshub_connections::Secret::new("s"),
            site_guid: "site".into(),
            facilities: BTreeMap::from([("gym".to_owned(), "a1".to_owned())]),
        };
        assert_eq!(asset_for(&s, "t", "default", "gym").unwrap(), "a1");
        let e = asset_for(&s, "t", "default", "pool").unwrap_err();
        assert_eq!(
            e.to_string(),
            "facility pool is not mapped to an iPassan asset in connection t/default (add it under settings.facilities)"
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        // Every mapped asset is searched once, the desired and recorded ones first.
        let s = IpassanSettings {
            facilities: BTreeMap::from([
                ("gym".to_owned(), "a1".to_owned()),
                ("pool".to_owned(), " A2 ".to_owned()),
                ("spa".to_owned(), "a1".to_owned()),
                ("unset".to_owned(), " ".to_owned()),
            ]),
            ..s
        };
        let anywhere = |asset| Trace::Anywhere { asset };
        assert_eq!(
            assets_to_search(&s, Some("a2"), anywhere(Some("old"))),
            vec!["a2", "old", "a1"]
        );
        assert_eq!(assets_to_search(&s, None, anywhere(None)), vec!["a1", "A2"]);
        // A record that names every asset a create went to: those and the desired one only.
        let recorded = |asset, creating| Trace::Recorded { asset, creating };
        assert_eq!(
            assets_to_search(&s, Some("a2"), recorded(Some("A2"), None)),
            vec!["a2"]
        );
        assert_eq!(
            assets_to_search(&s, Some("a2"), recorded(Some("old"), Some("a1"))),
            vec!["a2", "old", "a1"]
        );
        assert_eq!(
            assets_to_search(&s, None, recorded(None, None)),
            Vec::<&str>::new()
        );
        // A booking's first attempt: nothing of ours anywhere.
        assert_eq!(
            assets_to_search(&s, Some("a2"), Trace::Nowhere),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn an_overlap_refused_by_ipassan_is_the_overlap_rule() {
        let a = asset(30, 120, true);
        let m = "asset Rooftop BBQ allows one booking per time slot and booking b-9 already holds 2030-05-01T10:30:00Z - 2030-05-01T11:00:00Z";
        let e =
            refused_overlap(m, &a, t("2030-05-01T10:00:00Z"), t("2030-05-01T11:00:00Z")).unwrap();
        assert_eq!(
            e.to_string(),
            "rule 'one booking per time slot' broken: asset Rooftop BBQ (a1) already has booking b-9 for 2030-05-01T10:30:00Z - 2030-05-01T11:00:00Z, overlapping the requested 2030-05-01T10:00:00Z - 2030-05-01T11:00:00Z"
        );
        assert!(
            refused_overlap(
                "end must be after start",
                &a,
                t("2030-05-01T10:00:00Z"),
                t("2030-05-01T11:00:00Z")
            )
            .is_none()
        );
    }

    #[test]
    fn window_rules_name_rule_and_values() {
        let a = asset(30, 120, true);
        check_window(&a, t("2030-05-01T10:00:00Z"), t("2030-05-01T12:00:00Z")).unwrap();
        let e = check_window(&a, t("2030-05-01T10:15:00Z"), t("2030-05-01T11:00:00Z"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("time slot boundaries"), "{e}");
        assert!(e.contains("start 2030-05-01T10:15:00Z"), "{e}");
        assert!(e.contains("30-minute"), "{e}");
        let e = check_window(&a, t("2030-05-01T10:00:00Z"), t("2030-05-01T11:00:30Z"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("end 2030-05-01T11:00:30Z"), "{e}");
        let e = check_window(&a, t("2030-05-01T10:00:00Z"), t("2030-05-01T12:30:00Z"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max booking time"), "{e}");
        assert!(
            e.contains("150 minutes") && e.contains("maximum of 120"),
            "{e}"
        );
        let e = check_window(&a, t("2030-05-01T10:00:00Z"), t("2030-05-01T10:00:00Z"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("end after start"), "{e}");
    }

    #[test]
    fn overlap_excludes_ours_and_adjacent() {
        let a = asset(30, 120, true);
        let existing = vec![
            booking(
                "mine",
                "2030-05-01T10:00:00Z",
                "2030-05-01T11:00:00Z",
                Some("ref"),
            ),
            booking(
                "adjacent",
                "2030-05-01T11:30:00Z",
                "2030-05-01T12:00:00Z",
                Some("x"),
            ),
        ];
        check_overlap(
            &a,
            &existing,
            "ref",
            t("2030-05-01T10:30:00Z"),
            t("2030-05-01T11:30:00Z"),
        )
        .unwrap();
        let e = check_overlap(
            &a,
            &existing,
            "ref",
            t("2030-05-01T11:00:00Z"),
            t("2030-05-01T12:00:00Z"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("one booking per time slot"), "{e}");
        assert!(
            e.contains("adjacent") && e.contains("2030-05-01T11:30:00Z"),
            "{e}"
        );
        // Not enforced when the asset allows parallel bookings.
        check_overlap(
            &asset(30, 120, false),
            &existing,
            "ref",
            t("2030-05-01T11:00:00Z"),
            t("2030-05-01T12:00:00Z"),
        )
        .unwrap();
    }

    #[test]
    fn profile_message_is_recognised() {
        let a = asset(30, 120, true);
        let m = "person p2 does not hold the floor access profile 'Floor 7' (f7) required by asset Rooftop BBQ";
        let e = missing_profile(m, &a, "eva@example.com", "p2").unwrap();
        let s = e.to_string();
        assert!(s.contains("floor access profile 'Floor 7' (f7)"), "{s}");
        assert!(s.contains("e***@example.com (iPassan person p2)"), "{s}");
        assert!(!s.contains("eva@"), "{s}");
        assert!(missing_profile("end must be after start", &a, "x", "y").is_none());
    }

    #[test]
    fn plans() {
        let d = Desired {
            asset: "a1".into(),
            person: "p1".into(),
            start: t("2030-05-01T10:30:00Z"),
            end: t("2030-05-01T11:30:00Z"),
        };
        let ours = |s: &str, e: &str| Ours {
            asset: "a1".into(),
            booking: booking("old", s, e, Some("ref")),
        };
        // Already there.
        let p = plan(
            &d,
            &[ours("2030-05-01T10:30:00Z", "2030-05-01T11:30:00Z")],
            true,
        );
        assert!(!p.create && p.keep.is_some() && p.delete_after.is_empty());
        // Moved without overlap: make before break.
        let p = plan(
            &d,
            &[ours("2030-05-01T08:00:00Z", "2030-05-01T09:00:00Z")],
            true,
        );
        assert!(p.create && p.delete_first.is_empty() && p.delete_after.len() == 1);
        // Moved with overlap on a one-per-slot asset: break before make.
        let p = plan(
            &d,
            &[ours("2030-05-01T10:00:00Z", "2030-05-01T11:00:00Z")],
            true,
        );
        assert!(p.create && p.delete_first.len() == 1 && p.delete_after.is_empty());
        // Same overlap where parallel bookings are allowed: make before break.
        let p = plan(
            &d,
            &[ours("2030-05-01T10:00:00Z", "2030-05-01T11:00:00Z")],
            false,
        );
        assert!(p.create && p.delete_first.is_empty() && p.delete_after.len() == 1);
        // A duplicate left by a crash is removed after keeping the match.
        let mut dup = ours("2030-05-01T10:30:00Z", "2030-05-01T11:30:00Z");
        dup.booking.uuid = "dup".into();
        let p = plan(
            &d,
            &[ours("2030-05-01T10:30:00Z", "2030-05-01T11:30:00Z"), dup],
            true,
        );
        assert!(!p.create && p.delete_after.len() == 1);
    }

    #[test]
    fn the_exact_copy_is_kept_then_the_recorded_one_then_the_oldest() {
        let w = Wanted {
            asset: "a1".into(),
            start: t("2030-05-01T10:00:00Z"),
            end: t("2030-05-01T11:00:00Z"),
        };
        let copy = |asset: &str, uuid: &str, start: &str| Ours {
            asset: asset.into(),
            booking: booking(uuid, start, "2030-05-01T11:00:00Z", Some("ref")),
        };
        let kept = |copies: &[Ours], rec: Option<(&str, &str)>| {
            keeper(copies, &w, rec).map(|o| o.booking.uuid.clone())
        };
        let two = [
            copy("a1", "old", "2030-05-01T10:00:00Z"),
            copy("A1", "new", "2030-05-01T10:00:00Z"),
        ];
        assert_eq!(kept(&two, None).as_deref(), Some("old"), "the oldest");
        assert_eq!(
            kept(&two, Some(("a1", "new"))).as_deref(),
            Some("new"),
            "the recorded"
        );
        assert_eq!(kept(&two, Some(("a1", "gone"))).as_deref(), Some("old"));
        // An exact copy wins over a recorded one with another window.
        let moved = [
            copy("a1", "rec", "2030-05-01T09:00:00Z"),
            copy("a1", "exact", "2030-05-01T10:00:00Z"),
        ];
        assert_eq!(kept(&moved, Some(("a1", "rec"))).as_deref(), Some("exact"));
        // No exact copy: the recorded one, else the oldest.
        let off = [
            copy("a1", "x", "2030-05-01T09:00:00Z"),
            copy("a1", "y", "2030-05-01T09:30:00Z"),
        ];
        assert_eq!(kept(&off, Some(("a1", "y"))).as_deref(), Some("y"));
        assert_eq!(kept(&off, None).as_deref(), Some("x"));
        // Copies on another asset never qualify, even recorded.
        let elsewhere = [copy("a2", "z", "2030-05-01T10:00:00Z")];
        assert_eq!(kept(&elsewhere, Some(("a2", "z"))), None);
    }

    #[test]
    fn slots() {
        assert!(on_slot(&t("2030-05-01T10:45:00Z"), 15));
        assert!(!on_slot(&t("2030-05-01T10:45:00Z"), 30));
        assert!(!on_slot(&t("2030-05-01T10:45:01Z"), 15));
        assert!(on_slot(&t("2030-05-01T10:47:13Z"), 0));
    }
}
