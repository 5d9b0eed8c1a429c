//! Key requests from the front desk, as an API a PMS can wait on (issue 26).
//!
//! - `POST /webhooks/{source}/{tenant}/keyrequests`: a key request for a reservation (new key,
//!   duplicate, mobile key; the encoder the desk chose; how many cards), authenticated like
//!   the source's webhooks. Stored and published like any delivery (outbox, `bookings.keyreq.>`);
//!   answered `202 {"request_id", "status": "pending", "poll"}`. The request id is the
//!   event's id, so a repeated delivery (same body, same `Idempotency-Key`) gets the same id.
//! - `GET /webhooks/{source}/{tenant}/keyrequests/{request_id}?wait=SECONDS`: the outcome, waiting up
//!   to `wait` seconds (at most [`MAX_WAIT`]) for a final one — a bounded long-poll. The
//!   outcome is the dormakaba worker's record of the request: `encoded` / `sent` / `failed`
//!   with the desk's words ("key ready: 2 card(s) encoded on encoder 1", "encoder 7 does not
//!   exist in the lock system", "site offline: …"), or `pending` / `in_flight` meanwhile.
//!   Signed like the POST, over an empty body.
//!
//! Both are authenticated the sender's own way, as its webhooks are ([`crate::http`]): BEX's
//! `X-BE-Signature`, Clock's token where the operator chose it (`X-Accesshub-Token` or
//! `?token=`), or our `X-Accesshub-Signature`.
//!
//! Bodies: the native shape `{"reservation_key", "action": "new_key"|"duplicate_key"|
//! "mobile_key", "encoder", "key_count", "site"?, "requested_by"?}`, or for source `clock` the
//! Clock-shaped one `{"booking_id", "account_id"?, "key_type": "new"|"duplicate"|"mobile",
//! "encoder_id", "keys"?, "user"?}` (docs/upstreams.md). Without a site, the reservation's
//! stored site is used (422 when accesshub does not know the reservation).
//!
//! Both shapes also take `mobile_phone` (the number the desk entered while issuing the key:
//! the mobile key goes there rather than to the reservation's number; a number given means a
//! mobile key unless `mobile_key: false`), `mobile_key` (send a mobile key with the cards)
//! and `callback_url` (where the final outcome is POSTed, signed: [`keyreq_callback`]).

use std::sync::Arc;
use std::time::Duration;

use accesshub_domain::{Event, EventBody, KeyAction, KeyRequest, Source};
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AppState, error::Reject, keyreq_callback, upstream};

/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// How often a long-poll looks at the record.
const POLL: Duration = Duration::from_millis(50);
/// Most cards one request may ask for.
const MAX_KEYS: u32 = 10;

/// The key-request routes (merged into booking-ingest's public router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/webhooks/{source}/{tenant}/keyrequests", post(create))
        .route(
            "/webhooks/{source}/{tenant}/keyrequests/{request_id}",
            get(outcome),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeBody {
    reservation_key: String,
    action: KeyAction,
    #[serde(default)]
    encoder: Option<String>,
    #[serde(default = "one")]
    key_count: u32,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    mobile_phone: Option<String>,
    #[serde(default)]
    mobile_key: Option<bool>,
    #[serde(default)]
    callback_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ClockKeyType {
    New,
    Duplicate,
    Mobile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    booking_id: i64,
    #[serde(default)]
    account_id: Option<i64>,
    key_type: ClockKeyType,
    #[serde(default)]
    encoder_id: Option<String>,
    #[serde(default = "one")]
    keys: u32,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    mobile_phone: Option<String>,
    #[serde(default)]
    mobile_key: Option<bool>,
    #[serde(default)]
    callback_url: Option<String>,
}

fn one() -> u32 {
    1
}

/// What the desk asked for, whatever the shape.
struct Asked {
    reservation_key: String,
    site: Option<String>,
    request: KeyRequest,
    callback_url: Option<String>,
}

/// The fields both shapes share under the same names.
struct Extras {
    mobile_phone: Option<String>,
    mobile_key: Option<bool>,
    callback_url: Option<String>,
}

fn parse(src: Source, bytes: &[u8]) -> Result<Asked, Reject> {
    let shape = |e: serde_json::Error| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|f| !f.is_empty())
            .unwrap_or("body")
            .to_owned();
        Reject::field(field, msg)
    };
    let (reservation_key, site, action, encoder, key_count, requested_by, extras) =
        if src == Source::Clock {
            let b: ClockBody = serde_json::from_slice(bytes).map_err(shape)?;
            let action = match b.key_type {
                ClockKeyType::New => KeyAction::NewKey,
                ClockKeyType::Duplicate => KeyAction::DuplicateKey,
                ClockKeyType::Mobile => KeyAction::MobileKey,
            };
            (
                b.booking_id.to_string(),
                b.account_id.map(|a| a.to_string()),
                action,
                b.encoder_id,
                b.keys,
                b.user,
                Extras {
                    mobile_phone: b.mobile_phone,
                    mobile_key: b.mobile_key,
                    callback_url: b.callback_url,
                },
            )
        } else {
            let b: NativeBody = serde_json::from_slice(bytes).map_err(shape)?;
            (
                b.reservation_key,
                b.site,
                b.action,
                b.encoder,
                b.key_count,
                b.requested_by,
                Extras {
                    mobile_phone: b.mobile_phone,
                    mobile_key: b.mobile_key,
                    callback_url: b.callback_url,
                },
            )
        };
    let key_field = if src == Source::Clock {
        "booking_id"
    } else {
        "reservation_key"
    };
    if reservation_key.trim().is_empty() {
        return Err(Reject::field(key_field, "must not be empty"));
    }
    let count_field = if src == Source::Clock {
        "keys"
    } else {
        "key_count"
    };
    if !(1..=MAX_KEYS).contains(&key_count) {
        return Err(Reject::field(
            count_field,
            format!("must be between 1 and {MAX_KEYS}"),
        ));
    }
    let encoder = encoder
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty());
    if action != KeyAction::MobileKey && encoder.is_none() {
        let f = if src == Source::Clock {
            "encoder_id"
        } else {
            "encoder"
        };
        return Err(Reject::field(
            f,
            "the encoder the desk chose is required for a card",
        ));
    }
    let mobile_phone = extras.mobile_phone.map(|p| p.trim().to_owned());
    // A number entered while issuing the key means a mobile key (dormakaba's behaviour at
    // the desk) unless the caller says otherwise.
    let mobile_key =
        action == KeyAction::MobileKey || extras.mobile_key.unwrap_or(mobile_phone.is_some());
    let request = KeyRequest {
        request_id: uuid::Uuid::nil(),
        reservation_key: reservation_key.clone(),
        action,
        encoder_id: encoder,
        key_count,
        requested_by,
        mobile_phone,
        mobile_key,
    };
    // The number's own rules (422 naming `mobile_phone`; never the number itself).
    let problems = accesshub_domain::validate::Validate::problems(&request);
    let phone_problems: Vec<_> = problems
        .into_iter()
        .filter(|p| p.field == "mobile_phone")
        .collect();
    if !phone_problems.is_empty() {
        return Err(Reject::Unprocessable(phone_problems));
    }
    Ok(Asked {
        request,
        reservation_key,
        site,
        callback_url: extras.callback_url,
    })
}

/// The sender's authentication, shared by both routes and the webhook route
/// ([`crate::http::sender`]): each source's own scheme (BEX `X-BE-Signature`, Nexudus
/// `X-Nexudus-Hook-Signature`, the secret as a token where the operator chose it for Clock)
/// or our `X-Accesshub-Signature`, verified over the body (an empty one for the GET).
async fn authenticate(
    st: &AppState,
    src: Source,
    tenant: &str,
    headers: &HeaderMap,
    token: Option<String>,
    bytes: &[u8],
) -> Result<(), Reject> {
    let now = chrono::Utc::now();
    let (scheme, entry) = crate::http::sender(st, src, tenant, headers, token, now).await?;
    scheme
        .verify(&entry.secrets(now), bytes)
        .map_err(Reject::Unauthorized)
}

async fn read_body(st: &AppState, body: Body) -> Result<axum::body::Bytes, Reject> {
    let limit = st.body_limit;
    tokio::time::timeout(st.limits.body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| Reject::BodyTimeout)?
        .map_err(|_| Reject::TooLarge { limit })
}

fn answer(result: Result<(StatusCode, Value), Reject>) -> Response {
    match result {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(r) => r.into_response(),
    }
}

/// `POST /webhooks/{source}/{tenant}/keyrequests`.
async fn create(
    State(st): State<Arc<AppState>>,
    Path((source, tenant)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = query.as_deref().and_then(crate::http::token_param);
    answer(create_inner(&st, &source, &tenant, &headers, token, body).await)
}

async fn create_inner(
    st: &AppState,
    source: &str,
    tenant: &str,
    headers: &HeaderMap,
    token: Option<String>,
    body: Body,
) -> Result<(StatusCode, Value), Reject> {
    let src = upstream::inbound_source(source).ok_or(Reject::NotFound)?;
    let _global = st.limits.admit()?;
    let bytes = read_body(st, body).await?;
    authenticate(st, src, tenant, headers, token, &bytes).await?;
    let _tenant = st.limits.admit_tenant(tenant)?;
    let mut asked = parse(src, &bytes)?;
    let callback = asked
        .callback_url
        .as_deref()
        .map(|u| keyreq_callback::check_url(u, &st.egress))
        .transpose()?;
    let site = match asked.site.take() {
        Some(s) => s,
        None => reservation_site(st, tenant, &asked.reservation_key)
            .await?
            .ok_or_else(|| {
                Reject::semantic(
                    "reservation_key",
                    "accesshub knows no reservation with this key: send the reservation first",
                )
            })?,
    };
    // The request id is the event id: a repeated delivery is answered with the first one's.
    let id = uuid::Uuid::now_v7();
    asked.request.request_id = id;
    let mut event = Event::new(
        tenant,
        site,
        id.to_string(),
        1,
        src,
        chrono::Utc::now(),
        EventBody::KeyRequest(asked.request),
    );
    event.id = id;
    let json = serde_json::to_string(&event).map_err(|_| Reject::Unavailable)?;
    let delivery_key = crate::http::delivery_key(
        headers
            .get(crate::http::IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok()),
        &bytes,
    )?;
    let subject = st.bus.subject(&event.subject());
    let receipt = st
        .committers
        .submit(
            upstream::Normalized { event, json },
            src.as_str(),
            delivery_key,
            subject,
            accesshub_telemetry::propagation::current_traceparent(),
        )
        .await?;
    let request_id = receipt
        .body
        .get("event_id")
        .and_then(Value::as_str)
        .map_or_else(|| id.to_string(), str::to_owned);
    if let Some(url) = &callback {
        // After the commit, so only accepted requests are called back; a failure here is a
        // 503 and the caller's retry (same delivery, same request id) registers it.
        let rid: uuid::Uuid = request_id.parse().map_err(|_| Reject::Unavailable)?;
        keyreq_callback::register(&st.pool, tenant, rid, src.as_str(), url)
            .await
            .map_err(|_| Reject::Unavailable)?;
    }
    st.metrics.accepted(src.as_str());
    Ok((
        StatusCode::ACCEPTED,
        json!({
            "request_id": request_id,
            "status": "pending",
            "poll": format!("/webhooks/{source}/{tenant}/keyrequests/{request_id}?wait=20"),
        }),
    ))
}

async fn reservation_site(
    st: &AppState,
    tenant: &str,
    key: &str,
) -> Result<Option<String>, Reject> {
    sqlx::query_scalar(
        "SELECT site FROM bookings WHERE tenant_id = $1 AND kind = 'reservation' AND booking_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(&st.pool)
    .await
    .map_err(|_| Reject::Unavailable)
}

#[derive(Debug, Deserialize)]
struct Wait {
    #[serde(default)]
    wait: Option<u64>,
    /// The secret as a token (`?token=`), where the operator chose token authentication.
    #[serde(default)]
    token: Option<String>,
}

/// `GET /webhooks/{source}/{tenant}/keyrequests/{request_id}?wait=SECONDS`.
async fn outcome(
    State(st): State<Arc<AppState>>,
    Path((source, tenant, request_id)): Path<(String, String, String)>,
    Query(q): Query<Wait>,
    headers: HeaderMap,
) -> Response {
    answer(outcome_inner(&st, &source, &tenant, &request_id, q, &headers).await)
}

async fn outcome_inner(
    st: &AppState,
    source: &str,
    tenant: &str,
    request_id: &str,
    q: Wait,
    headers: &HeaderMap,
) -> Result<(StatusCode, Value), Reject> {
    let src = upstream::inbound_source(source).ok_or(Reject::NotFound)?;
    let _global = st.limits.admit()?;
    authenticate(st, src, tenant, headers, q.token.clone(), b"").await?;
    let id: uuid::Uuid = request_id
        .parse()
        .map_err(|_| Reject::field("request_id", "must be a UUID"))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let found = record(&st.pool, tenant, id)
            .await
            .map_err(|_| Reject::Unavailable)?;
        let fin = found.as_ref().is_some_and(|o| o.is_final());
        if fin || tokio::time::Instant::now() >= deadline {
            let o = match found {
                Some(o) => o,
                None if known(st, tenant, id).await? => Outcome::pending(id),
                None => return Err(Reject::NotFound),
            };
            return Ok((StatusCode::OK, o.to_json()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A key request's outcome as the worker recorded it.
struct Outcome {
    request_id: uuid::Uuid,
    status: &'static str,
    message: Option<String>,
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Outcome {
    fn pending(request_id: uuid::Uuid) -> Self {
        Outcome {
            request_id,
            status: "pending",
            message: None,
            updated_at: None,
        }
    }

    fn is_final(&self) -> bool {
        matches!(self.status, "encoded" | "sent" | "failed")
    }

    fn to_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "status": self.status,
            "final": self.is_final(),
            "message": self.message,
            "updated_at": self.updated_at,
        })
    }
}

/// status, last_error, message, updated_at of a key request's binding.
type RecordRow = (
    String,
    Option<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
);

/// The outcome body of a request whose outcome is final (`None` while it is not): what a
/// callback delivers ([`keyreq_callback`]), the same JSON as the long-poll's answer.
pub(crate) async fn final_outcome(
    pool: &sqlx::PgPool,
    tenant: &str,
    id: uuid::Uuid,
) -> Result<Option<Value>, sqlx::Error> {
    Ok(record(pool, tenant, id)
        .await?
        .filter(Outcome::is_final)
        .map(|o| o.to_json()))
}

async fn record(
    pool: &sqlx::PgPool,
    tenant: &str,
    id: uuid::Uuid,
) -> Result<Option<Outcome>, sqlx::Error> {
    let row: Option<RecordRow> = sqlx::query_as(
        "SELECT status, last_error, vendor_ids->>'message', updated_at FROM bindings \
              WHERE tenant_id = $1 AND kind = 'keyreq' AND booking_key = $2 \
              ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(status, last_error, message, updated_at)| {
        let status = match status.as_str() {
            "encoded" => "encoded",
            "sent" => "sent",
            "failed" | "dead_lettered" => "failed",
            "in_flight" => "in_flight",
            _ => "pending",
        };
        // A dead-lettered request's reason is the worker's last error.
        let message = if status == "failed" {
            last_error.or(message)
        } else {
            message
        };
        Outcome {
            request_id: id,
            status,
            message,
            updated_at: Some(updated_at),
        }
    }))
}

/// Whether the request was accepted (stored) for this tenant.
async fn known(st: &AppState, tenant: &str, id: uuid::Uuid) -> Result<bool, Reject> {
    let n: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM bookings WHERE tenant_id = $1 AND kind = 'keyreq' AND booking_key = $2",
    )
    .bind(tenant)
    .bind(id.to_string())
    .fetch_optional(&st.pool)
    .await
    .map_err(|_| Reject::Unavailable)?;
    Ok(n.is_some())
}
