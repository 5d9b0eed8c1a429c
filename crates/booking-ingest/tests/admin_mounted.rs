//! booking-ingest started with the admin API mounted, as its binary does: the admin routes
//! answer on the same port as the webhooks, authenticated.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use booking_ingest::IngestConfig;
use serde_json::{Value, json};

const TOKEN: &str = "ingest-mounted-admin-token";

#[tokio::test]
async fn admin_api_is_served_next_to_the_webhooks() {
    accesshub_telemetry::init_for_tests();
    let (db, bus) = accesshub_testkit::isolated().await;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let mut cfg = IngestConfig::for_test(bus.config("booking-ingest", &db.url), sbox.clone());
    cfg.extra_routes = Some(accesshub_admin::mounted(AdminState::new(
        db.pool.clone(),
        sbox,
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(TOKEN.into()),
            lookup_timeout: None,
        },
    )));
    let handle = booking_ingest::start(cfg).await.unwrap();
    let base = format!("http://{}", handle.addr());
    let http = reqwest::Client::new();

    // No token: 401, so the mount is authenticated.
    let r = http
        .get(format!("{base}/admin/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = http
        .post(format!("{base}/admin/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"id": "demo", "name": "Demo Hotels"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = http
        .get(format!("{base}/admin/v1/tenants"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list[0]["id"], "demo");
    assert_eq!(list[0]["name"], "Demo Hotels");

    // The service's own routes are still there.
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    handle.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}
