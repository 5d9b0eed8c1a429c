//! Nexudus webhooks as Nexudus sends them (issue 21): a bare `[dto]` array signed with
//! `X-Nexudus-Hook-Signature` (uppercase hex HMAC-SHA256 of the body). A coworker change asks
//! the tenant's Tapkey connections to re-read Nexudus (a queued sync run); any other entity is
//! answered 200 `ignored`, never a non-2xx that would make Nexudus disable the webhook.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use accesshub_connections::{Connection, ConnectionStore, Secret, TapkeySettings, VendorSettings};
use common::*;
use serde_json::{Value, json};

async fn post_nexudus(env: &Env, body: &Value, signature: String) -> (u16, Value) {
    env.post_raw(
        &format!("/webhooks/nexudus/{TENANT}"),
        serde_json::to_vec(body).unwrap(),
        &[
            ("content-type", "application/json".to_owned()),
            ("x-nexudus-hook-signature", signature),
        ],
    )
    .await
}

fn sign(body: &Value, secret: &str) -> String {
    booking_ingest::auth::sign_nexudus(secret, &serde_json::to_vec(body).unwrap())
}

#[tokio::test]
async fn a_signed_coworker_change_queues_a_re_read_and_other_entities_are_ignored() {
    let env = Env::new().await;
    ConnectionStore::new(env.db.pool.clone(), env.sbox.clone())
        .upsert(&Connection {
            tenant: TENANT.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Tapkey(TapkeySettings {
                authority_url: "https://login.tapkey.com".into(),
                base_url: "https://my.tapkey.com".into(),
                client_id: "c".into(),
                client_secret: Secret::new("s"),
                owner_account_id: "o".into(),
                pass_types: BTreeMap::new(),
            }),
            version: 0,
        })
        .await
        .unwrap();
    let coworker = json!([{"Id": 101, "FullName": "Ana Alves", "Email": "ana.new@example.com"}]);

    let (status, answer) = post_nexudus(&env, &coworker, sign(&coworker, SECRET)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let queued: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT vendor, scope, requested_by FROM sync_runs WHERE tenant_id = $1 AND status = 'queued'",
    )
    .bind(TENANT)
    .fetch_all(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        (queued[0].0.as_str(), queued[0].1.as_str()),
        ("tapkey", "active")
    );
    assert!(queued[0].2.contains("101"), "{queued:?}");

    // Anything else (a checkin, say) is ignored with a 200.
    let checkin = json!([{"Id": 9, "CoworkerId": 101, "FromTime": "2030-01-01T09:00:00"}]);
    let (status, answer) = post_nexudus(&env, &checkin, sign(&checkin, SECRET)).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );

    // The signature is Nexudus's: uppercase hex of the body's HMAC-SHA256 with the secret.
    let (status, answer) =
        post_nexudus(&env, &coworker, sign(&coworker, SECRET).to_lowercase()).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("invalid_signature"))
    );
    let (status, answer) = post_nexudus(&env, &coworker, sign(&coworker, "wrong")).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("signature_mismatch"))
    );
    // Not the [dto] shape: 400 naming the body.
    let obj = json!({"Id": 101});
    let (status, answer) = post_nexudus(&env, &obj, sign(&obj, SECRET)).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("$")),
        "{answer}"
    );
    env.finish().await;
}
