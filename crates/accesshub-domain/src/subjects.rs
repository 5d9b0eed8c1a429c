//! NATS subject and stream names, defined once.
//!
//! `bookings.<kind>.<tenant>.<key>` lets each worker consume with a single filter
//! (`bookings.pass.>` for Tapkey), which Debian's nats-server 2.9 requires.

use crate::event::EventKind;

/// Stream holding every normalized booking event.
pub const BOOKINGS_STREAM: &str = "BOOKINGS";
/// Subjects of [`BOOKINGS_STREAM`].
pub const BOOKINGS_SUBJECTS: &str = "bookings.>";
/// Stream holding dead letters and the server's max-deliveries advisories.
pub const DLQ_STREAM: &str = "DLQ";
/// Subjects of [`DLQ_STREAM`] published by workers.
pub const DLQ_SUBJECTS: &str = "dlq.>";
/// Stream holding outcomes of key requests ("key ready", "encoder busy").
pub const RESULTS_STREAM: &str = "RESULTS";
/// Subjects of [`RESULTS_STREAM`].
pub const RESULTS_SUBJECTS: &str = "results.>";
/// Stream of repair commands from the reconciler to workers.
pub const SYNC_STREAM: &str = "SYNC";
/// Subjects of [`SYNC_STREAM`].
pub const SYNC_SUBJECTS: &str = "sync.>";
/// Server advisory published when a message hits `max_deliver` (prefix; `.<stream>.<consumer>` follows).
pub const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";

/// Escapes a free-form identifier into one subject token: NATS tokens may not contain
/// `.`, `*`, `>` or whitespace, and tenants or booking keys come from upstream systems.
pub fn token(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'=' | b'@' | b'+' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Reverses [`token`]; tokens not produced by it are returned as they are.
pub fn untoken(tok: &str) -> String {
    let bytes = tok.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = tok
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            if v != 0 {
                out.push(v);
            }
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Subject of one booking's events.
pub fn booking(kind: EventKind, tenant: &str, key: &str) -> String {
    format!(
        "bookings.{}.{}.{}",
        kind.as_str(),
        token(tenant),
        token(key)
    )
}

/// Filter for all events of one kind.
pub fn bookings_of_kind(kind: EventKind) -> String {
    format!("bookings.{}.>", kind.as_str())
}

/// Dead-letter subject for a message `worker` gave up on.
pub fn dlq(worker: &str, original_subject: &str) -> String {
    format!("dlq.{}.{}", token(worker), original_subject)
}

/// Filter for one worker's dead letters.
pub fn dlq_of_worker(worker: &str) -> String {
    format!("dlq.{}.>", token(worker))
}

/// Upstream systems publish raw payloads here and get a reply (accepted or why not).
pub fn ingest(source: &str, tenant: &str) -> String {
    format!("ingest.{}.{}", token(source), token(tenant))
}

/// Request/reply subject for a vendor lookup answered by the worker owning that vendor.
pub fn lookup(vendor: &str) -> String {
    format!("lookup.{}", token(vendor))
}

/// Repair commands for one vendor and tenant, consumed by the owning worker.
pub fn sync(vendor: &str, tenant: &str, key: &str) -> String {
    format!("sync.{}.{}.{}", token(vendor), token(tenant), token(key))
}

/// Outcome of a key request.
pub fn key_result(tenant: &str, request_id: &str) -> String {
    format!("results.keyreq.{}.{}", token(tenant), token(request_id))
}

/// Connection configuration changed; workers drop cached clients.
pub fn connection_changed(vendor: &str, tenant: &str) -> String {
    format!("config.connection.{}.{}", token(vendor), token(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_escapes_and_roundtrips() {
        for raw in ["abc", "a.b", "a b*c>", "ümlaut", "", "100%"] {
            let t = token(raw);
            assert!(!t.contains('.') && !t.contains('*') && !t.contains('>') && !t.contains(' '));
            assert_eq!(untoken(&t), raw);
        }
        assert_eq!(
            booking(EventKind::Reservation, "acme", "R.1"),
            "bookings.reservation.acme.R%2E1"
        );
    }
}

/// A prefix applied to every subject and stream name, so several deployments (or parallel
/// tests) can share one NATS server without their streams' subjects overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// `prefix` may be empty (production default). It must be one subject token.
    pub fn new(prefix: &str) -> Self {
        Namespace {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                token(prefix)
            },
        }
    }

    /// The raw prefix (empty for none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Applies the namespace to a subject or filter.
    pub fn subject(&self, subject: &str) -> String {
        if self.prefix.is_empty() {
            subject.to_owned()
        } else {
            format!("{}.{subject}", self.prefix)
        }
    }

    /// Removes the namespace from a subject received from NATS.
    pub fn strip<'a>(&self, subject: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            return subject;
        }
        subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(subject)
    }

    /// Applies the namespace to a stream or consumer name (names may not contain `.`).
    pub fn stream(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!(
                "{}_{name}",
                self.prefix.replace(['%', '.'], "_").to_uppercase()
            )
        }
    }
}
