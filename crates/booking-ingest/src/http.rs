//! The webhook endpoint: `POST /webhooks/{source}/{tenant}`.
//!
//! Order of checks, cheapest first, and nothing of the body read until the headers have
//! passed: unknown source → 404; global rate / in-flight cap → 429; declared length over the
//! limit → 413; content type not JSON → 415; missing, malformed or stale signature headers →
//! 401; unknown tenant/source → 401 (cached, negative answers too); then the body, with the
//! size limit (413) and a timeout (408); MAC → 401; the tenant's rate / in-flight cap → 429;
//! shape → 400; semantics → 422; then the durable write → 202.
//!
//! Senders are authenticated their own way: a BEX App webhook carrying `X-BE-Signature`
//! (HMAC-SHA1 of the body with the App's client secret, no timestamp) is verified as BEX signs
//! and answered **200**, as BEX retries until it gets a 200; a Nexudus webhook carrying
//! `X-Nexudus-Hook-Signature` likewise; a source whose operator chose token authentication
//! (Clock PMS+, whose signing is not public) may send the secret itself in `X-Accesshub-Token`
//! or `?token=` (answered 202; refused as `missing_signature` elsewhere); every other delivery uses our
//! `X-Accesshub-Timestamp` / `X-Accesshub-Signature` and is answered 202. A delivery accesshub
//! deliberately does not act on (an unsupported event) is answered 200
//! `{"status": "ignored", "reason", "detail"}` and counted in
//! `accesshub_ingest_ignored_total{source,reason}`.

use std::{sync::Arc, time::Duration};

use accesshub_domain::Source;
use accesshub_telemetry::propagation;
use axum::{
    Json,
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::{
    AppState,
    auth::{self, AuthFailure},
    error::Reject,
    upstream,
};

/// Header naming the upstream's delivery id. It is not covered by the signature, so it only
/// ever narrows the body hash (see [`delivery_key`]), never replaces it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// `POST /webhooks/{source}/{tenant}`.
pub async fn webhook(
    State(st): State<Arc<AppState>>,
    Path((source, tenant)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span =
        tracing::info_span!("webhook", source = %source, tenant = %tenant, otel.kind = "server");
    propagation::set_parent(&span, propagation::extract_http(&headers));
    let src = upstream::inbound_source(&source);
    let label = src.map_or("unknown", Source::as_str);
    let token = query.as_deref().and_then(token_param);
    let result = handle(&st, src, &tenant, &headers, token, body)
        .instrument(span)
        .await;
    match result {
        Ok(Handled::Stored(answer, status)) => {
            if answer.kind == crate::committer::AnswerKind::Accepted {
                st.metrics.accepted(label);
            }
            (status, Json(answer.body)).into_response()
        }
        Ok(Handled::Done(body)) => (StatusCode::OK, Json(body)).into_response(),
        Ok(Handled::Ignored(why)) => {
            st.metrics.ignored(label, why.reason);
            tracing::info!(source = label, reason = why.reason, detail = %why.detail, "delivery ignored");
            (StatusCode::OK, Json(ignored_body(&why))).into_response()
        }
        Err(reject) => {
            st.metrics.rejected(label, reject.reason());
            reject.into_response()
        }
    }
}

/// The body of an ignored delivery (HTTP and NATS alike).
pub fn ignored_body(why: &upstream::Ignored) -> serde_json::Value {
    serde_json::json!({"status": "ignored", "reason": why.reason, "detail": why.detail})
}

/// How a delivery that passed every check was handled.
pub enum Handled {
    /// Stored (or superseded, or a repeat), answered with this status.
    Stored(crate::committer::Answer, StatusCode),
    /// Acted on without storing an event (a re-read requested), answered 200 with this body.
    Done(serde_json::Value),
    /// Deliberately not acted on.
    Ignored(upstream::Ignored),
}

/// How the sender authenticates: its own scheme where it has one (webhooks and key requests
/// alike).
pub(crate) enum Scheme {
    /// Ours: timestamped HMAC-SHA256.
    Accesshub(auth::SignedHeaders),
    /// BEX: `X-BE-Signature: sha1=…` over the body.
    Bex(Vec<u8>),
    /// Nexudus: `X-Nexudus-Hook-Signature` (uppercase hex HMAC-SHA256 of the body); the body
    /// is a bare `[dto]` array.
    Nexudus(Vec<u8>),
    /// The secret itself (`X-Accesshub-Token` or `?token=`), where the operator chose it for
    /// a sender that cannot sign (Clock PMS+).
    Token(Vec<u8>),
}

impl Scheme {
    pub(crate) fn parse(
        src: Source,
        headers: &HeaderMap,
        token: Option<String>,
        now: i64,
    ) -> Result<Scheme, AuthFailure> {
        // A signature, when one is sent, is always checked as such.
        if !headers.contains_key(auth::SIGNATURE_HEADER) {
            let given = headers
                .get(auth::TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or(token);
            if let Some(t) = given.filter(|t| !t.is_empty() && t.len() <= 512) {
                return Ok(Scheme::Token(t.into_bytes()));
            }
        }
        if src == Source::Bex
            && let Some(mac) = auth::bex_signature(headers)?
        {
            return Ok(Scheme::Bex(mac));
        }
        if src == Source::Nexudus
            && let Some(mac) = auth::nexudus_signature(headers)?
        {
            return Ok(Scheme::Nexudus(mac));
        }
        auth::SignedHeaders::parse(headers, now).map(Scheme::Accesshub)
    }

    pub(crate) fn verify(&self, secrets: &[Vec<u8>], body: &[u8]) -> Result<(), AuthFailure> {
        match self {
            Scheme::Accesshub(signed) => signed.verify(secrets, body),
            Scheme::Bex(mac) => auth::verify_bex(secrets, mac, body),
            Scheme::Nexudus(mac) => auth::verify_nexudus(secrets, mac, body),
            Scheme::Token(token) => auth::verify_token(secrets, token),
        }
    }

    /// BEX retries until it gets a 200; our own scheme has always been answered 202.
    fn success(&self) -> StatusCode {
        match self {
            Scheme::Accesshub(_) | Scheme::Token(_) => StatusCode::ACCEPTED,
            Scheme::Bex(_) | Scheme::Nexudus(_) => StatusCode::OK,
        }
    }
}

/// Reads and drops up to `cap` bytes of a body we refuse, for at most `wait`, so a sender
/// still uploading it sees our 413 instead of a connection reset: a socket closed with unread
/// data in it is reset, and the answer is lost with it (one run in many of bad_input's 1.2 MB
/// body). Bounded in bytes and time, and nothing is kept.
async fn discard_some(body: Body, cap: usize, wait: Duration) {
    use futures::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    let _ = tokio::time::timeout(wait, async {
        while seen < cap {
            match stream.next().await {
                Some(Ok(chunk)) => seen = seen.saturating_add(chunk.len()),
                _ => break,
            }
        }
    })
    .await;
}

async fn handle(
    st: &AppState,
    src: Option<Source>,
    tenant: &str,
    headers: &HeaderMap,
    token: Option<String>,
    body: Body,
) -> Result<Handled, Reject> {
    let src = src.ok_or(Reject::NotFound)?;
    let _global = st.limits.admit()?;
    let limit = st.body_limit;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        discard_some(body, limit.saturating_mul(4), Duration::from_secs(2)).await;
        return Err(Reject::TooLarge { limit });
    }
    if !is_json(headers) {
        return Err(Reject::UnsupportedMediaType);
    }
    let now = chrono::Utc::now();
    let (signed, entry) = sender(st, src, tenant, headers, token, now).await?;
    let bytes = tokio::time::timeout(st.limits.body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| Reject::BodyTimeout)?
        .map_err(|_| Reject::TooLarge { limit })?;
    signed
        .verify(&entry.secrets(now), &bytes)
        .map_err(Reject::Unauthorized)?;
    let _tenant = st.limits.admit_tenant(tenant)?;
    if let Scheme::Nexudus(_) = signed {
        return crate::upstream::nexudus_hooks::handle(&st.pool, tenant, &bytes).await;
    }
    let delivery_key = delivery_key(
        headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()),
        &bytes,
    )?;
    let normalized = match upstream::normalize_for(
        src,
        &bytes,
        upstream::Context {
            tenant,
            site_defaults: &entry.site_defaults,
        },
        entry.organization.as_deref(),
    )? {
        upstream::Outcome::Event(n) => *n,
        upstream::Outcome::Ignored(why) => return Ok(Handled::Ignored(why)),
    };
    let normalized = match crate::scope::admit(st, src, normalized).await? {
        crate::scope::Admitted::Store(n) => *n,
        crate::scope::Admitted::Ignored(answer) => {
            return Ok(Handled::Stored(answer, signed.success()));
        }
    };
    let subject = st.bus.subject(&normalized.event.subject());
    let answer = st
        .committers
        .submit(
            normalized,
            src.as_str(),
            delivery_key,
            subject,
            traceparent(headers),
        )
        .await?;
    Ok(Handled::Stored(answer, signed.success()))
}

/// The sender's scheme (from the headers) and its source's entry: 401 for malformed or
/// missing credentials, an unknown tenant/source, or a token where the operator did not
/// choose token authentication. The MAC itself is checked once the body is read.
pub(crate) async fn sender(
    st: &AppState,
    src: Source,
    tenant: &str,
    headers: &HeaderMap,
    token: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Scheme, Arc<auth::SourceEntry>), Reject> {
    let signed =
        Scheme::parse(src, headers, token, now.timestamp()).map_err(Reject::Unauthorized)?;
    let entry = st
        .sources
        .get(tenant, src.as_str())
        .await?
        .ok_or(Reject::Unauthorized(AuthFailure::SignatureMismatch))?;
    // A token is only good where the operator chose it; elsewhere it is no signature at all.
    if matches!(signed, Scheme::Token(_)) && !entry.token_auth {
        return Err(Reject::Unauthorized(AuthFailure::MissingSignature));
    }
    Ok((signed, entry))
}

/// `token=` of a query string (URL-decoded).
pub(crate) fn token_param(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// The request span's traceparent; when the span is filtered out (log level), the incoming
/// one, so the worker still continues the upstream's trace.
fn traceparent(headers: &HeaderMap) -> Option<String> {
    propagation::current_traceparent().or_else(|| {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128 && v.is_ascii())
            .map(str::to_owned)
    })
}

/// The idempotency key of a delivery: the body's SHA-256, prefixed with the upstream's
/// `Idempotency-Key` when it sends one.
///
/// The key is bound to the signed content because the signature does not cover the header:
/// were the key alone the receipt's identity, anyone replaying a captured request within the
/// replay window under the sender's *next* key would make that next delivery look like a
/// repeat (answered with the old receipt, its event never written). With the hash in the
/// identity, a replay under any key is at most a new delivery of already-stored content
/// (superseded by the revision check), and a key reused with another body is a new delivery.
pub fn delivery_key(given: Option<&str>, body: &[u8]) -> Result<String, Reject> {
    let hash = hex::encode(Sha256::digest(body));
    match given.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY || k.contains('\0') => Err(Reject::field(
            "Idempotency-Key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
        )),
        Some(k) => Ok(format!("key:{k}:sha256:{hash}")),
        None => Ok(format!("sha256:{hash}")),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}
