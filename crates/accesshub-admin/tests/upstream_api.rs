//! Upstream API credentials at the admin API (issue 21): set (sealed), read without the
//! secret, bad input answered with the field at fault, deleted.
#![allow(clippy::unwrap_used)]

mod common;

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use serde_json::json;

const BOOT: &str = "bootstrap-admin-token-for-upstream-tests";

#[tokio::test]
async fn upstream_api_credentials_are_sealed_and_never_returned() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let state = AdminState::new(
        db.pool.clone(),
        sbox.clone(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            ..Default::default()
        },
    );
    let api = common::serve(state, BOOT).await;
    use reqwest::Method as M;
    assert_eq!(
        api.call(M::POST, "/tenants", Some(json!({"id": "acme"})))
            .await
            .0,
        201
    );
    let path = "/tenants/acme/sources/bex/api";
    let key = "bex-api-key-0123456789";

    for (body, field) in [
        (json!({"base_url": "ftp://x", "secret": key}), "base_url"),
        (
            json!({"base_url": "https://api.bookingexperts.nl", "secret": " "}),
            "secret",
        ),
        (
            json!({"base_url": "https://api.bookingexperts.nl", "secret": key, "options": 3}),
            "options",
        ),
    ] {
        let (st, b) = api.call(M::PUT, path, Some(body)).await;
        assert!(st == 400 || st == 422, "{st} {b}");
        assert_eq!(b["field"], field, "{b}");
    }
    let (st, b) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/nexudus/api",
            Some(json!({"base_url": "https://spaces.nexudus.com", "secret": "no-colon"})),
        )
        .await;
    assert_eq!(
        (st == 400 || st == 422, b["field"].as_str()),
        (true, Some("secret"))
    );
    let (st, b) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/connecx/api",
            Some(json!({"base_url": "https://x.example", "secret": "a:b"})),
        )
        .await;
    assert_eq!(b["field"], "source", "{st} {b}");

    let (st, b) = api.call(
        M::PUT,
        path,
        Some(json!({"base_url": "https://api.bookingexperts.nl", "secret": key, "options": {"lookback_days": 14}})),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["secret"], "***");
    assert!(!b.to_string().contains(key));
    let (st, b) = api.call(M::GET, path, None).await;
    assert_eq!(
        (st, b["options"]["lookback_days"].as_i64()),
        (200, Some(14))
    );
    assert!(!b.to_string().contains(key));
    // Sealed at rest, opened by the store with the key box.
    let sealed: String = sqlx::query_scalar("SELECT credentials_enc FROM upstream_credentials")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!sealed.contains(key));
    let opened = accesshub_upstreams::UpstreamStore::new(db.pool.clone(), sbox)
        .get("acme", "bex")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.secret, key);

    assert_eq!(api.call(M::DELETE, path, None).await.0, 204);
    assert_eq!(api.call(M::GET, path, None).await.0, 404);
    bus.cleanup().await;
    db.drop_db().await;
}
