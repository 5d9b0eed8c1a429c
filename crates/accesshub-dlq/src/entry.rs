//! One DLQ entry as an operator sees it, whatever put it there: a worker's [`DeadLetter`], a
//! server MAX_DELIVERIES advisory resolved to the original message, or a message nobody can
//! parse (shown rather than hidden, so a purge can still remove it).

use std::collections::BTreeMap;

use accesshub_domain::{
    DeadLetter, ErrorClass, PayloadEncoding, headers,
    subjects::{self, Namespace},
};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Reason shown for entries that came from a server advisory (the worker never saw the last
/// delivery fail, e.g. it crashed or timed out).
pub const ADVISORY_REASON: &str = "max deliveries reached (server advisory)";

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntrySource {
    /// A full copy published by a worker.
    DeadLetter,
    /// A server MAX_DELIVERIES advisory.
    Advisory,
    /// A message on the DLQ stream that is neither (kept visible so it can be purged).
    Unparseable,
}

impl EntrySource {
    /// Short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            EntrySource::DeadLetter => "dead_letter",
            EntrySource::Advisory => "advisory",
            EntrySource::Unparseable => "unparseable",
        }
    }
}

/// One DLQ entry. `seq` (its DLQ stream sequence) is the id operators type: it is stable for
/// the entry's lifetime and short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqEntry {
    /// DLQ stream sequence: the entry's stable id.
    pub seq: u64,
    /// What produced the entry.
    pub source: EntrySource,
    /// The DeadLetter's id (UUIDv7) or the advisory's id.
    pub id: Option<String>,
    /// Worker (consumer) that gave up.
    pub worker: String,
    /// Subject of the original message (None when unknown).
    pub original_subject: Option<String>,
    /// Stream the original came from.
    pub stream: String,
    /// Sequence of the original in `stream`.
    pub stream_sequence: Option<u64>,
    /// Tenant, when known.
    pub tenant: Option<String>,
    /// Event kind, when known.
    pub kind: Option<String>,
    /// Booking key, when known.
    pub booking_key: Option<String>,
    /// Transient or permanent.
    #[schema(value_type = String, example = "permanent")]
    pub class: ErrorClass,
    /// Why it failed.
    pub reason: String,
    /// Delivery attempts made.
    pub attempts: u64,
    /// Trace id of the failed processing.
    pub trace_id: Option<String>,
    /// Event id (kept across replays).
    pub event_id: Option<String>,
    /// Replays of this event before this failure.
    pub replay_count: u32,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
    /// Original headers.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Original payload (None when the original is no longer available).
    pub payload: Option<String>,
    /// Encoding of `payload` (`utf8` or `base64`).
    #[schema(value_type = Option<String>)]
    pub payload_encoding: Option<PayloadEncoding>,
    /// Recorded (non-dry-run) replays of this very entry, from `dlq_replays`.
    pub replays: u32,
    /// When this entry was last replayed.
    pub last_replayed_at: Option<DateTime<Utc>>,
}

impl DlqEntry {
    /// Masks personal data for display: names, e-mails, phones and plates in the payload
    /// (`accesshub_domain::pii::mask_json`), e-mail addresses in the reason. A base64 payload
    /// cannot be masked and is withheld. Listings show this unless PII was asked for
    /// (`accessctl dlq --show-pii`, audited): most who read the DLQ need the failure, not
    /// the guest (security review L7).
    pub fn mask_pii(&mut self) {
        use accesshub_domain::pii;
        self.reason = pii::mask_emails_in(&self.reason);
        self.payload = match (self.payload.take(), self.payload_encoding) {
            (Some(p), Some(PayloadEncoding::Utf8)) => Some(pii::mask_json_text(&p)),
            (Some(_), _) => Some("[withheld: binary payload, use --show-pii]".to_owned()),
            (None, _) => None,
        };
    }

    /// The original bytes, for replay.
    pub fn payload_bytes(&self) -> Option<Result<Vec<u8>, String>> {
        let p = self.payload.as_ref()?;
        Some(match self.payload_encoding {
            Some(PayloadEncoding::Base64) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .map_err(|e| e.to_string())
            }
            _ => Ok(p.clone().into_bytes()),
        })
    }

    fn fill_from_subject(&mut self, ns: &Namespace) {
        let Some(subject) = &self.original_subject else {
            return;
        };
        let stripped = ns.strip(subject);
        let parts: Vec<&str> = stripped.splitn(4, '.').collect();
        if let ["bookings", kind, tenant, key] = parts.as_slice() {
            if self.kind.is_none() {
                self.kind = Some((*kind).to_owned());
            }
            if self.tenant.is_none() {
                self.tenant = Some(subjects::untoken(tenant));
            }
            if self.booking_key.is_none() {
                self.booking_key = Some(subjects::untoken(key));
            }
        }
    }

    fn fill_from_headers(&mut self) {
        let first = |name: &str| {
            self.headers
                .get(name)
                .and_then(|v| v.first())
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let event_id = first(headers::EVENT_ID).or_else(|| first(headers::MSG_ID));
        let tenant = first(headers::TENANT);
        let kind = first(headers::KIND);
        let trace = first(headers::TRACEPARENT).and_then(|tp| trace_id_of(&tp));
        let replay_count = first(headers::REPLAY_COUNT).and_then(|c| c.trim().parse().ok());
        if self.event_id.is_none() {
            self.event_id = event_id;
        }
        if self.tenant.is_none() {
            self.tenant = tenant;
        }
        if self.kind.is_none() {
            self.kind = kind;
        }
        if self.trace_id.is_none() {
            self.trace_id = trace;
        }
        if self.replay_count == 0
            && let Some(c) = replay_count
        {
            self.replay_count = c;
        }
    }
}

/// Trace id out of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The JSON the server publishes on `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`.
#[derive(Debug, Clone, Deserialize)]
pub struct MaxDeliveriesAdvisory {
    /// Advisory id.
    #[serde(default)]
    pub id: String,
    /// When the server gave up.
    pub timestamp: DateTime<Utc>,
    /// Stream of the original.
    pub stream: String,
    /// Consumer that hit max_deliver.
    pub consumer: String,
    /// Sequence of the original in `stream`.
    pub stream_seq: u64,
    /// Deliveries made.
    #[serde(default)]
    pub deliveries: u64,
}

pub use accesshub_bus::header_map;

/// Turns a message read from the DLQ stream into an entry. Advisories come back without the
/// original (see [`crate::Dlq`] for the resolution against BOOKINGS).
pub(crate) fn parse(
    ns: &Namespace,
    seq: u64,
    subject: &str,
    payload: &[u8],
    stored_at: Option<DateTime<Utc>>,
) -> (DlqEntry, Option<MaxDeliveriesAdvisory>) {
    if let Some(rest) = subject.strip_prefix(subjects::MAX_DELIVERIES_ADVISORY) {
        if let Ok(adv) = serde_json::from_slice::<MaxDeliveriesAdvisory>(payload) {
            let entry = DlqEntry {
                seq,
                source: EntrySource::Advisory,
                id: Some(adv.id.clone()).filter(|s| !s.is_empty()),
                worker: worker_of_consumer(ns, &adv.consumer),
                original_subject: None,
                stream: adv.stream.clone(),
                stream_sequence: Some(adv.stream_seq),
                tenant: None,
                kind: None,
                booking_key: None,
                class: ErrorClass::Transient,
                reason: ADVISORY_REASON.to_owned(),
                attempts: adv.deliveries,
                trace_id: None,
                event_id: None,
                replay_count: 0,
                failed_at: adv.timestamp,
                headers: BTreeMap::new(),
                payload: None,
                payload_encoding: None,
                replays: 0,
                last_replayed_at: None,
            };
            return (entry, Some(adv));
        }
        return (unparseable(seq, subject, rest, payload, stored_at), None);
    }
    match serde_json::from_slice::<DeadLetter>(payload) {
        Ok(dl) => {
            let mut entry = DlqEntry {
                seq,
                source: EntrySource::DeadLetter,
                id: Some(dl.id.to_string()),
                worker: dl.worker,
                original_subject: Some(dl.original_subject),
                stream: dl.stream,
                stream_sequence: dl.stream_sequence,
                tenant: dl.tenant,
                kind: dl.kind,
                booking_key: dl.booking_key,
                class: dl.class,
                reason: dl.reason,
                attempts: dl.attempts,
                trace_id: dl.trace_id,
                event_id: dl.event_id.map(|u| u.to_string()),
                replay_count: dl.replay_count,
                failed_at: dl.failed_at,
                headers: dl.original_headers,
                payload: Some(dl.payload),
                payload_encoding: Some(dl.payload_encoding),
                replays: 0,
                last_replayed_at: None,
            };
            entry.fill_from_headers();
            entry.fill_from_subject(ns);
            (entry, None)
        }
        Err(e) => {
            let mut entry = unparseable(seq, subject, "", payload, stored_at);
            entry.reason = format!("unparseable DLQ message: {e}");
            entry.worker = ns
                .strip(subject)
                .strip_prefix("dlq.")
                .and_then(|r| r.split('.').next())
                .map(subjects::untoken)
                .unwrap_or_default();
            (entry, None)
        }
    }
}

/// Fills an advisory entry with the original message found in BOOKINGS.
pub(crate) fn resolve(
    entry: &mut DlqEntry,
    ns: &Namespace,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) {
    entry.original_subject = Some(subject.to_owned());
    entry.headers = header_map(headers);
    let (p, enc) = DeadLetter::encode_payload(payload);
    entry.payload = Some(p);
    entry.payload_encoding = Some(enc);
    entry.fill_from_headers();
    entry.fill_from_subject(ns);
}

fn unparseable(
    seq: u64,
    subject: &str,
    _rest: &str,
    payload: &[u8],
    stored_at: Option<DateTime<Utc>>,
) -> DlqEntry {
    let (p, enc) = DeadLetter::encode_payload(payload);
    DlqEntry {
        seq,
        source: EntrySource::Unparseable,
        id: None,
        worker: String::new(),
        original_subject: None,
        stream: String::new(),
        stream_sequence: None,
        tenant: None,
        kind: None,
        booking_key: None,
        class: ErrorClass::Permanent,
        reason: format!("unparseable message on {subject}"),
        attempts: 0,
        trace_id: None,
        event_id: None,
        replay_count: 0,
        failed_at: stored_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        headers: BTreeMap::new(),
        payload: Some(p),
        payload_encoding: Some(enc),
        replays: 0,
        last_replayed_at: None,
    }
}

/// Consumer names are namespaced like stream names (`<PREFIX>_tapkey-worker`); operators
/// filter by the worker's own name.
fn worker_of_consumer(ns: &Namespace, consumer: &str) -> String {
    let prefix = ns.stream("");
    if prefix.is_empty() {
        return consumer.to_owned();
    }
    consumer
        .strip_prefix(&prefix)
        .unwrap_or(consumer)
        .to_owned()
}

/// Which entries an operation applies to. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Tenant id.
    pub tenant: Option<String>,
    /// Worker name (`tapkey-worker`) or vendor (`tapkey`).
    pub worker: Option<String>,
    /// Event kind.
    pub kind: Option<String>,
    /// Booking key.
    pub booking: Option<String>,
    /// Transient or permanent.
    pub class: Option<ErrorClass>,
    /// Failed at or after.
    pub since: Option<DateTime<Utc>>,
    /// Failed before.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive text in the reason.
    pub reason_contains: Option<String>,
}

impl Filter {
    /// True when no field is set (the filter matches everything).
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `e` passes every set field.
    pub fn matches(&self, e: &DlqEntry) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref() == Some(w.as_str()),
        };
        if !eq(&self.tenant, &e.tenant)
            || !eq(&self.kind, &e.kind)
            || !eq(&self.booking, &e.booking_key)
        {
            return false;
        }
        if let Some(w) = &self.worker
            && e.worker != *w
            && e.worker != format!("{w}-worker")
        {
            return false;
        }
        if let Some(c) = self.class
            && e.class != c
        {
            return false;
        }
        if let Some(s) = self.since
            && e.failed_at < s
        {
            return false;
        }
        if let Some(u) = self.until
            && e.failed_at >= u
        {
            return false;
        }
        if let Some(t) = &self.reason_contains
            && !e.reason.to_lowercase().contains(&t.to_lowercase())
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_parses_traceparent() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn advisory_parses_and_strips_namespace() {
        let ns = Namespace::new("t1");
        let body = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"abc","timestamp":"2026-01-02T03:04:05.123Z","stream":"T1_BOOKINGS","consumer":"T1_tapkey-worker","stream_seq":7,"deliveries":2}"#;
        let (e, adv) = parse(
            &ns,
            3,
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.T1_BOOKINGS.T1_tapkey-worker",
            body,
            None,
        );
        assert!(adv.is_some());
        assert_eq!(e.worker, "tapkey-worker");
        assert_eq!(e.stream_sequence, Some(7));
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.reason, ADVISORY_REASON);
    }

    #[test]
    fn garbage_is_kept_visible() {
        let ns = Namespace::new("");
        let (e, _) = parse(&ns, 1, "dlq.x.bookings.pass.a.b", b"not json", None);
        assert_eq!(e.source, EntrySource::Unparseable);
        assert_eq!(e.worker, "x");
    }

    #[test]
    fn worker_filter_accepts_vendor_name() {
        let ns = Namespace::new("");
        let body = br#"{"id":"abc","timestamp":"2026-01-02T03:04:05Z","stream":"BOOKINGS","consumer":"tapkey-worker","stream_seq":7}"#;
        let (e, _) = parse(
            &ns,
            1,
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.BOOKINGS.tapkey-worker",
            body,
            None,
        );
        let f = Filter {
            worker: Some("tapkey".into()),
            ..Default::default()
        };
        assert!(f.matches(&e));
        let f = Filter {
            worker: Some("cloudpass".into()),
            ..Default::default()
        };
        assert!(!f.matches(&e));
    }
}
