//! One module per upstream system, each mapping its wire format to [`accesshub_domain::Event`].
//! Attribute names that the vendors' documentation does not fix are ours; each module's doc
//! comment lists them (and docs/upstreams.md collects them).

pub mod bex;
pub mod clock;
pub mod connecx;
pub mod native;
pub mod nexudus;
pub mod nexudus_hooks;

use accesshub_domain::{Event, Source, Validate};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::error::Reject;

pub use accesshub_upstreams::{Context, Id, Ignored, MapError, Mapped, guest_name};

/// Longest tenant, site or booking key we accept (they are index keys and subject tokens).
pub const MAX_KEY_LEN: usize = 200;

/// A validated event with its JSON, serialized once: the NUL check reads it and the committer
/// stores it (outbox payload and booking state). Debug leaves out the JSON (personal data).
pub struct Normalized {
    /// The event.
    pub event: Event,
    /// `event` as JSON.
    pub json: String,
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalized")
            .field("event", &self.event)
            .field("json_bytes", &self.json.len())
            .finish()
    }
}

/// The sources that come in through ingest: every one but the reconciler, which publishes
/// its own events.
pub fn inbound_sources() -> impl Iterator<Item = Source> {
    Source::ALL.into_iter().filter(|s| *s != Source::Reconciler)
}

/// The upstream a webhook path or ingest subject names; `None` for an unknown name and for
/// the reconciler.
pub fn inbound_source(name: &str) -> Option<Source> {
    inbound_sources().find(|s| s.as_str() == name)
}

/// What a delivery comes to: an event to store, or nothing on purpose.
#[derive(Debug)]
pub enum Outcome {
    /// A validated event.
    Event(Box<Normalized>),
    /// Deliberately ignored (an action accesshub does not act on): answered 2xx
    /// `{"status": "ignored", "reason"}` and counted, never a 4xx that makes a sender retry
    /// or disable its webhook.
    Ignored(Ignored),
}

impl Outcome {
    /// The event, or `None` when ignored.
    pub fn event(self) -> Option<Normalized> {
        match self {
            Outcome::Event(n) => Some(*n),
            Outcome::Ignored(_) => None,
        }
    }
}

/// Maps a body of `source` to a validated event (or an ignored outcome): 400 for a shape
/// problem naming the field, 422 for a semantic one. For a tenant source tied to no
/// organization (see [`normalize_for`]).
pub fn normalize(source: Source, body: &[u8], cx: Context<'_>) -> Result<Outcome, Reject> {
    normalize_for(source, body, cx, None)
}

/// [`normalize`] for a tenant source tied to its upstream `organization`
/// (`tenant_sources.organization_id`): a BEX webhook naming another organization is ignored
/// (`foreign_organization`), never applied.
pub fn normalize_for(
    source: Source,
    body: &[u8],
    cx: Context<'_>,
    organization: Option<&str>,
) -> Result<Outcome, Reject> {
    let event = match source {
        Source::Bex => match bex::map(parse(body)?, cx, organization)? {
            Mapped::Event(e) => *e,
            Mapped::Ignored(i) => return Ok(Outcome::Ignored(i)),
        },
        Source::Clock => clock::map(parse(body)?, cx)?,
        Source::Nexudus => nexudus::map(parse(body)?, cx)?,
        Source::Connecx => connecx::map(parse(body)?, cx)?,
        Source::Native => native::map(parse(body)?, cx)?,
        Source::Reconciler => return Err(Reject::NotFound),
    };
    check(event).map(|n| Outcome::Event(Box::new(n)))
}

/// Semantic checks shared by every source (and the reconciler's pulls): the domain's [`Validate`] plus what storage needs
/// (bounded keys, no NUL characters, which PostgreSQL text and jsonb refuse).
pub fn check(event: Event) -> Result<Normalized, Reject> {
    let mut problems = event.problems();
    for (field, v) in [
        ("tenant", &event.tenant),
        ("site", &event.site),
        ("booking_key", &event.booking_key),
    ] {
        if v.len() > MAX_KEY_LEN {
            problems.push(accesshub_domain::FieldError::new(
                field,
                format!("longer than {MAX_KEY_LEN} bytes"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Reject::Unprocessable(problems));
    }
    let json = serde_json::to_string(&event).map_err(|_| Reject::Unavailable)?;
    if json.contains("\\u0000") {
        return Err(Reject::Unprocessable(vec![
            accesshub_domain::FieldError::new("$", "text must not contain NUL characters"),
        ]));
    }
    Ok(Normalized { event, json })
}

/// Deserializes with the JSON path of the first problem (`record.attributes.arrival_date`,
/// `rooms[0]`); a missing field is named by its own path.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let base = if path == "." || path.is_empty() {
            String::new()
        } else {
            path
        };
        if inner.is_syntax() || inner.is_eof() {
            return Reject::field(
                if base.is_empty() { "$".into() } else { base },
                format!("invalid JSON: {inner}"),
            );
        }
        let msg = strip_position(&inner.to_string());
        if let Some(rest) = msg.strip_prefix("missing field `")
            && let Some(name) = rest.strip_suffix('`')
        {
            let field = if base.is_empty() {
                name.to_owned()
            } else {
                format!("{base}.{name}")
            };
            return Reject::field(field, "is required");
        }
        Reject::field(if base.is_empty() { "$".into() } else { base }, msg)
    })?;
    de.end()
        .map_err(|e| Reject::field("$", format!("invalid JSON: {e}")))?;
    Ok(value)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Parses an RFC 3339 instant, or a zone-less local time (`2025-06-20T09:15:00`) in `tz`.
pub fn instant(field: &str, raw: &str, tz: &str) -> Result<DateTime<Utc>, Reject> {
    Ok(accesshub_upstreams::instant(field, raw, tz)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
        list: Vec<String>,
    }

    #[test]
    fn inbound_sources_are_the_upstreams_only() {
        for s in Source::ALL {
            let expected = (s != Source::Reconciler).then_some(s);
            assert_eq!(inbound_source(s.as_str()), expected, "{s:?}");
        }
        assert_eq!(inbound_source("nope"), None);
        assert_eq!(inbound_source(""), None);
    }

    #[test]
    fn paths_name_the_field() {
        let e = parse::<Outer>(br#"{"inner":{"n":1}}"#).unwrap_err();
        assert_eq!(e, Reject::field("inner.list", "is required"));
        let e = parse::<Outer>(br#"{"inner":{"n":"x","list":[]}}"#).unwrap_err();
        assert!(
            matches!(e, Reject::BadRequest { ref field, .. } if field == "inner.n"),
            "{e:?}"
        );
        let e = parse::<Outer>(br#"{"inner":{"n":1,"list":[1]}}"#).unwrap_err();
        assert!(
            matches!(e, Reject::BadRequest { ref field, .. } if field == "inner.list[0]"),
            "{e:?}"
        );
        let e = parse::<Outer>(br#"{"inner":"#).unwrap_err();
        assert!(matches!(e, Reject::BadRequest { .. }));
        assert_eq!(guest_name("Doe", Some("John"), Some("")), "Doe, John");
    }
}
