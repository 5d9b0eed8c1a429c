//! What CloudPass should hold for a reservation: pure, so the worker applies it and the
//! reconciler compares the vendor with it, never a second implementation.

use std::collections::BTreeSet;

use accesshub_connections::CloudpassSettings;
use accesshub_domain::Reservation;

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

/// What CloudPass should hold for a reservation at administration `site`: the CloudPass site
/// and one booking per normalized plate, valid from check-in minus the window to check-out
/// plus the window, with the administration's time restriction or the default; no bookings
/// when the status wants no access. `reference_base` is the booking's reference
/// (`ah:<tenant>:reservation:<key>`). Pure: the worker applies it, the reconciler compares
/// the vendor with it.
pub fn desired_bookings(
    settings: &CloudpassSettings,
    site: &str,
    reference_base: &str,
    r: &Reservation,
) -> Result<(String, Vec<BookingFields>), DesiredError> {
    let admin = settings
        .administrations
        .get(site)
        .ok_or_else(|| DesiredError::Unmapped(site.to_owned()))?;
    let plates = plates(r);
    if !r.status.wants_access() || plates.is_empty() {
        return Ok((admin.site_id.clone(), Vec::new()));
    }
    let bad_time = |e: accesshub_domain::TimeError| DesiredError::Time(e.to_string());
    let from = r.check_in().map_err(bad_time)?
        - chrono::Duration::minutes(i64::from(settings.window_before_minutes));
    let until = r.check_out().map_err(bad_time)?
        + chrono::Duration::minutes(i64::from(settings.window_after_minutes));
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
mod tests {
    #[test]
    fn plates_are_normalized() {
        assert_eq!(super::normalize_plate(" ab-12 cd "), "AB12CD");
        assert_eq!(super::normalize_plate("xx 99 yy"), "XX99YY");
    }
}
