//! Key requests as an API (issue 26): a signed POST answered with a request id, the outcome
//! by a bounded long-poll, a Clock-shaped variant, 400s naming the field. The worker's side
//! (what it records) is written here as the dormakaba worker writes it; the worker itself is
//! tested end to end in crates/vendors/dormakaba/tests/edge.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn signed_get(env: &Env, path: &str) -> (u16, Value) {
    let ts = chrono::Utc::now().timestamp();
    let resp = env
        .client
        .get(format!("{}{path}", env.base))
        .header("x-accesshub-timestamp", ts.to_string())
        .header(
            "x-accesshub-signature",
            booking_ingest::sign(SECRET, ts, b""),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post_keyreq(env: &Env, source: &str, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp();
    env.post_raw(
        &format!("/webhooks/{source}/{TENANT}/keyrequests"),
        bytes.clone(),
        &[
            ("content-type", "application/json".to_owned()),
            ("x-accesshub-timestamp", ts.to_string()),
            (
                "x-accesshub-signature",
                booking_ingest::sign(SECRET, ts, &bytes),
            ),
        ],
    )
    .await
}

/// What the dormakaba worker records when the keys are made.
async fn worker_records(env: &Env, id: &str, status: &str, message: &str) {
    sqlx::query(
        "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, vendor_ids, status) \
         VALUES ($1, 'dormakaba', 'keyreq', $2, 1, $3, $4)",
    )
    .bind(TENANT)
    .bind(id)
    .bind(json!({"request_id": id, "reservation_key": "4711", "message": message}))
    .bind(status)
    .execute(&env.db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_key_request_is_accepted_and_its_outcome_long_polled() {
    let env = Env::new().await;
    // Unknown reservation: nothing to make a key for.
    let (s, b) = post_keyreq(
        &env,
        "clock",
        &json!({"booking_id": 4711, "key_type": "new", "encoder_id": "1"}),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    // The reservation arrives from Clock; the desk asks for two cards on encoder 1.
    let (s, b) = env
        .post("clock", &clock(4711, "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = post_keyreq(
        &env,
        "clock",
        &json!({"booking_id": 4711, "key_type": "new", "encoder_id": "1", "keys": 2, "user": "anna"}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let id = b["request_id"].as_str().unwrap().to_owned();
    assert_eq!(b["status"], "pending");
    // Published as a key-request event for the reservation, at its Clock site.
    let msgs = env.messages(2).await;
    let ev: Value = serde_json::from_slice(&msgs[1].payload).unwrap();
    assert_eq!(ev["kind"], "keyreq", "{ev}");
    assert_eq!(ev["booking_key"], id.as_str());
    assert_eq!(ev["payload"]["reservation_key"], "4711");
    assert_eq!(ev["payload"]["action"], "new_key");
    assert_eq!(ev["payload"]["key_count"], 2);
    assert_eq!(
        ev["site"],
        clock(4711, "x")["booking"]["account_id"].to_string()
    );

    // Not done yet: without wait, the answer is immediate.
    let path = format!("/webhooks/clock/{TENANT}/keyrequests/{id}");
    let (s, b) = signed_get(&env, &path).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("pending")), "{b}");
    // The long-poll returns as soon as the worker records the outcome.
    let started = Instant::now();
    let waiting = format!("{path}?wait=10");
    let poll = signed_get(&env, &waiting);
    let record = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        worker_records(
            &env,
            &id,
            "encoded",
            "key ready: 2 card(s) encoded on encoder 1",
        )
        .await;
    };
    let ((s, b), ()) = tokio::join!(poll, record);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "encoded");
    assert_eq!(b["final"], true);
    assert_eq!(b["message"], "key ready: 2 card(s) encoded on encoder 1");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn bad_key_requests_name_the_field_and_unsigned_ones_are_refused() {
    let env = Env::new().await;
    let (s, b) = post_keyreq(
        &env,
        "native",
        &json!({"reservation_key": "R1", "action": "new_key", "site": "hotel"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains("encoder"), "{b}");
    let (s, b) = post_keyreq(
        &env,
        "native",
        &json!({"reservation_key": "R1", "action": "new_key", "encoder": "1", "key_count": 50, "site": "hotel"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains("key_count"), "{b}");
    let (s, b) = post_keyreq(
        &env,
        "native",
        &json!({"reservation_key": "R1", "action": "teleport", "encoder": "1", "site": "hotel"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // A mobile key needs no encoder.
    let (s, b) = post_keyreq(
        &env,
        "native",
        &json!({"reservation_key": "R1", "action": "mobile_key", "site": "hotel"}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    // Unsigned: 401; unknown request: 404; unknown source: 404.
    let (s, _) = env
        .post_raw(
            &format!("/webhooks/native/{TENANT}/keyrequests"),
            b"{}".to_vec(),
            &[("content-type", "application/json".to_owned())],
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = signed_get(
        &env,
        &format!(
            "/webhooks/native/{TENANT}/keyrequests/{}",
            uuid::Uuid::now_v7()
        ),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = post_keyreq(&env, "nope", &json!({})).await;
    assert_eq!(s, 404);
    env.finish().await;
}
