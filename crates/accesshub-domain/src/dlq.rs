//! The dead-letter envelope: a full copy of a failed message plus why it failed.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::class::ErrorClass;

/// How [`DeadLetter::payload`] is encoded: text when the original was UTF-8 (readable in
/// `accessctl dlq show`), base64 otherwise so nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// Payload is the original bytes as UTF-8 text.
    Utf8,
    /// Payload is the original bytes, base64 (standard alphabet).
    Base64,
}

/// One dead letter, published on `dlq.<worker>.<original subject>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// Id of this entry (UUIDv7).
    pub id: Uuid,
    /// Worker (consumer) that gave up, e.g. `tapkey-worker`.
    pub worker: String,
    /// Subject the original message was published on.
    pub original_subject: String,
    /// Original headers (multi-valued headers keep every value).
    pub original_headers: BTreeMap<String, Vec<String>>,
    /// Original payload.
    pub payload: String,
    /// Encoding of `payload`.
    pub payload_encoding: PayloadEncoding,
    /// Human-readable reason (the error message).
    pub reason: String,
    /// Transient (retries exhausted) or permanent.
    pub class: ErrorClass,
    /// Delivery attempts made.
    pub attempts: u64,
    /// Sequence of the original in its stream, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_sequence: Option<u64>,
    /// Stream the original came from.
    pub stream: String,
    /// Trace id of the failed processing, for the trace UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Event id, when the payload parsed as an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Tenant, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Event kind, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Booking key, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_key: Option<String>,
    /// How many times this event had been replayed before this failure.
    #[serde(default)]
    pub replay_count: u32,
    /// When the worker gave up.
    pub failed_at: DateTime<Utc>,
}

impl DeadLetter {
    /// Encodes original bytes losslessly.
    pub fn encode_payload(bytes: &[u8]) -> (String, PayloadEncoding) {
        match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), PayloadEncoding::Utf8),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(bytes),
                PayloadEncoding::Base64,
            ),
        }
    }

    /// The original bytes, for replay.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match self.payload_encoding {
            PayloadEncoding::Utf8 => Ok(self.payload.clone().into_bytes()),
            PayloadEncoding::Base64 => {
                base64::engine::general_purpose::STANDARD.decode(&self.payload)
            }
        }
    }
}
