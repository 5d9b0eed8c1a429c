//! Captures every log line (TRACE, all targets: axum, sqlx, ours) while connections with a
//! distinctive secret are applied, dry-run, rejected and read, and proves the secret appears
//! neither in the logs, nor in any response, nor in clear in the database.
//! Its own test binary, because it installs the global subscriber.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use serde_json::json;

const SECRET: &str = "Zq9-DISTINCTIVE-secret-4711-0123456789";
const BOOT: &str = "bootstrap-admin-token-no-logs";

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

#[tokio::test]
async fn secrets_are_never_logged_returned_or_stored_in_clear() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let (db, bus) = accesshub_testkit::isolated().await;
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            lookup_timeout: None,
            ..Default::default()
        },
    )
    .with_egress(accesshub_connections::EgressPolicy::loopback_http());
    tracing::info!(config = ?AdminConfig { bootstrap_token: Some(BOOT.into()), lookup_timeout: None, ..Default::default() }, "config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/admin/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    let http = reqwest::Client::new();
    let mut responses = String::new();

    let r = http
        .post(format!("{base}/tenants"))
        .bearer_auth(BOOT)
        .json(&json!({"id": "acme"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let conn = |secret: &str, base_url: &str| {
        json!({
            "tenant": "acme",
            "settings": {
                "vendor": "cloudpass", "base_url": base_url, "client_id": "api-user",
                "client_secret": secret, "default_time_restriction_id": "tr-1",
                "administrations": {"adm-1": {"site_id": "site-1"}}
            }
        })
    };
    let url = format!("{base}/connections/acme/cloudpass/default");
    for (body, q) in [
        (conn(SECRET, "http://127.0.0.1:1"), ""), // create
        (conn(SECRET, "http://127.0.0.1:1"), ""), // unchanged
        (
            conn(&format!("{SECRET}-2"), "http://127.0.0.1:2"),
            "?dry_run=true",
        ), // dry run
        (conn(SECRET, "not a url"), ""),          // 422
        (conn(&format!("{SECRET}-3"), "http://127.0.0.1:3"), ""), // update
    ] {
        let r = http
            .put(format!("{url}{q}"))
            .bearer_auth(BOOT)
            .json(&body)
            .send()
            .await
            .unwrap();
        responses.push_str(&r.text().await.unwrap());
    }
    // A body that does not parse, with the secret in a wrongly typed field.
    let mut bad = conn(SECRET, "http://127.0.0.1:1");
    bad["settings"]["window_before_minutes"] = json!(SECRET);
    let r = http
        .put(&url)
        .bearer_auth(BOOT)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    responses.push_str(&r.text().await.unwrap());
    for path in ["/connections", "/connections/acme/cloudpass/default"] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(BOOT)
            .send()
            .await
            .unwrap();
        responses.push_str(&r.text().await.unwrap());
    }
    // A webhook secret too.
    let r = http
        .put(format!("{base}/tenants/acme/sources/bex/secret"))
        .bearer_auth(BOOT)
        .json(&json!({"secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    responses.push_str(&r.text().await.unwrap());

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("connection stored"),
        "log capture works: {logs}"
    );
    assert!(!logs.contains("DISTINCTIVE"), "secret in logs:\n{logs}");
    assert!(!logs.contains(BOOT), "bootstrap token in logs");
    assert!(
        !responses.contains("DISTINCTIVE"),
        "secret in a response: {responses}"
    );
    assert!(responses.contains("***"));

    // The database holds it only sealed: search every text column of both tables.
    let dump: String =
        sqlx::query_scalar("SELECT coalesce(string_agg(c::text, ' '), '') FROM connections c")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let sources: String =
        sqlx::query_scalar("SELECT coalesce(string_agg(s::text, ' '), '') FROM tenant_sources s")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        dump.contains("v2:k1:") && !dump.contains("DISTINCTIVE"),
        "{dump}"
    );
    assert!(!sources.contains("DISTINCTIVE"));

    bus.cleanup().await;
    db.drop_db().await;
}
