//! Ingest hardening (issue 23 item 5): authentication from the headers before the body is
//! read, checked timestamp arithmetic, and an `Idempotency-Key` bound to the signed content.
//! Real HTTP against the in-process service, real NATS and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn addr(env: &Env) -> std::net::SocketAddr {
    env.handle.as_ref().unwrap().addr()
}

/// A request that declares a 1,000-byte body and sends 10 bytes of it: the server can only
/// answer if it decides from the headers.
fn head_of(tenant: &str, extra: &[(&str, String)]) -> String {
    let mut h = format!(
        "POST /webhooks/connecx/{tenant} HTTP/1.1\r\nHost: ingest\r\n\
         Content-Type: application/json\r\nContent-Length: 1000"
    );
    for (k, v) in extra {
        h.push_str(&format!("\r\n{k}: {v}"));
    }
    h
}

#[tokio::test]
async fn bad_signature_headers_and_unknown_tenants_are_refused_before_the_body() {
    let env = Env::new().await;
    let now = chrono::Utc::now().timestamp();
    let good_ts = ("X-Accesshub-Timestamp", now.to_string());
    let some_sig = (
        "X-Accesshub-Signature",
        booking_ingest::sign(SECRET, now, b"{}"),
    );
    /// Tenant, headers, expected reason.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "nobody",
            vec![good_ts.clone(), some_sig.clone()],
            "signature_mismatch",
        ),
        (TENANT, vec![], "missing_timestamp"),
        (TENANT, vec![good_ts.clone()], "missing_signature"),
        (
            TENANT,
            vec![
                good_ts.clone(),
                ("X-Accesshub-Signature", "sha256=nothex".into()),
            ],
            "invalid_signature",
        ),
        (
            TENANT,
            vec![
                ("X-Accesshub-Timestamp", (now - 3_600).to_string()),
                some_sig.clone(),
            ],
            "stale_timestamp",
        ),
        (
            TENANT,
            vec![("X-Accesshub-Timestamp", "yesterday".into()), some_sig],
            "invalid_timestamp",
        ),
    ];
    for (tenant, headers, reason) in cases {
        let answer = raw_request(
            addr(&env),
            &head_of(tenant, &headers),
            b"{\"booking",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(
            answer,
            Some((401, json!({"error": "unauthorized", "reason": reason}))),
            "{tenant} {headers:?}: the server waited for the body"
        );
    }
    // Headers that pass, then a chunked body (no Content-Length to refuse up front) over the
    // 1 MiB limit: 413 once the limit is reached.
    let big = vec![b'a'; 1024 * 1024 + 10];
    let head = format!(
        "POST /webhooks/connecx/{TENANT} HTTP/1.1\r\nHost: ingest\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         X-Accesshub-Timestamp: {now}\r\nX-Accesshub-Signature: {}",
        booking_ingest::sign(SECRET, now, &big)
    );
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_request(addr(&env), &head, &chunked, Duration::from_secs(10)).await;
    assert_eq!(answer.map(|a| a.0), Some(413));
    for t in ["bookings", "outbox", "ingest_receipts"] {
        assert_eq!(env.count(t).await, 0, "{t}");
    }
    env.finish().await;
}

/// `now - ts` overflowed: a panic in the handler (debug builds: the connection dropped) or,
/// in release builds, a wrap into the replay window.
#[tokio::test]
async fn extreme_timestamps_are_refused_with_a_reason() {
    let env = Env::new().await;
    let body = serde_json::to_vec(&connecx("cx-1", "2025-06-20T09:15:00Z")).unwrap();
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("x-accesshub-timestamp", ts.to_string()),
            (
                "x-accesshub-signature",
                booking_ingest::sign(SECRET, ts, &body),
            ),
        ];
        let path = format!("/webhooks/connecx/{TENANT}");
        let (s, a) = env.post_raw(&path, body.clone(), &headers).await;
        assert_eq!(
            (s, a),
            (
                401,
                json!({"error": "unauthorized", "reason": "stale_timestamp"})
            ),
            "ts {ts}"
        );
    }
    // The service is still up and serving.
    let (s, a) = env.post_signed("connecx", TENANT, body, &[]).await;
    assert_eq!((s, a["status"].as_str()), (202, Some("accepted")), "{a}");
    env.finish().await;
}

/// The `Idempotency-Key` is not signed. A captured delivery replayed within the replay window
/// under the sender's *next* key used to claim that key's receipt, so the sender's real next
/// delivery was answered as a repeat and its event never written.
#[tokio::test]
async fn a_replay_under_another_idempotency_key_neither_creates_nor_suppresses_events() {
    let env = Env::new().await;
    let b1 = serde_json::to_vec(&connecx("cx-7", "2025-06-20T09:15:00Z")).unwrap();
    let b2 = serde_json::to_vec(&connecx("cx-7", "2025-06-20T10:15:00Z")).unwrap();
    let key = |k: &str| [("idempotency-key", k.to_owned())];
    let (s, a) = env
        .post_signed("connecx", TENANT, b1.clone(), &key("d-1"))
        .await;
    assert_eq!((s, a["status"].as_str()), (202, Some("accepted")), "{a}");
    // The attacker replays the captured body under the key the sender will use next.
    let (s, a) = env
        .post_signed("connecx", TENANT, b1.clone(), &key("d-2"))
        .await;
    assert_eq!((s, a["status"].as_str()), (202, Some("superseded")), "{a}");
    // The sender's next delivery with that key is a new delivery, not a repeat.
    let (s, a) = env
        .post_signed("connecx", TENANT, b2.clone(), &key("d-2"))
        .await;
    assert_eq!((s, a["status"].as_str()), (202, Some("accepted")), "{a}");
    // A real retry (same key, same body) still gets its first answer.
    let (s, again) = env
        .post_signed("connecx", TENANT, b2.clone(), &key("d-2"))
        .await;
    assert_eq!((s, &again), (202, &a));
    // A key reused with another body is judged on that body (equal revision: superseded).
    let (s, a) = env.post_signed("connecx", TENANT, b2, &key("d-1")).await;
    assert_eq!((s, a["status"].as_str()), (202, Some("superseded")), "{a}");
    assert_eq!(env.events_written().await, 2);
    env.finish().await;
}
