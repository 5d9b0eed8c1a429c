//! Ingest limits (issue 23 item 5): 429 + `Retry-After` over the global and per-tenant rate and
//! in-flight caps, a body timeout, and unknown tenants that cost (almost) no database look-ups.
//! Real HTTP against the in-process service, real NATS and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    num::NonZeroU32,
    time::{Duration, Instant},
};

use accesshub_connections::{Secret, TenantStore};
use booking_ingest::limits::LimitsConfig;
use common::*;
use serde_json::{Value, json};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Signed POST that also returns `Retry-After`.
async fn post_with_retry_after(
    env: &Env,
    source: &str,
    tenant: &str,
    body: &Value,
    secret: &str,
) -> (u16, Option<String>, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let resp = env
        .client
        .post(format!("{}/webhooks/{source}/{tenant}", env.base))
        .header("content-type", "application/json")
        .header("x-accesshub-timestamp", ts.to_string())
        .header(
            "x-accesshub-signature",
            booking_ingest::sign(secret, ts, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

async fn metric(env: &Env, name: &str) -> f64 {
    let text = env
        .client
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .find_map(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// booking-ingest whose tenants may do 1 request/s with a burst of 2, and a second tenant
/// `beta` registered for connecX besides [`TENANT`].
async fn env_with_tenant_limits_and_beta() -> Env {
    let env = Env::with(|c| {
        c.limits = LimitsConfig {
            tenant_rate: nz(1),
            tenant_burst: nz(2),
            ..LimitsConfig::unlimited()
        }
    })
    .await;
    let tenants = TenantStore::new(env.db.pool.clone(), env.sbox.clone());
    tenants.upsert("beta", "beta").await.unwrap();
    tenants
        .set_source_secret("beta", "connecx", Some(Secret::new(SECRET)), Duration::ZERO)
        .await
        .unwrap();
    env
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let env = env_with_tenant_limits_and_beta().await;
    // Requests that fail the signature do not spend the tenant's budget: a spoofer who knows
    // the tenant id cannot lock its upstream out.
    for i in 0..5 {
        let (s, _, _) = post_with_retry_after(
            &env,
            "connecx",
            TENANT,
            &connecx(&format!("x-{i}"), "2025-06-20T09:15:00Z"),
            "wrong",
        )
        .await;
        assert_eq!(s, 401);
    }
    for i in 0..2 {
        let (s, _, a) = post_with_retry_after(
            &env,
            "connecx",
            TENANT,
            &connecx(&format!("cx-{i}"), "2025-06-20T09:15:00Z"),
            SECRET,
        )
        .await;
        assert_eq!(s, 202, "{a}");
    }
    let (s, retry, a) = post_with_retry_after(
        &env,
        "connecx",
        TENANT,
        &connecx("cx-3", "2025-06-20T09:15:00Z"),
        SECRET,
    )
    .await;
    assert_eq!(s, 429, "{a}");
    assert_eq!(a["error"], "too_many_requests");
    assert_eq!(a["scope"], "tenant");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another tenant is not affected.
    let (s, _, a) = post_with_retry_after(
        &env,
        "connecx",
        "beta",
        &connecx("b-1", "2025-06-20T09:15:00Z"),
        SECRET,
    )
    .await;
    assert_eq!(s, 202, "{a}");
    // After Retry-After the tenant is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (s, _, a) = post_with_retry_after(
        &env,
        "connecx",
        TENANT,
        &connecx("cx-3", "2025-06-20T09:15:00Z"),
        SECRET,
    )
    .await;
    assert_eq!(s, 202, "{a}");
    assert_eq!(env.events_written().await, 4);
    env.finish().await;
}

#[tokio::test]
async fn the_global_rate_answers_429_before_any_work() {
    let env = Env::with(|c| {
        c.limits = LimitsConfig {
            rate: nz(1),
            burst: nz(3),
            ..LimitsConfig::unlimited()
        }
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry = None;
    for i in 0..4 {
        let (s, r, _) = post_with_retry_after(
            &env,
            "connecx",
            &format!("t-{i}"),
            &connecx("cx-1", "2025-06-20T09:15:00Z"),
            SECRET,
        )
        .await;
        statuses.push(s);
        retry = r.or(retry);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert_eq!(retry.as_deref(), Some("1"));
    env.finish().await;
}

/// A sender that never finishes its body holds a global in-flight slot only until the body
/// timeout; while it does, a request over the cap is answered 429 at once.
#[tokio::test]
async fn in_flight_cap_and_body_timeout() {
    let env = Env::with(|c| {
        c.limits = LimitsConfig {
            max_in_flight: nz(1),
            body_timeout: Duration::from_secs(1),
            ..LimitsConfig::unlimited()
        }
    })
    .await;
    let addr = env.handle.as_ref().unwrap().addr();
    let now = chrono::Utc::now().timestamp();
    let head = format!(
        "POST /webhooks/connecx/{TENANT} HTTP/1.1\r\nHost: ingest\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\
         X-Accesshub-Timestamp: {now}\r\nX-Accesshub-Signature: {}",
        booking_ingest::sign(SECRET, now, b"{}")
    );
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        raw_request(addr, &head, b"{\"booking", Duration::from_secs(10)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, retry, a) = post_with_retry_after(
        &env,
        "connecx",
        TENANT,
        &connecx("cx-1", "2025-06-20T09:15:00Z"),
        SECRET,
    )
    .await;
    assert_eq!((s, a["scope"].as_str()), (429, Some("global")), "{a}");
    assert_eq!(retry.as_deref(), Some("1"));
    let (s, a) = slow.await.unwrap().expect("no answer to the slow body");
    assert_eq!((s, a), (408, json!({"error": "body_timeout"})));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (s, _, a) = post_with_retry_after(
        &env,
        "connecx",
        TENANT,
        &connecx("cx-1", "2025-06-20T09:15:00Z"),
        SECRET,
    )
    .await;
    assert_eq!(s, 202, "{a}");
    env.finish().await;
}

/// Each made-up tenant used to cost a database query (at most once per second per key,
/// which a flood of distinct keys never repeats). Now unknown keys are remembered and
/// uncached look-ups are rate-limited: the flood is answered 401/429 with a bounded number of
/// queries, and the registered tenant is served throughout.
#[tokio::test]
async fn a_flood_of_unknown_tenants_costs_a_bounded_number_of_lookups() {
    let env = Env::with(|c| c.source_cache.lookup_rate = nz(5)).await;
    let lookups = "accesshub_ingest_source_lookups_total";
    let (s, _, _) = post_with_retry_after(
        &env,
        "connecx",
        TENANT,
        &connecx("cx-0", "2025-06-20T09:15:00Z"),
        SECRET,
    )
    .await;
    assert_eq!(s, 202);
    let before = metric(&env, lookups).await;
    let started = Instant::now();
    let body = connecx("cx-1", "2025-06-20T09:15:00Z");
    let mut answers = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..200 {
        let (s, _, _) =
            post_with_retry_after(&env, "connecx", &format!("ghost-{i}"), &body, SECRET).await;
        *answers.entry(s).or_default() += 1;
        if i % 50 == 0 {
            let (s, _, a) = post_with_retry_after(&env, "connecx", TENANT, &body, SECRET).await;
            assert_eq!(s, 202, "{a}");
        }
    }
    // One unknown tenant, again and again: remembered, one look-up at most.
    for _ in 0..50 {
        let (s, _, _) = post_with_retry_after(&env, "connecx", "ghost-0", &body, SECRET).await;
        *answers.entry(s).or_default() += 1;
    }
    let spent = metric(&env, lookups).await - before;
    let secs = started.elapsed().as_secs_f64();
    // Burst 10, then 5/s.
    assert!(
        spent <= 10.0 + 5.0 * secs.ceil() + 1.0,
        "{spent} look-ups in {secs:.1} s; answers {answers:?}"
    );
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        [401, 429],
        "{answers:?}"
    );
    env.finish().await;
}

/// A limit of zero or garbage stops the service at start-up, naming the variable, before it
/// touches NATS or PostgreSQL.
#[test]
fn bad_limit_values_fail_fast() {
    let key = accesshub_store::SecretBox::generate_spec();
    for (var, value) in [
        ("ACCESSHUB_INGEST_TENANT_RATE", "0"),
        ("ACCESSHUB_INGEST_MAX_IN_FLIGHT", "lots"),
        ("ACCESSHUB_INGEST_LOOKUP_RATE", "-1"),
        ("ACCESSHUB_INGEST_BODY_TIMEOUT", "0s"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_booking-ingest"))
            .env("ACCESSHUB_ENCRYPTION_KEY", &key)
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}={value}: {err}");
    }
}

/// Issue 23: NATS ingest gets the webhooks' limits (the same limiter). A flood of requests for
/// one tenant over NATS is refused past that tenant's budget with a reply saying when to retry,
/// while another tenant is still served.
#[tokio::test]
async fn a_nats_ingest_flood_for_one_tenant_is_refused_while_another_is_served() {
    let env = env_with_tenant_limits_and_beta().await;
    let client = env.bus.bus.client.clone();
    let subject = |tenant: &str| {
        env.bus
            .bus
            .subject(&accesshub_domain::subjects::ingest("connecx", tenant))
    };
    const FLOOD: usize = 30;
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        let (client, subject) = (client.clone(), subject(TENANT));
        let body = serde_json::to_vec(&connecx(&format!("flood-{i}"), "2025-06-20T09:15:00Z"));
        flood.spawn(async move { client.request(subject, body.unwrap().into()).await.unwrap() });
    }
    let (mut accepted, mut refused) = (0u64, 0usize);
    while let Some(reply) = flood.join_next().await {
        let reply = reply.unwrap();
        let a: Value = serde_json::from_slice(&reply.payload).unwrap();
        match a["status"].as_str() {
            Some("accepted") => accepted += 1,
            Some("rejected") => {
                refused += 1;
                assert_eq!(a["error"], "too_many_requests", "{a}");
                assert_eq!(a["scope"], "tenant", "{a}");
                let secs = a["retry_after"].as_u64().unwrap();
                assert!(secs >= 1, "{a}");
                assert_eq!(
                    a["message"],
                    format!("rate limited, retry after {secs} s"),
                    "{a}"
                );
                let header = reply.headers.as_ref().and_then(|h| h.get("Retry-After"));
                assert_eq!(
                    header.map(|v| v.as_str().to_owned()),
                    Some(secs.to_string())
                );
            }
            _ => panic!("unexpected reply {a}"),
        }
    }
    // Burst 2 at 1/s: a flood that takes seconds still gets only a few through.
    assert!(accepted >= 1, "nothing accepted");
    assert!(refused >= FLOOD - 10, "accepted {accepted} of {FLOOD}");
    // Another tenant is served meanwhile.
    let reply = client
        .request(
            subject("beta"),
            serde_json::to_vec(&connecx("b-1", "2025-06-20T09:15:00Z"))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    let b: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(b["status"], "accepted", "{b}");
    assert_eq!(env.events_written().await, accepted + 1);
    env.finish().await;
}
