//! Encryption keys at ingest, over real HTTP: a webhook secret no configured key opens is our
//! configuration error (503, an operator log line, a metric), not the sender's (401); and a
//! secret changed in this process takes effect at once (review M14, L3). Its own test binary,
//! because it installs the global log subscriber.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use accesshub_connections::{Secret, TenantStore};
use accesshub_store::SecretBox;
use common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            capture
        })
        .clone()
}

async fn post_with(env: &Env, secret: &str, id: &str) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(&connecx(id, "2025-06-20T09:15:00Z")).unwrap();
    let ts = chrono::Utc::now().timestamp();
    env.post_raw(
        &format!("/webhooks/connecx/{TENANT}"),
        body.clone(),
        &[
            ("content-type", "application/json".to_owned()),
            ("x-accesshub-timestamp", ts.to_string()),
            (
                "x-accesshub-signature",
                booking_ingest::sign(secret, ts, &body),
            ),
        ],
    )
    .await
}

/// The review's case: registered under key k1, the service restarted with another key only.
/// It used to answer 401 (which a PMS may treat as final, dropping the booking) and log at
/// most a line without the key id.
#[tokio::test]
async fn a_secret_no_configured_key_opens_answers_503_with_a_log_and_a_metric() {
    let logs = capture_logs();
    let other = SecretBox::generate_spec().replace("k1:", "k2:");
    let env = Env::with(|cfg| cfg.secrets = SecretBox::from_spec(&other).unwrap()).await;
    let (status, body) = post_with(&env, SECRET, "a").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    // Not cached as "unknown": the next delivery tries again (and fails the same way).
    assert_eq!(post_with(&env, SECRET, "b").await.0, 503);
    assert_eq!(env.count("outbox").await + env.count("bookings").await, 0);

    let metrics = env
        .client
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"accesshub_secret_decrypt_failures_total{component="booking-ingest"} 2"#),
        "{metrics}"
    );
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("webhook secret cannot be decrypted"))
        .unwrap_or_else(|| panic!("no operator log line in {logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("key_id=\"k1\"") || line.contains("key_id=k1"),
        "{line}"
    );
    assert!(line.contains("connecx") && line.contains(TENANT), "{line}");
    assert!(!logs.contains(SECRET), "the secret is in the logs");
    env.finish().await;
}

/// L3: a secret set (or rotated with no grace) in this process is refused at once, not served
/// from the cache for its ttl (30 s).
#[tokio::test]
async fn a_secret_changed_in_this_process_takes_effect_at_once() {
    // The capturing subscriber must be the global one whichever test starts first (Env::new
    // installs the test subscriber when none is set, and the capture's init would then panic).
    let _ = capture_logs();
    let env = Env::new().await;
    assert_eq!(post_with(&env, SECRET, "a").await.0, 202, "cached now");
    let handle = env.handle.as_ref().unwrap();
    let tenants = TenantStore::new(env.db.pool.clone(), env.sbox.clone())
        .on_source_change(handle.sources().change_listener());
    let new = "a-brand-new-webhook-secret-0123456789";
    tenants
        .set_source_secret(TENANT, "connecx", Some(Secret::new(new)), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        post_with(&env, SECRET, "b").await.0,
        401,
        "old secret revoked"
    );
    assert_eq!(post_with(&env, new, "c").await.0, 202);
    // Deleting the tenant forgets every source of it.
    tenants.delete(TENANT).await.unwrap();
    assert_eq!(post_with(&env, new, "d").await.0, 401);
    env.finish().await;
}
