//! The admin service started as its binary does: the API under `/admin/v1`, authenticated,
//! next to its own probes and metrics on one listener.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{
    AdminConfig,
    service::{self, ServiceConfig},
};
use accesshub_store::SecretBox;
use serde_json::{Value, json};

const TOKEN: &str = "admin-service-token";

#[tokio::test]
async fn admin_service_serves_the_api_probes_and_metrics() {
    accesshub_telemetry::init_for_tests();
    let (db, bus) = accesshub_testkit::isolated().await;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let cfg = ServiceConfig::for_test(
        bus.config(service::SERVICE, &db.url),
        sbox,
        AdminConfig {
            bootstrap_token: Some(TOKEN.into()),
            lookup_timeout: None,
            ..Default::default()
        },
    );
    let handle = service::start(cfg).await.unwrap();
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

    // Its own probes and metrics, unauthenticated like every service's.
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("service=\"accesshub-admin\"") && text.contains("/admin/v1/tenants"),
        "the admin requests above are counted under the admin service: {text}"
    );

    handle.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}
