//! A stored secret that no configured key opens (a key removed before every row was
//! resealed) is the operator's to fix, whichever service meets it first: the admin API counts
//! it in `accesshub_secret_decrypt_failures_total{component="accesshub-admin"}` and logs an
//! operator-facing line naming the row and key id, never the secret (issue 23 item 4). Its own
//! test binary, because it installs the global log subscriber.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{
    AdminConfig,
    service::{self, ServiceConfig},
};
use accesshub_connections::{Connection, ConnectionStore, EgressPolicy, TenantStore};
use accesshub_store::SecretBox;

const TOKEN: &str = "admin-decrypt-token";
const SECRET: &str = "tapkey-S3cret-never-logged-91c";

#[tokio::test]
async fn a_connection_no_configured_key_opens_is_counted_and_logged_without_the_secret() {
    let capture = accesshub_testkit::logs::capture_logs(tracing::Level::INFO);
    let (db, bus) = accesshub_testkit::isolated().await;
    // Stored under key k1 ...
    let k1 = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), k1.clone())
        .create("acme", "Acme Hotels")
        .await
        .unwrap();
    let conn: Connection = serde_json::from_value(serde_json::json!({
        "tenant": "acme",
        "settings": {
            "vendor": "tapkey",
            "base_url": "http://127.0.0.1:9",
            "authority_url": "http://127.0.0.1:9",
            "client_id": "acme-client",
            "client_secret": SECRET,
            "owner_account_id": "owner-1"
        }
    }))
    .unwrap();
    ConnectionStore::new(db.pool.clone(), k1)
        .with_egress(EgressPolicy::loopback_http())
        .upsert(&conn)
        .await
        .unwrap();
    // ... the service runs with k2 only.
    let k2 = SecretBox::from_spec(&SecretBox::generate_spec().replace("k1:", "k2:")).unwrap();
    let cfg = ServiceConfig::for_test(
        bus.config(service::SERVICE, &db.url),
        k2,
        AdminConfig {
            bootstrap_token: Some(TOKEN.into()),
            lookup_timeout: None,
            ..Default::default()
        },
    );
    let handle = service::start(cfg).await.unwrap();
    let base = format!("http://{}", handle.addr());
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{base}/admin/v1/connections/acme/tapkey/default"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"accesshub_secret_decrypt_failures_total{component="accesshub-admin"} 1"#),
        "{metrics}"
    );
    let logs = capture.text();
    let line = logs
        .lines()
        .find(|l| l.contains("stored secret cannot be decrypted with the configured keys"))
        .unwrap_or_else(|| panic!("no operator log line in {logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("connection acme/tapkey/default"), "{line}");
    assert!(line.contains("k1") && line.contains("k2"), "{line}");
    assert!(!logs.contains(SECRET), "the secret is in the logs");

    handle.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}
