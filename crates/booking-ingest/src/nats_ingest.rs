//! NATS ingest: upstreams inside the trust boundary (authenticated by NATS itself, no HMAC)
//! publish raw payloads on `ingest.<source>.<tenant>` (namespaced) as a request and get a JSON
//! reply: `{"status": "accepted", "event_id"}`, `{"status": "superseded", "current_revision"}`,
//! `{"status": "ignored", "reason", "site"}` (access control off there, see [`crate::scope`])
//! or `{"status": "rejected", "error", "field", "problem"}`. Same normalization, validation and
//! durable path as the webhooks. The tenant must be registered for the source (its site
//! defaults apply), else `error: "unknown_tenant"`. Same rate and in-flight limits as the
//! webhooks ([`crate::limits`], global and per tenant): over them the reply is
//! `{"status": "rejected", "error": "too_many_requests", "scope", "retry_after",
//! "message": "rate limited, retry after N s"}` with a `Retry-After` header.
//!
//! Off unless `ACCESSHUB_NATS_INGEST=true` in production (on by default in dev mode): it is
//! a second way in, and only deployments with upstreams bound to tenants in NATS need it.

use std::sync::Arc;

use accesshub_domain::{Source, subjects};
use accesshub_telemetry::propagation;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    AppState, auth::AuthFailure, committer::AnswerKind, error::Reject, http::delivery_key, upstream,
};

/// Queue group shared by every replica.
pub const QUEUE_GROUP: &str = "booking-ingest";

/// Subscribes to the namespaced `ingest.*.*` in the queue group (flushed, so a request sent
/// after this returns finds a responder).
pub async fn subscribe(
    st: &AppState,
) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
    // Wildcards by hand: `subjects::ingest` escapes `*` as an identifier.
    let filter = st.bus.subject("ingest.*.*");
    let sub = st
        .bus
        .client
        .queue_subscribe(filter, QUEUE_GROUP.to_owned())
        .await?;
    let _ = st.bus.client.flush().await;
    Ok(sub)
}

/// Serves `sub` until `stop`; each message is handled in its own task.
pub async fn run(st: Arc<AppState>, mut sub: async_nats::Subscriber, stop: CancellationToken) {
    loop {
        tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => {
                    let st = st.clone();
                    tokio::spawn(async move { handle_message(st, msg).await });
                }
                None => break,
            },
            _ = stop.cancelled() => break,
        }
    }
    let _ = sub.unsubscribe().await;
}

async fn handle_message(st: Arc<AppState>, msg: async_nats::Message) {
    let subject = st.bus.ns.strip(msg.subject.as_str()).to_owned();
    let mut parts = subject.split('.');
    let (source, tenant) = match (parts.next(), parts.next(), parts.next()) {
        (Some("ingest"), Some(s), Some(t)) => (subjects::untoken(s), subjects::untoken(t)),
        _ => return,
    };
    let span = tracing::info_span!("nats_ingest", source = %source, tenant = %tenant, otel.kind = "consumer");
    if let Some(h) = &msg.headers {
        propagation::set_parent(&span, propagation::extract_nats(h));
    }
    let src = upstream::inbound_source(&source);
    let label = src.map_or("unknown", Source::as_str);
    let reply = async {
        let src = src.ok_or(Reject::NotFound)?;
        // The webhooks' budgets, from the same limiter: the global rate and in-flight cap
        // first (held until the answer), the tenant's once the tenant is known below.
        let _global = st.limits.admit()?;
        if msg.payload.len() > st.body_limit {
            return Err(Reject::TooLarge {
                limit: st.body_limit,
            });
        }
        let entry = st
            .sources
            .get(&tenant, src.as_str())
            .await?
            .ok_or(Reject::Unauthorized(AuthFailure::SignatureMismatch))?;
        // NATS permissions bind an upstream identity to its tenant, so only that tenant's
        // own upstreams spend its budget (like a valid signature on the webhook path).
        let _tenant = st.limits.admit_tenant(&tenant)?;
        let given = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Idempotency-Key"))
            .map(|v| v.as_str().to_owned());
        let key = delivery_key(given.as_deref(), &msg.payload)?;
        let normalized = match upstream::normalize_for(
            src,
            &msg.payload,
            upstream::Context {
                tenant: &tenant,
                site_defaults: &entry.site_defaults,
            },
            entry.organization.as_deref(),
        )? {
            upstream::Outcome::Event(n) => *n,
            upstream::Outcome::Ignored(why) => return Ok(Err(why)),
        };
        let normalized = match crate::scope::admit(&st, src, normalized).await? {
            crate::scope::Admitted::Store(n) => *n,
            crate::scope::Admitted::Ignored(answer) => return Ok(Ok(answer)),
        };
        let subject = st.bus.subject(&normalized.event.subject());
        st.committers
            .submit(
                normalized,
                src.as_str(),
                key,
                subject,
                propagation::current_traceparent(),
            )
            .await
            .map(Ok)
    }
    .instrument(span)
    .await;
    let mut retry_after = None;
    let body: Value = match reply {
        Ok(Err(why)) => {
            st.metrics.ignored(label, why.reason);
            crate::http::ignored_body(&why)
        }
        Ok(Ok(a)) => {
            if a.kind == AnswerKind::Accepted {
                st.metrics.accepted(label);
            }
            a.body
        }
        Err(r) => {
            st.metrics.rejected(label, r.reason());
            if let Reject::TooManyRequests {
                retry_after_secs, ..
            } = r
            {
                retry_after = Some(retry_after_secs);
            }
            reject_body(&r)
        }
    };
    if let Some(reply_to) = msg.reply {
        let payload = body.to_string().into();
        let _ = match retry_after {
            // The webhooks' Retry-After, as a header of the reply too.
            Some(secs) => {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Retry-After", secs.to_string().as_str());
                st.bus
                    .client
                    .publish_with_headers(reply_to, h, payload)
                    .await
            }
            None => st.bus.client.publish(reply_to, payload).await,
        };
    }
}

/// The reply to a refused request: the webhook answer's body plus `status: rejected`; a
/// tenant not registered for the source is `unknown_tenant`; over a rate or in-flight limit
/// the body also says `message: "rate limited, retry after N s"` (N = `retry_after`).
pub fn reject_body(r: &Reject) -> Value {
    let mut b = match r {
        Reject::Unauthorized(_) => json!({"error": "unknown_tenant"}),
        other => other.body(),
    };
    if let Some(o) = b.as_object_mut() {
        o.insert("status".into(), json!("rejected"));
        if let Reject::TooManyRequests {
            retry_after_secs, ..
        } = r
        {
            o.insert(
                "message".into(),
                json!(format!("rate limited, retry after {retry_after_secs} s")),
            );
        }
    }
    b
}
