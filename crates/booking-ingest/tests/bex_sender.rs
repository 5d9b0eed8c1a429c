//! BEX App webhooks as BEX sends them (issue 21): the JSON:API reservation resource in
//! `record.data` with the API's attribute names, pipe event names, `X-BE-Signature:
//! sha1=<HMAC-SHA1 of the body>` keyed with the App's client secret, answered 200; an action
//! accesshub does not act on is answered 2xx `ignored` and counted, never a 4xx.

#![allow(clippy::unwrap_used)]

mod common;

use accesshub_domain::{Event, EventBody, ReservationStatus};
use common::*;
use serde_json::{Value, json};

fn bex_app(event: &str, id: &str, updated_at: &str) -> Value {
    json!({
        "event": event,
        "subscription_id": "sub-9",
        "context": "administration",
        "context_id": 12,
        "record": {"data": {
            "id": id, "type": "reservation",
            "attributes": {
                "booking_nr": "BX-2030-1", "start_date": "2030-07-14", "end_date": "2030-07-18",
                "state": "confirmed", "last_name": "Jansen", "created_at": "2030-06-01T08:00:00Z",
                "updated_at": updated_at, "license_plates": ["AB-123-C"]
            },
            "relationships": {"administration": {"data": {"id": "12", "type": "administration"}}}
        }},
        "event_metadata": {"changes": {"state": [null, "confirmed"]}}
    })
}

async fn post_bex(env: &Env, body: &Value, secret: &str) -> (u16, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = booking_ingest::auth::sign_bex(secret, &raw);
    env.post_raw(
        &format!("/webhooks/bex/{TENANT}"),
        raw,
        &[
            ("content-type", "application/json".to_owned()),
            ("x-be-signature", sig),
        ],
    )
    .await
}

async fn stored(env: &Env, key: &str) -> Option<Event> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT payload::text FROM bookings WHERE kind = 'reservation' AND booking_key = $1",
    )
    .bind(key)
    .fetch_optional(&env.db.pool)
    .await
    .unwrap();
    row.map(|(p,)| serde_json::from_str(&p).unwrap())
}

#[tokio::test]
async fn a_signed_reservation_confirmed_is_answered_200_and_applied() {
    let env = Env::new().await;
    let (status, answer) = post_bex(
        &env,
        &bex_app("reservation|confirmed", "9001", "2030-06-01T08:00:00Z"),
        SECRET,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    let ev = stored(&env, "9001").await.expect("stored");
    assert_eq!(ev.site, "12");
    let EventBody::Reservation(r) = &ev.body else {
        panic!("{ev:?}")
    };
    assert_eq!(r.status, ReservationStatus::Confirmed);
    assert_eq!(r.guest.name, "Jansen");
    assert_eq!(r.license_plates, vec!["AB-123-C".to_owned()]);
    // Site 12's defaults (16:00 local) apply to the API's dates.
    assert_eq!(r.check_in_time.to_string(), "16:00:00");
    // It reached JetStream like any delivery.
    let msgs = env.messages(1).await;
    assert_eq!(msgs.len(), 1);

    // The colon spelling and `|moved` are the same reservation events.
    let (status, answer) = post_bex(
        &env,
        &bex_app("reservation:moved", "9001", "2030-06-02T08:00:00Z"),
        SECRET,
    )
    .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));

    // A wrong secret or a changed body: 401, nothing stored.
    let (status, answer) = post_bex(
        &env,
        &bex_app("reservation|confirmed", "9002", "2030-06-01T08:00:00Z"),
        "not-the-client-secret",
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["reason"], "signature_mismatch");
    let (status, answer) = env
        .post_raw(
            &format!("/webhooks/bex/{TENANT}"),
            b"{}".to_vec(),
            &[
                ("content-type", "application/json".to_owned()),
                ("x-be-signature", "sha1=abc".to_owned()),
            ],
        )
        .await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert!(stored(&env, "9002").await.is_none());
    env.finish().await;
}

#[tokio::test]
async fn an_unsupported_action_is_answered_2xx_ignored_and_counted() {
    let env = Env::new().await;
    for event in ["reservation|option_expired", "invoice|created"] {
        let (status, answer) = post_bex(
            &env,
            &bex_app(event, "9100", "2030-06-01T08:00:00Z"),
            SECRET,
        )
        .await;
        assert_eq!(status, 200, "{event}: {answer}");
        assert_eq!(answer["status"], "ignored", "{answer}");
        assert!(
            answer["reason"]
                .as_str()
                .unwrap()
                .starts_with("unsupported_")
        );
    }
    assert!(stored(&env, "9100").await.is_none());
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(
            "accesshub_ingest_ignored_total{source=\"bex\",reason=\"unsupported_event\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"unsupported_resource\"} 1"),
        "{metrics}"
    );
    env.finish().await;
}

/// Install per organization on webhooks too (issue 21 item 4): a tenant tied to its BEX
/// organization does not apply a webhook that names another one (`context: organization`,
/// `context_id`) — answered 200 `ignored` (`foreign_organization`) and counted, nothing
/// stored — while its own organization's webhook is applied.
#[tokio::test]
async fn a_webhook_of_another_organization_is_ignored_not_applied() {
    let env = Env::new().await;
    accesshub_connections::TenantStore::new(env.db.pool.clone(), env.sbox.clone())
        .on_source_change(env.handle.as_ref().unwrap().sources().change_listener())
        .set_organization(TENANT, "bex", Some("org-1"))
        .await
        .unwrap()
        .unwrap();
    let of = |org: &str, updated_at: &str| {
        let mut body = bex_app("reservation|confirmed", "9200", updated_at);
        body["context"] = json!("organization");
        body["context_id"] = json!(org);
        body
    };

    let (status, answer) = post_bex(&env, &of("org-2", "2030-06-01T08:00:00Z"), SECRET).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored", "{answer}");
    assert_eq!(answer["reason"], "foreign_organization", "{answer}");
    assert!(stored(&env, "9200").await.is_none(), "not applied");
    assert_eq!(
        env.count("ingest_ignored").await,
        0,
        "not kept for re-admission"
    );
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(
            "accesshub_ingest_ignored_total{source=\"bex\",reason=\"foreign_organization\"} 1"
        ),
        "{metrics}"
    );

    // The tenant's own organization: applied.
    let (status, answer) = post_bex(&env, &of("org-1", "2030-06-01T09:00:00Z"), SECRET).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    assert!(stored(&env, "9200").await.is_some());
    env.finish().await;
}
