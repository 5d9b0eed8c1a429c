//! The webhook endpoint: `POST /webhooks/{source}/{tenant}`.
//!
//! Order of checks: unknown source → 404; declared length over the limit → 413; content type
//! not JSON → 415; body over the limit → 413; unknown tenant/source or bad signature → 401;
//! shape → 400; semantics → 422; then the durable write → 202.

use std::sync::Arc;

use accesshub_domain::Source;
use accesshub_telemetry::propagation;
use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::{AppState, auth, error::Reject, upstream};

/// Header naming the upstream's delivery id, used instead of the body hash when present.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// `POST /webhooks/{source}/{tenant}`.
pub async fn webhook(
    State(st): State<Arc<AppState>>,
    Path((source, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span =
        tracing::info_span!("webhook", source = %source, tenant = %tenant, otel.kind = "server");
    propagation::set_parent(&span, propagation::extract_http(&headers));
    let src = upstream::inbound_source(&source);
    let label = src.map_or("unknown", Source::as_str);
    let result = handle(&st, src, &tenant, &headers, body)
        .instrument(span)
        .await;
    match result {
        Ok(answer) => {
            if answer.kind == crate::committer::AnswerKind::Accepted {
                st.metrics.accepted(label);
            }
            (StatusCode::ACCEPTED, Json(answer.body)).into_response()
        }
        Err(reject) => {
            st.metrics.rejected(label, reject.reason());
            reject.into_response()
        }
    }
}

async fn handle(
    st: &AppState,
    src: Option<Source>,
    tenant: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<crate::committer::Answer, Reject> {
    let src = src.ok_or(Reject::NotFound)?;
    let limit = st.body_limit;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(Reject::TooLarge { limit });
    }
    if !is_json(headers) {
        return Err(Reject::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Reject::TooLarge { limit })?;
    let entry = st
        .sources
        .get(tenant, src.as_str())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "tenant lookup failed");
            Reject::Unavailable
        })?
        .ok_or(Reject::Unauthorized)?;
    let now = chrono::Utc::now();
    if !auth::verify(&entry.secrets(now), headers, &bytes, now.timestamp()) {
        return Err(Reject::Unauthorized);
    }
    let delivery_key = delivery_key(
        headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()),
        &bytes,
    )?;
    let normalized = upstream::normalize(
        src,
        &bytes,
        upstream::Context {
            tenant,
            site_defaults: &entry.site_defaults,
        },
    )?;
    let subject = st.bus.subject(&normalized.event.subject());
    st.committers
        .submit(
            normalized,
            src.as_str(),
            delivery_key,
            subject,
            traceparent(headers),
        )
        .await
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

/// The idempotency key of a delivery: the upstream's `Idempotency-Key`, else the body's SHA-256.
pub fn delivery_key(given: Option<&str>, body: &[u8]) -> Result<String, Reject> {
    match given.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY || k.contains('\0') => Err(Reject::field(
            "Idempotency-Key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
        )),
        Some(k) => Ok(format!("key:{k}")),
        None => Ok(format!("sha256:{}", hex::encode(Sha256::digest(body)))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}
