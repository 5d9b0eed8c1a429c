//! What CloudPass should hold for a reservation: pure, so the worker applies it and the
//! reconciler compares the vendor with it, never a second implementation.

use std::collections::BTreeSet;

use accesshub_connections::CloudpassSettings;
use accesshub_domain::{Reservation, ReservationStatus};
use chrono::{DateTime, Utc};

use crate::client::BookingFields;

/// Our reference on one plate's booking: the booking's reference
/// (`ah:<tenant>:reservation:<key>`, `worker_runtime::reference`) and the normalized plate.
pub fn plate_reference(reference_base: &str, plate: &str) -> String {
    format!("{reference_base}:{plate}")
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

/// When vehicle access ends for a reservation whose access window opens at `from`: check-out
/// plus the window while the stay wants access; for a guest **checked out** at `changed_at`
/// (the upstream's change time, so the worker and the reconciler agree), check-out plus the
/// window or `changed_at` plus the window, whichever is earlier — a guest leaving early still
/// gets out of the car park, but not for the rest of the stay. `None`: no access (cancelled,
/// no-show, or a check-out recorded after that grace had passed).
pub fn access_until(
    settings: &CloudpassSettings,
    r: &Reservation,
    changed_at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, accesshub_domain::TimeError> {
    let after = chrono::Duration::minutes(i64::from(settings.window_after_minutes));
    let check_out = r.check_out()?;
    Ok(match r.status {
        s if s.wants_access() => Some(check_out + after),
        ReservationStatus::CheckedOut => {
            let until = check_out.min(changed_at) + after;
            (until > changed_at).then_some(until)
        }
        _ => None,
    })
}

/// What CloudPass should hold for a reservation at administration `site`: the CloudPass site
/// and one booking per normalized plate, valid from check-in minus the window until
/// [`access_until`], with the administration's time restriction or the default; no bookings
/// when the status wants no access. `reference_base` is the booking's reference
/// (`ah:<tenant>:reservation:<key>`); `changed_at` the event's `occurred_at`. Pure: the
/// worker applies it, the reconciler compares the vendor with it.
pub fn desired_bookings(
    settings: &CloudpassSettings,
    site: &str,
    reference_base: &str,
    r: &Reservation,
    changed_at: DateTime<Utc>,
) -> Result<(String, Vec<BookingFields>), DesiredError> {
    let admin = settings
        .administrations
        .get(site)
        .ok_or_else(|| DesiredError::Unmapped(site.to_owned()))?;
    let plates = plates(r);
    if plates.is_empty() {
        return Ok((admin.site_id.clone(), Vec::new()));
    }
    let bad_time = |e: accesshub_domain::TimeError| DesiredError::Time(e.to_string());
    let Some(until) = access_until(settings, r, changed_at).map_err(bad_time)? else {
        return Ok((admin.site_id.clone(), Vec::new()));
    };
    let from = r.check_in().map_err(bad_time)?
        - chrono::Duration::minutes(i64::from(settings.window_before_minutes));
    if until <= from {
        return Ok((admin.site_id.clone(), Vec::new()));
    }
    let tr = admin
        .time_restriction_id
        .clone()
        .unwrap_or_else(|| settings.default_time_restriction_id.clone());
    let bookings = plates
        .into_iter()
        .map(|plate| BookingFields {
            reference: plate_reference(reference_base, &plate),
            license_plate: plate,
            valid_from: from,
            valid_until: until,
            time_restriction_id: tr.clone(),
            name: r.guest.name.clone(),
        })
        .collect();
    Ok((admin.site_id.clone(), bookings))
}

#[cfg(test)]
pub(crate) mod tests {
    use accesshub_domain::{Guest, Reservation, ReservationStatus};
    use chrono::{DateTime, NaiveTime, Utc};

    fn settings() -> accesshub_connections::CloudpassSettings {
        serde_json::from_value(serde_json::json!({
            "base_url": "https://x", "client_id": "c", "client_secret": "s",
            "administrations": {"a": {"site_id": "s"}}, "default_time_restriction_id": "tr"
        }))
        .unwrap()
    }

    /// A three-night stay with plate `AA11` (shared with the inventory's tests).
    pub(crate) fn stay(status: ReservationStatus) -> Reservation {
        Reservation {
            status,
            guest: Guest {
                name: "Doe".into(),
                email: None,
                mobile_phone: None,
            },
            arrival: "2030-07-01".parse().unwrap(),
            departure: "2030-07-04".parse().unwrap(),
            check_in_time: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
            check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
            timezone: "UTC".into(),
            rooms: vec![],
            common_areas: vec![],
            license_plates: vec!["AA11".into()],
            mobile_key: false,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn checked_out_early_keeps_access_for_the_window_after_leaving_not_the_stay() {
        let s = settings();
        let until = |status, at| super::access_until(&s, &stay(status), t(at)).unwrap();
        // In house: until check-out + 30 min.
        assert_eq!(
            until(ReservationStatus::CheckedIn, "2030-07-02T10:00:00Z"),
            Some(t("2030-07-04T11:30:00Z"))
        );
        // Checked out two days early: now + 30 min, the earlier of the two.
        assert_eq!(
            until(ReservationStatus::CheckedOut, "2030-07-02T10:00:00Z"),
            Some(t("2030-07-02T10:30:00Z"))
        );
        // Checked out on time (after check-out): check-out + 30 min.
        assert_eq!(
            until(ReservationStatus::CheckedOut, "2030-07-04T11:10:00Z"),
            Some(t("2030-07-04T11:30:00Z"))
        );
        // A check-out recorded after that grace: nothing.
        assert_eq!(
            until(ReservationStatus::CheckedOut, "2030-07-04T12:00:00Z"),
            None
        );
        assert_eq!(
            until(ReservationStatus::Cancelled, "2030-07-02T10:00:00Z"),
            None
        );
        // The bookings follow; checked out before the window opened: none.
        let (_, b) = super::desired_bookings(
            &s,
            "a",
            "ref",
            &stay(ReservationStatus::CheckedOut),
            t("2030-07-02T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(b[0].valid_until, t("2030-07-02T10:30:00Z"));
        let (_, b) = super::desired_bookings(
            &s,
            "a",
            "ref",
            &stay(ReservationStatus::CheckedOut),
            t("2030-06-01T10:00:00Z"),
        )
        .unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn plates_are_normalized() {
        assert_eq!(super::normalize_plate(" ab-12 cd "), "AB12CD");
        assert_eq!(super::normalize_plate("xx 99 yy"), "XX99YY");
    }
}
