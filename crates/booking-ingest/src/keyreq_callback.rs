//! Key-request outcomes by callback (issue 26): a caller that gives `callback_url` with its
//! key request gets the final outcome POSTed there instead of (or as well as) long-polling.
//!
//! - **Where to.** The URL is checked when the request is accepted, by the deployment's egress
//!   policy like every vendor URL (`ACCESSHUB_EGRESS_ALLOW`; https to a public address unless
//!   the allow-list says otherwise, no credentials in the URL): a refused URL is a 400 naming
//!   `callback_url`. It is checked again before every delivery, and the client's resolver and
//!   redirects are guarded by the same policy ([`vendor_http::VendorClient`]), so DNS
//!   rebinding cannot turn it into a request to the cluster's inside.
//! - **What.** The same JSON as `GET …/keyrequests/{id}` (`request_id`, `status`, `final`,
//!   `message`, `updated_at`), signed exactly as senders sign towards us, with the source's
//!   current webhook secret: `X-Accesshub-Timestamp: <unix seconds>` and
//!   `X-Accesshub-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!   `Idempotency-Key: <request_id>` lets the receiver drop a repeat.
//! - **When.** Once the dormakaba worker has recorded a final outcome (`encoded`, `sent`,
//!   `failed`). Stored in `keyreq_callbacks`, so a restart delivers what was due; several
//!   replicas share the work (`FOR UPDATE SKIP LOCKED`, a lease while a POST is under way).
//! - **Retries.** A 2xx ends it. A network error, timeout, 408, 429 or 5xx is retried with the
//!   one backoff ([`accesshub_retry`]) up to [`CallbackConfig::policy`]'s limit; any other
//!   answer (a 4xx: the receiver refuses it) or an egress refusal gives up at once. Delivery
//!   is at least once: a crash between the POST and its bookkeeping repeats it. The limit,
//!   the backoff and the POST's timeout are settings ([`CallbackConfig::from_env`]).
//! - **Watching it.** `accesshub_keyreq_callbacks_total{outcome=delivered|retried|gave_up}`
//!   counts what each POST (or attempt to make one) came to, and
//!   `accesshub_keyreq_callbacks_pending` is how many callbacks are still to deliver
//!   ([`CallbackMetrics`]).

use std::time::Duration;

use accesshub_config::{ConfigError, env_duration, env_or};
use accesshub_domain::egress::{EgressPolicy, Host};
use accesshub_retry::{Backoff, RetryPolicy};
use accesshub_telemetry::{
    Registry,
    metrics::{CounterVec, GaugeVec, labels},
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{auth, error::Reject, keyreq_api};

/// Longest accepted callback URL.
pub const MAX_URL: usize = 2048;

/// Header carrying the request id, so a receiver can drop a repeated delivery.
pub const DELIVERY_HEADER: &str = "idempotency-key";

/// How callbacks are delivered.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// Retries after the first POST and their backoff (default: 1 s doubling to 5 min, 8
    /// retries: about 10 minutes in all).
    pub policy: RetryPolicy,
    /// How often the deliverer looks for due callbacks (default 250 ms).
    pub poll: Duration,
    /// Whole-request timeout of one POST (default 10 s).
    pub timeout: Duration,
    /// How long a claimed delivery is someone's before another replica may take it (longer
    /// than `timeout`).
    pub lease: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            policy: RetryPolicy::limited(
                Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
                8,
            ),
            poll: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
        }
    }
}

impl CallbackConfig {
    /// Reads the settings (docs/deploy.md), failing on a value that cannot work:
    /// `ACCESSHUB_KEYREQ_CALLBACK_RETRIES` (8; 0 = one POST only),
    /// `ACCESSHUB_KEYREQ_CALLBACK_BACKOFF` (1s, the first retry's wait, doubling) up to
    /// `ACCESSHUB_KEYREQ_CALLBACK_BACKOFF_MAX` (5m), and `ACCESSHUB_KEYREQ_CALLBACK_TIMEOUT`
    /// (10s per POST). The lease outlasts the timeout by at least 30 s, so another replica
    /// never takes over a POST still under way.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = CallbackConfig::default();
        let retries: u32 = env_or("ACCESSHUB_KEYREQ_CALLBACK_RETRIES", 8)?;
        let base = env_duration("ACCESSHUB_KEYREQ_CALLBACK_BACKOFF", d.policy.backoff.base)?;
        let max = env_duration(
            "ACCESSHUB_KEYREQ_CALLBACK_BACKOFF_MAX",
            d.policy.backoff.max,
        )?;
        let timeout = env_duration("ACCESSHUB_KEYREQ_CALLBACK_TIMEOUT", d.timeout)?;
        let invalid = |name: &'static str, value: Duration, problem: &str| ConfigError::Invalid {
            name,
            value: format!("{value:?}"),
            problem: problem.to_owned(),
        };
        if base.is_zero() {
            return Err(invalid(
                "ACCESSHUB_KEYREQ_CALLBACK_BACKOFF",
                base,
                "must be longer than zero",
            ));
        }
        if max < base {
            return Err(invalid(
                "ACCESSHUB_KEYREQ_CALLBACK_BACKOFF_MAX",
                max,
                "must not be shorter than ACCESSHUB_KEYREQ_CALLBACK_BACKOFF",
            ));
        }
        if timeout.is_zero() {
            return Err(invalid(
                "ACCESSHUB_KEYREQ_CALLBACK_TIMEOUT",
                timeout,
                "must be longer than zero",
            ));
        }
        Ok(CallbackConfig {
            policy: RetryPolicy::limited(Backoff::new(base, max), retries),
            timeout,
            lease: d.lease.max(timeout + Duration::from_secs(30)),
            ..d
        })
    }
}

/// The deliverer's metrics (registered by [`crate::metrics::IngestMetrics`]).
#[derive(Clone, Debug)]
pub struct CallbackMetrics {
    delivered: Counter,
    retried: Counter,
    gave_up: Counter,
    /// `accesshub_keyreq_callbacks_pending`: callbacks neither delivered nor given up (their
    /// outcome may not be final yet), counted in the database: every replica reports the
    /// same figure.
    pending: Gauge,
}

impl CallbackMetrics {
    /// Registers `accesshub_keyreq_callbacks_total{outcome}` and
    /// `accesshub_keyreq_callbacks_pending` on `registry`.
    pub fn new(registry: &Registry) -> Self {
        let total: CounterVec = registry.counter(
            "accesshub_keyreq_callbacks",
            "Key-request callback attempts, by what they came to: delivered, retried (later) or gave_up",
        );
        let pending: GaugeVec = registry.gauge(
            "accesshub_keyreq_callbacks_pending",
            "Key-request callbacks not yet delivered nor given up",
        );
        let outcome = |o: &str| total.get_or_create(&labels([("outcome", o)])).clone();
        CallbackMetrics {
            delivered: outcome("delivered"),
            retried: outcome("retried"),
            gave_up: outcome("gave_up"),
            pending: pending.get_or_create(&Vec::new()).clone(),
        }
    }
}

/// How often the pending gauge is counted again.
const PENDING_EVERY: Duration = Duration::from_secs(1);

/// Checks a caller's callback URL against the egress policy; the error is the 400 naming
/// `callback_url`.
pub fn check_url(raw: &str, egress: &EgressPolicy) -> Result<reqwest::Url, Reject> {
    let bad = |problem: String| Reject::field("callback_url", problem);
    if raw.len() > MAX_URL {
        return Err(bad(format!("longer than {MAX_URL} characters")));
    }
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| bad(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad(format!(
            "scheme {:?}: must be https (or http where the egress allow-list permits it)",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials".to_owned()));
    }
    // The parser has normalized the host (`0x7f.1` is 127.0.0.1, IPv6 is bracketed).
    let Some(name) = url.host_str() else {
        return Err(bad("has no host".to_owned()));
    };
    let host = match name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(name),
    };
    egress
        .check_target(url.scheme(), host, url.port())
        .map_err(|e| bad(e.to_string()))?;
    Ok(url)
}

/// Stores the callback of an accepted key request (a repeated delivery of the same request
/// keeps the first).
pub async fn register(
    pool: &PgPool,
    tenant: &str,
    request_id: uuid::Uuid,
    source: &str,
    url: &reqwest::Url,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO keyreq_callbacks (tenant_id, request_id, source, url) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, request_id) DO NOTHING",
    )
    .bind(tenant)
    .bind(request_id)
    .bind(source)
    .bind(url.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

/// One claimed delivery.
#[derive(Debug, sqlx::FromRow)]
struct Due {
    tenant_id: String,
    request_id: uuid::Uuid,
    source: String,
    url: String,
    attempts: i32,
}

/// How one POST went.
enum Tried {
    Delivered,
    /// Not sent now, try again (the outcome or the secret could not be read).
    Retry(String),
    /// Not sent, and it never will be.
    GiveUp(String),
    /// The POST failed, classified.
    Failed(vendor_http::VendorError),
}

/// The deliverer: until `stop`, claims due callbacks whose outcome is final and POSTs them.
pub async fn run(
    pool: PgPool,
    sources: auth::SourceCache,
    egress: EgressPolicy,
    cfg: CallbackConfig,
    metrics: CallbackMetrics,
    stop: CancellationToken,
) {
    let client = match vendor_http::VendorClient::with_egress_policy(
        "keyreq-callback",
        vendor_http::HttpSettings {
            timeout: cfg.timeout,
            connect_timeout: cfg.timeout.min(Duration::from_secs(3)),
        },
        egress.clone(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "key-request callbacks disabled: no HTTP client");
            return;
        }
    };
    let mut prune = tokio::time::Instant::now();
    let mut counted: Option<tokio::time::Instant> = None;
    loop {
        if counted.is_none_or(|at| at.elapsed() >= PENDING_EVERY) {
            counted = Some(tokio::time::Instant::now());
            match sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM keyreq_callbacks WHERE delivered_at IS NULL AND gave_up_at IS NULL",
            )
            .fetch_one(&pool)
            .await
            {
                Ok(n) => {
                    metrics.pending.set(n);
                }
                Err(e) => tracing::debug!(error = %e, "counting pending key-request callbacks failed"),
            }
        }
        match claim(&pool, cfg.lease).await {
            Ok(due) => {
                for d in due {
                    let tried = deliver(&pool, &sources, &egress, &client, &d).await;
                    if let Err(e) = settle(&pool, &cfg, &metrics, &d, tried).await {
                        tracing::warn!(error = %e, request_id = %d.request_id, "callback bookkeeping failed; the lease expires and it is tried again");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "looking for due key-request callbacks failed"),
        }
        if prune.elapsed() > Duration::from_secs(3600) {
            prune = tokio::time::Instant::now();
            if let Err(e) = sqlx::query(
                "DELETE FROM keyreq_callbacks WHERE (delivered_at IS NOT NULL OR gave_up_at IS NOT NULL) \
                 AND created_at < now() - interval '7 days'",
            )
            .execute(&pool)
            .await
            {
                tracing::warn!(error = %e, "pruning finished key-request callbacks failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(cfg.poll) => {}
        }
    }
}

/// Claims up to 32 due callbacks whose request has a final outcome, leasing them.
async fn claim(pool: &PgPool, lease: Duration) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as::<_, Due>(
        "WITH due AS ( \
           SELECT c.tenant_id, c.request_id FROM keyreq_callbacks c \
            WHERE c.delivered_at IS NULL AND c.gave_up_at IS NULL AND c.next_attempt_at <= now() \
              AND EXISTS (SELECT 1 FROM bindings b WHERE b.tenant_id = c.tenant_id \
                          AND b.kind = 'keyreq' AND b.booking_key = c.request_id::text \
                          AND b.status IN ('encoded', 'sent', 'failed', 'dead_lettered')) \
            ORDER BY c.next_attempt_at LIMIT 32 FOR UPDATE OF c SKIP LOCKED) \
         UPDATE keyreq_callbacks c SET attempts = c.attempts + 1, \
                next_attempt_at = now() + make_interval(secs => $1) \
           FROM due WHERE c.tenant_id = due.tenant_id AND c.request_id = due.request_id \
         RETURNING c.tenant_id, c.request_id, c.source, c.url, c.attempts",
    )
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

async fn deliver(
    pool: &PgPool,
    sources: &auth::SourceCache,
    egress: &EgressPolicy,
    client: &vendor_http::VendorClient,
    d: &Due,
) -> Tried {
    // The policy may have tightened since the request was accepted.
    let url = match check_url(&d.url, egress) {
        Ok(u) => u,
        Err(e) => return Tried::GiveUp(e.to_string()),
    };
    let outcome = match keyreq_api::final_outcome(pool, &d.tenant_id, d.request_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return Tried::Retry("outcome not final".to_owned()),
        Err(_) => return Tried::Retry("outcome not readable".to_owned()),
    };
    let secret = match sources.get(&d.tenant_id, &d.source).await {
        Ok(Some(entry)) => entry.current_secret().to_vec(),
        // The source (or tenant) is gone: nobody left to sign for.
        Ok(None) => return Tried::GiveUp("the source has no webhook secret any more".to_owned()),
        Err(_) => return Tried::Retry("webhook secret not readable".to_owned()),
    };
    let body = match serde_json::to_vec(&outcome) {
        Ok(b) => b,
        Err(e) => return Tried::GiveUp(format!("encode outcome: {e}")),
    };
    let ts = chrono::Utc::now().timestamp();
    let signature = auth::sign_bytes(&secret, ts, &body);
    let req = client
        .request(reqwest::Method::POST, url.as_str())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(auth::TIMESTAMP_HEADER, ts.to_string())
        .header(auth::SIGNATURE_HEADER, signature)
        .header(DELIVERY_HEADER, d.request_id.to_string())
        .body(body);
    // vendor-http's one rule: network errors, timeouts, 408, 429 and 5xx are transient;
    // other answers and egress refusals are permanent.
    match client.send("callback", req).await {
        Ok(_) => Tried::Delivered,
        Err(e) => Tried::Failed(e),
    }
}

/// Books what an attempt came to (counted once its bookkeeping is written).
async fn settle(
    pool: &PgPool,
    cfg: &CallbackConfig,
    metrics: &CallbackMetrics,
    d: &Due,
    tried: Tried,
) -> Result<(), sqlx::Error> {
    let retries = u32::try_from(d.attempts).unwrap_or(u32::MAX);
    let (why, wait) = match tried {
        Tried::Delivered => {
            tracing::info!(request_id = %d.request_id, tenant = %d.tenant_id, attempts = d.attempts, "key-request outcome delivered by callback");
            sqlx::query(
                "UPDATE keyreq_callbacks SET delivered_at = now(), last_error = NULL \
                  WHERE tenant_id = $1 AND request_id = $2",
            )
            .bind(&d.tenant_id)
            .bind(d.request_id)
            .execute(pool)
            .await?;
            metrics.delivered.inc();
            return Ok(());
        }
        Tried::Retry(why) => {
            let wait = cfg.policy.wait(retries);
            (why, wait)
        }
        Tried::GiveUp(why) => (why, None),
        Tried::Failed(e) => {
            let wait = cfg.policy.wait_after(&e, retries);
            (e.to_string(), wait)
        }
    };
    tracing::warn!(request_id = %d.request_id, tenant = %d.tenant_id, attempts = d.attempts,
        error = %why, retry_in = ?wait, "key-request callback not delivered");
    match wait {
        Some(wait) => {
            sqlx::query(
                "UPDATE keyreq_callbacks SET last_error = $3, \
                        next_attempt_at = now() + make_interval(secs => $4) \
                  WHERE tenant_id = $1 AND request_id = $2",
            )
            .bind(&d.tenant_id)
            .bind(d.request_id)
            .bind(&why)
            .bind(wait.as_secs_f64())
            .execute(pool)
            .await?;
            metrics.retried.inc();
        }
        None => {
            sqlx::query(
                "UPDATE keyreq_callbacks SET gave_up_at = now(), last_error = $3 \
                  WHERE tenant_id = $1 AND request_id = $2",
            )
            .bind(&d.tenant_id)
            .bind(d.request_id)
            .bind(format!("{why} (gave up after {} attempt(s))", d.attempts))
            .execute(pool)
            .await?;
            metrics.gave_up.inc();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_follow_the_egress_policy() {
        let strict = EgressPolicy::strict();
        assert!(check_url("https://pms.example.com/keys?x=1", &strict).is_ok());
        for bad in [
            "http://pms.example.com/keys",
            "https://169.254.169.254/latest",
            "https://127.0.0.1/x",
            "https://user:pw@pms.example.com/",
            "ftp://pms.example.com/",
            "not a url",
        ] {
            let e = check_url(bad, &strict).err();
            assert!(
                matches!(&e, Some(Reject::BadRequest { field, .. }) if field == "callback_url"),
                "{bad}: {e:?}"
            );
        }
        let dev = EgressPolicy::loopback_http();
        assert!(check_url("http://127.0.0.1:9/cb", &dev).is_ok());
    }
}
