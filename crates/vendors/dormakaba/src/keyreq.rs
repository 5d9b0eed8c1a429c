//! Key-request outcomes: recorded as the key request's own binding (kind `keyreq`, booking
//! key = request id; queryable, so a front desk can poll "key ready" or "encoder busy,
//! retrying") and published as [`KeyResult`] on `results.keyreq.<tenant>.<request_id>` for
//! whoever listens live. Both go through the runtime (`ApplyContext::record_progress`,
//! `ApplyContext::publish`): the adapter has no database or NATS connection of its own.

use accesshub_domain::{KeyResult, KeyResultStatus, subjects};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use worker_runtime::{Binding, Status};

/// What a key request's binding records besides its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequestRecord {
    /// The request.
    pub request_id: Uuid,
    /// The reservation whose lock-system booking the keys are for.
    pub reservation_key: String,
    /// The outcome in the desk's words ("key ready: 1 card(s) encoded on encoder 2").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Status of a key request as recorded (the published statuses plus `in_flight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    /// A vendor call is under way (or the worker died during one: outcome unknown).
    InFlight,
    /// Published status.
    Result(KeyResultStatus),
}

impl StoredStatus {
    /// From a binding status (a dead-lettered request has failed).
    pub fn from_status(s: Status) -> Option<Self> {
        Some(match s {
            Status::InFlight => StoredStatus::InFlight,
            Status::Pending => StoredStatus::Result(KeyResultStatus::Pending),
            Status::Encoded => StoredStatus::Result(KeyResultStatus::Encoded),
            Status::Sent => StoredStatus::Result(KeyResultStatus::Sent),
            Status::Failed | Status::DeadLettered => StoredStatus::Result(KeyResultStatus::Failed),
            _ => return None,
        })
    }

    /// Whether the request is finished (encoded, sent or failed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StoredStatus::Result(
                KeyResultStatus::Encoded | KeyResultStatus::Sent | KeyResultStatus::Failed
            )
        )
    }
}

/// The binding status of a published result status.
pub fn result_status(s: KeyResultStatus) -> Status {
    match s {
        KeyResultStatus::Pending => Status::Pending,
        KeyResultStatus::Encoded => Status::Encoded,
        KeyResultStatus::Sent => Status::Sent,
        KeyResultStatus::Failed => Status::Failed,
    }
}

/// One key request's recorded outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequestStatus {
    /// The request.
    pub request_id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Reservation booking key (empty when the request failed before it was recorded).
    pub reservation_key: String,
    /// Current status.
    pub status: StoredStatus,
    /// Detail ("encoder busy, retrying", the fault, the dead-letter reason).
    pub message: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The key request's outcome as its binding records it (`None`: not a key request's
/// binding, or a status this build does not know).
pub fn key_request_status(b: &Binding) -> Option<KeyRequestStatus> {
    let status = StoredStatus::from_status(Status::parse(&b.status)?)?;
    let rec = serde_json::from_value::<KeyRequestRecord>(b.vendor_ids.clone()).ok();
    let request_id = match &rec {
        Some(r) => r.request_id,
        None => b.booking_key.parse().ok()?,
    };
    // A dead-lettered request's reason is the runtime's last error.
    let message = match status {
        StoredStatus::Result(KeyResultStatus::Failed) => b
            .last_error
            .clone()
            .or_else(|| rec.as_ref().and_then(|r| r.message.clone())),
        _ => rec.as_ref().and_then(|r| r.message.clone()),
    };
    Some(KeyRequestStatus {
        request_id,
        tenant: b.tenant_id.clone(),
        reservation_key: rec.map(|r| r.reservation_key).unwrap_or_default(),
        status,
        message,
        updated_at: b.updated_at,
    })
}

/// A [`KeyResult`] as published: the un-namespaced subject `results.keyreq.<tenant>.<id>`,
/// the body, and for final outcomes a `Nats-Msg-Id` so a retried publish is de-duplicated.
pub fn result_message(result: &KeyResult) -> Result<(String, Vec<u8>, Option<String>), String> {
    let subject = subjects::key_result(&result.tenant, &result.request_id.to_string());
    let body = serde_json::to_vec(result).map_err(|e| e.to_string())?;
    let msg_id = (result.status != KeyResultStatus::Pending).then(|| {
        format!(
            "keyreq:{}:{}",
            result.request_id,
            result_status(result.status).as_str()
        )
    });
    Ok((subject, body, msg_id))
}
