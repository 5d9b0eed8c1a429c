//! Webhook-secret hygiene at the admin API (review L3): a minimum length, and every change
//! reported to an in-process listener (booking-ingest's cache when both run together).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use serde_json::json;

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

const BOOT: &str = "bootstrap-admin-token-for-secret-tests";

#[tokio::test]
async fn short_secrets_are_refused_and_changes_reach_the_listener() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            ..Default::default()
        },
    )
    .with_source_listener(Arc::new(move |t: &str, s: Option<&str>| {
        record
            .lock()
            .unwrap()
            .push((t.to_owned(), s.map(str::to_owned)));
    }));
    let api = common::serve(state, BOOT).await;
    use reqwest::Method as M;
    assert_eq!(
        api.call(M::POST, "/tenants", Some(json!({"id": "acme"})))
            .await
            .0,
        201
    );
    let path = "/tenants/acme/sources/bex/secret";
    // The review's case: {"secret": "a"} used to answer 200.
    for short in ["a", "0123456789abcdef0123456789abcde"] {
        let (st, b) = api.call(M::PUT, path, Some(json!({"secret": short}))).await;
        assert_eq!(st, 400, "{b}");
        assert_eq!(b["field"], "secret");
        assert!(short.len() == 1 || !b.to_string().contains(short), "{b}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing stored, nothing announced"
    );
    let long = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        api.call(M::PUT, path, Some(json!({"secret": long})))
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(M::POST, "/tenants/acme/sources/bex/rotate", None)
            .await
            .0,
        200
    );
    assert_eq!(api.call(M::DELETE, "/tenants/acme", None).await.0 / 100, 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("acme".to_owned(), Some("bex".to_owned())),
            ("acme".to_owned(), Some("bex".to_owned())),
            ("acme".to_owned(), None),
        ]
    );
    bus.cleanup().await;
    db.drop_db().await;
}
