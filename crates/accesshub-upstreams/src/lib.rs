//! Booking systems as they really are (issue 21, ARCHITECTURE.md principle 9): per upstream
//! one module holding its wire types (API resources and webhook bodies), the ONE mapping from
//! its record to [`accesshub_domain::Event`] — shared by booking-ingest's webhooks and the
//! reconciler's pulls, so a pulled reservation and a pushed one are the same event — and its
//! API client.
//!
//! - [`bex`]: Booking Experts PMS API v3 (JSON:API, `x-api-key`) and App webhooks.
//! - [`nexudus`]: Nexudus REST (Basic auth, search pages): coworker time passes, polled.
//! - [`clock`]: Clock PMS+ PMS API (Digest auth, 5 calls/s) and booking notifications.
//! - [`lookup`]: what the mapping screens list from BEX (admin API and console alike).
//!
//! Names the vendor documents are used as documented; names that are ours are marked so in
//! each module's doc comment and in docs/upstreams.md.

pub mod bex;
pub mod clock;
pub mod creds;
pub mod error;
mod http;
pub mod lookup;
pub mod nexudus;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, de::DeserializeOwned};

pub use creds::{UpstreamCredentials, UpstreamStore};
pub use error::{MapError, UpstreamError};

/// What a mapping needs besides the record.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Tenant (authenticated by the webhook's URL and signature, or the pull's connection).
    pub tenant: &'a str,
    /// The tenant source's `site_defaults` document.
    pub site_defaults: &'a serde_json::Value,
}

impl Context<'_> {
    /// Defaults of one site.
    pub fn defaults(&self, site: &str) -> SiteDefaults {
        SiteDefaults::for_site(self.site_defaults, site)
    }
}

/// What a mapping makes of a record: an event, or nothing on purpose.
#[derive(Debug)]
pub enum Mapped {
    /// The normalized event.
    Event(Box<accesshub_domain::Event>),
    /// Deliberately not an event (an action we do not act on): answered 2xx `ignored`, so
    /// that the sender neither retries nor disables the webhook.
    Ignored(Ignored),
}

/// Why a record was ignored: a stable label for the metric and a sentence for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// `accesshub_ingest_ignored_total{reason}`: `unsupported_event`, `unsupported_resource`, ….
    pub reason: &'static str,
    /// What exactly (safe to return to the sender: no personal data).
    pub detail: String,
}

impl Ignored {
    /// An ignored record.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Ignored {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a site needs but a booking system does not send. Looked up in
/// `tenant_sources.site_defaults` (`{"<site id>": {"check_in_time": "15:00", "check_out_time":
/// "11:00", "timezone": "Europe/Amsterdam"}, "*": {...}}`): the site's entry, then `"*"`, then
/// the fallbacks 15:00 / 11:00 / `UTC`, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDefaults {
    /// Check-in time of the site.
    pub check_in_time: NaiveTime,
    /// Check-out time of the site.
    pub check_out_time: NaiveTime,
    /// IANA timezone of the site.
    pub timezone: String,
}

impl SiteDefaults {
    /// Fallback check-in time when nothing is configured.
    pub const CHECK_IN: (u32, u32) = (15, 0);
    /// Fallback check-out time when nothing is configured.
    pub const CHECK_OUT: (u32, u32) = (11, 0);
    /// Fallback timezone when nothing is configured.
    pub const TIMEZONE: &'static str = "UTC";

    /// Resolves the defaults of `site` from a `site_defaults` document.
    pub fn for_site(doc: &serde_json::Value, site: &str) -> SiteDefaults {
        let pick = |field: &str| -> Option<&str> {
            doc.get(site)
                .and_then(|s| s.get(field))
                .and_then(|v| v.as_str())
                .or_else(|| {
                    doc.get("*")
                        .and_then(|s| s.get(field))
                        .and_then(|v| v.as_str())
                })
        };
        let time = |field: &str, (h, m): (u32, u32)| {
            pick(field)
                .and_then(|t| t.parse::<NaiveTime>().ok())
                .or_else(|| NaiveTime::from_hms_opt(h, m, 0))
                .unwrap_or_default()
        };
        SiteDefaults {
            check_in_time: time("check_in_time", Self::CHECK_IN),
            check_out_time: time("check_out_time", Self::CHECK_OUT),
            timezone: pick("timezone")
                .filter(|tz| tz.parse::<chrono_tz::Tz>().is_ok())
                .unwrap_or(Self::TIMEZONE)
                .to_owned(),
        }
    }

    /// The site's timezone (UTC when unparsable, which `for_site` already rules out).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// An id that upstreams send as a string or a number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Id {
    /// `"123"`.
    Str(String),
    /// `123`.
    Int(i64),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Str(s) => f.write_str(s),
            Id::Int(i) => write!(f, "{i}"),
        }
    }
}

/// "Surname, First, Middle" from parts, skipping empty ones.
pub fn guest_name(last: &str, first: Option<&str>, middle: Option<&str>) -> String {
    [Some(last), first, middle]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses an RFC 3339 instant, or a zone-less local time (`2025-06-20T09:15:00`) in `tz`.
pub fn instant(field: &str, raw: &str, tz: &str) -> Result<DateTime<Utc>, MapError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M"))
        .map_err(|_| MapError::field(field, "expected a date-time like 2025-06-20T09:15:00Z"))?;
    let tz = tz.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
    Ok(accesshub_domain::local_to_utc(tz, local))
}

/// Deserializes a JSON value, naming the first problem by its path under `prefix`
/// (`record.data.attributes.start_date`); a missing field is named by its own path.
pub fn from_value_at<T: DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
) -> Result<T, MapError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let join = |p: &str| match (prefix.is_empty(), p.is_empty() || p == ".") {
            (true, true) => "$".to_owned(),
            (true, false) => p.to_owned(),
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{p}"),
        };
        let msg = inner.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        };
        if let Some(rest) = msg.strip_prefix("missing field `")
            && let Some(name) = rest.strip_suffix('`')
        {
            let base = join(&path);
            let field = if base == "$" {
                name.to_owned()
            } else {
                format!("{base}.{name}")
            };
            return MapError::field(field, "is required");
        }
        MapError::field(join(&path), msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_defaults_fallbacks() {
        let doc = serde_json::json!({"12": {"check_in_time": "16:00"}, "*": {"timezone": "Europe/Amsterdam"}});
        let d = SiteDefaults::for_site(&doc, "12");
        assert_eq!(d.check_in_time, NaiveTime::from_hms_opt(16, 0, 0).unwrap());
        assert_eq!(d.check_out_time, NaiveTime::from_hms_opt(11, 0, 0).unwrap());
        assert_eq!(d.timezone, "Europe/Amsterdam");
        assert_eq!(
            SiteDefaults::for_site(&serde_json::json!({}), "x").timezone,
            "UTC"
        );
    }

    #[test]
    fn paths_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        let e = from_value_at::<Inner>("record.data", serde_json::json!({})).unwrap_err();
        assert_eq!(e, MapError::field("record.data.n", "is required"));
        let e = from_value_at::<Inner>("record", serde_json::json!({"n": "x"})).unwrap_err();
        assert!(
            matches!(e, MapError::Field { ref field, .. } if field == "record.n"),
            "{e:?}"
        );
        assert_eq!(guest_name("Doe", Some("John"), Some("")), "Doe, John");
    }
}
