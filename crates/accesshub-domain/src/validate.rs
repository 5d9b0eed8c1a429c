//! Semantic validation: JSON that parses but makes no booking sense (HTTP 422).

use serde::Serialize;

use crate::event::*;

/// One problem with one field, named by its JSON path so an upstream developer can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `payload.departure`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Implemented by everything that can be checked beyond its JSON shape.
pub trait Validate {
    /// Every problem found (empty means valid).
    fn problems(&self) -> Vec<FieldError>;
}

fn require_nonempty(out: &mut Vec<FieldError>, field: &str, v: &str) {
    if v.trim().is_empty() {
        out.push(FieldError::new(field, "must not be empty"));
    }
}

impl Validate for Event {
    fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        require_nonempty(&mut out, "tenant", &self.tenant);
        require_nonempty(&mut out, "site", &self.site);
        require_nonempty(&mut out, "booking_key", &self.booking_key);
        if self.revision < 0 {
            out.push(FieldError::new("revision", "must be zero or positive"));
        }
        if self.schema_version != SCHEMA_VERSION {
            out.push(FieldError::new(
                "schema_version",
                format!(
                    "unsupported version {}, expected {SCHEMA_VERSION}",
                    self.schema_version
                ),
            ));
        }
        let inner = match &self.body {
            EventBody::Reservation(r) => r.problems(),
            EventBody::Facility(f) => f.problems(),
            EventBody::Pass(p) => p.problems(),
            EventBody::KeyRequest(k) => k.problems(),
        };
        out.extend(inner.into_iter().map(|e| FieldError {
            field: format!("payload.{}", e.field),
            problem: e.problem,
        }));
        out
    }
}

impl Validate for Reservation {
    fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        require_nonempty(&mut out, "guest.name", &self.guest.name);
        if self.departure < self.arrival {
            out.push(FieldError::new(
                "departure",
                format!(
                    "departure {} is before arrival {}",
                    self.departure, self.arrival
                ),
            ));
        }
        if self.tz().is_err() {
            out.push(FieldError::new(
                "timezone",
                format!("{:?} is not an IANA timezone", self.timezone),
            ));
        } else if let (Ok(a), Ok(d)) = (self.check_in(), self.check_out())
            && d <= a
        {
            out.push(FieldError::new(
                "check_out_time",
                "check-out must be after check-in",
            ));
        }
        for (i, r) in self.rooms.iter().enumerate() {
            require_nonempty(&mut out, &format!("rooms[{i}]"), r);
        }
        for (i, p) in self.license_plates.iter().enumerate() {
            require_nonempty(&mut out, &format!("license_plates[{i}]"), p);
        }
        if let Some(phone) = &self.guest.mobile_phone {
            check_phone_chars(&mut out, "guest.mobile_phone", phone);
        }
        out
    }
}

/// A phone number may hold only what people type into one (the lock system checks the rest).
fn check_phone_chars(out: &mut Vec<FieldError>, field: &str, phone: &str) {
    if !phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c))
    {
        out.push(FieldError::new(
            field,
            "may contain only digits, spaces, +, - and parentheses",
        ));
    }
}

impl Validate for FacilityBooking {
    fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        require_nonempty(&mut out, "facility_id", &self.facility_id);
        require_nonempty(&mut out, "resident.id", &self.resident.id);
        if !self.resident.email.contains('@') {
            out.push(FieldError::new(
                "resident.email",
                "is not an e-mail address",
            ));
        }
        if self.end <= self.start {
            out.push(FieldError::new("end", "end must be after start"));
        }
        out
    }
}

impl Validate for Pass {
    fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        require_nonempty(&mut out, "pass_type", &self.pass_type);
        require_nonempty(&mut out, "holder.id", &self.holder.id);
        if !self.holder.email.contains('@') {
            out.push(FieldError::new("holder.email", "is not an e-mail address"));
        }
        if let Some(from) = self.valid_from
            && self.expires_at <= from
        {
            out.push(FieldError::new("expires_at", "must be after valid_from"));
        }
        out
    }
}

impl Validate for KeyRequest {
    fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        require_nonempty(&mut out, "reservation_key", &self.reservation_key);
        if self.key_count == 0 || self.key_count > 10 {
            out.push(FieldError::new("key_count", "must be between 1 and 10"));
        }
        if matches!(self.action, KeyAction::NewKey | KeyAction::DuplicateKey)
            && self
                .encoder_id
                .as_deref()
                .is_none_or(|e| e.trim().is_empty())
        {
            out.push(FieldError::new(
                "encoder_id",
                "is required to encode key cards",
            ));
        }
        if let Some(phone) = &self.mobile_phone {
            if phone.trim().is_empty() {
                out.push(FieldError::new(
                    "mobile_phone",
                    "must not be empty when given",
                ));
            } else {
                check_phone_chars(&mut out, "mobile_phone", phone);
            }
        }
        out
    }
}
