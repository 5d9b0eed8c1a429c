//! Key-request outcomes: stored in `key_requests` (queryable by id, so a front desk can poll
//! "key ready" or "encoder busy, retrying") and published as [`KeyResult`] on
//! `results.keyreq.<tenant>.<request_id>` for whoever listens live.

use accesshub_domain::{Classify, ErrorClass, KeyAction, KeyResult, KeyResultStatus, subjects};
use async_nats::jetstream::{self, message::PublishMessage};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Status of a key request as stored (the published statuses plus `in_flight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    /// A vendor call is under way (or the worker died during one: outcome unknown).
    InFlight,
    /// Published status.
    Result(KeyResultStatus),
}

impl StoredStatus {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredStatus::InFlight => "in_flight",
            StoredStatus::Result(s) => status_str(s),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_flight" => StoredStatus::InFlight,
            "pending" => StoredStatus::Result(KeyResultStatus::Pending),
            "encoded" => StoredStatus::Result(KeyResultStatus::Encoded),
            "sent" => StoredStatus::Result(KeyResultStatus::Sent),
            "failed" => StoredStatus::Result(KeyResultStatus::Failed),
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

fn status_str(s: KeyResultStatus) -> &'static str {
    match s {
        KeyResultStatus::Pending => "pending",
        KeyResultStatus::Encoded => "encoded",
        KeyResultStatus::Sent => "sent",
        KeyResultStatus::Failed => "failed",
    }
}

fn action_str(a: KeyAction) -> &'static str {
    match a {
        KeyAction::NewKey => "new_key",
        KeyAction::DuplicateKey => "duplicate_key",
        KeyAction::MobileKey => "mobile_key",
    }
}

/// One key request's stored outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequestStatus {
    /// The request.
    pub request_id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Reservation booking key.
    pub reservation_key: String,
    /// `new_key`, `duplicate_key` or `mobile_key`.
    pub action: String,
    /// Current status.
    pub status: StoredStatus,
    /// Detail ("encoder busy, retrying", the fault name).
    pub message: Option<String>,
    /// Vendor attempts so far.
    pub attempts: i32,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Storing or publishing an outcome failed (both transient: the database or NATS is away).
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// Postgres.
    #[error("key_requests: {0}")]
    Db(#[from] sqlx::Error),
    /// NATS.
    #[error("publishing key result: {0}")]
    Publish(String),
    /// A stored status we do not know (a newer worker wrote it).
    #[error("key_requests: unknown status {0:?}")]
    UnknownStatus(String),
}

impl Classify for OutcomeError {
    fn class(&self) -> ErrorClass {
        match self {
            OutcomeError::Db(e) => accesshub_store::db_error_class(e),
            OutcomeError::Publish(_) => ErrorClass::Transient,
            OutcomeError::UnknownStatus(_) => ErrorClass::Permanent,
        }
    }
}

type Row = (
    Uuid,
    String,
    String,
    String,
    String,
    Option<String>,
    i32,
    DateTime<Utc>,
);

/// The stored outcome of a key request, if the worker has seen it.
pub async fn key_request_status(
    pool: &PgPool,
    request_id: Uuid,
) -> Result<Option<KeyRequestStatus>, OutcomeError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT request_id, tenant, reservation_key, action, status, message, attempts, updated_at \
         FROM key_requests WHERE request_id = $1",
    )
    .bind(request_id)
    .fetch_optional(pool)
    .await?;
    let Some((request_id, tenant, reservation_key, action, status, message, attempts, updated_at)) =
        row
    else {
        return Ok(None);
    };
    let status = StoredStatus::parse(&status).ok_or(OutcomeError::UnknownStatus(status))?;
    Ok(Some(KeyRequestStatus {
        request_id,
        tenant,
        reservation_key,
        action,
        status,
        message,
        attempts,
        updated_at,
    }))
}

/// Marks a vendor call as under way (committed before the call, so a crash leaves a trace).
pub async fn mark_in_flight(
    pool: &PgPool,
    tenant: &str,
    req: &accesshub_domain::KeyRequest,
) -> Result<(), OutcomeError> {
    sqlx::query(
        "INSERT INTO key_requests (request_id, tenant, reservation_key, action, status, attempts) \
         VALUES ($1, $2, $3, $4, 'in_flight', 1) \
         ON CONFLICT (request_id) DO UPDATE SET status = 'in_flight', \
           attempts = key_requests.attempts + 1, updated_at = now()",
    )
    .bind(req.request_id)
    .bind(tenant)
    .bind(&req.reservation_key)
    .bind(action_str(req.action))
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores an outcome (creating the row if the request failed before any vendor call).
pub async fn store_outcome(
    pool: &PgPool,
    tenant: &str,
    req: &accesshub_domain::KeyRequest,
    status: KeyResultStatus,
    message: Option<&str>,
) -> Result<(), OutcomeError> {
    sqlx::query(
        "INSERT INTO key_requests (request_id, tenant, reservation_key, action, status, message) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (request_id) DO UPDATE SET status = EXCLUDED.status, \
           message = EXCLUDED.message, updated_at = now()",
    )
    .bind(req.request_id)
    .bind(tenant)
    .bind(&req.reservation_key)
    .bind(action_str(req.action))
    .bind(status_str(status))
    .bind(message)
    .execute(pool)
    .await?;
    Ok(())
}

/// Publishes a [`KeyResult`] on the namespaced `results.keyreq.<tenant>.<id>` and waits for
/// the PubAck. Final outcomes carry a `Nats-Msg-Id` so a retried publish is deduplicated.
pub async fn publish_result(
    js: &jetstream::Context,
    ns: &accesshub_domain::subjects::Namespace,
    result: &KeyResult,
) -> Result<(), OutcomeError> {
    let subject = ns.subject(&subjects::key_result(
        &result.tenant,
        &result.request_id.to_string(),
    ));
    let body = serde_json::to_vec(result).map_err(|e| OutcomeError::Publish(e.to_string()))?;
    let mut msg = PublishMessage::build().payload(body.into());
    if result.status != KeyResultStatus::Pending {
        msg = msg.message_id(format!(
            "keyreq:{}:{}",
            result.request_id,
            status_str(result.status)
        ));
    }
    js.send_publish(subject, msg)
        .await
        .map_err(|e| OutcomeError::Publish(e.to_string()))?
        .await
        .map_err(|e| OutcomeError::Publish(e.to_string()))?;
    Ok(())
}
