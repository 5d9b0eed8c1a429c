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

/// The POSTs a [`Receiver`] got: headers and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A local receiver of callbacks: records every POST (signature headers and body) and answers
/// with the next status of `answers` (200 once they run out).
struct Receiver {
    url: String,
    got: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(answers: Vec<u16>) -> Receiver {
        use axum::{extract::State, http::StatusCode, routing::post};
        type Shared = (Received, std::sync::Arc<std::sync::Mutex<Vec<u16>>>);
        let got: Received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answers = std::sync::Arc::new(std::sync::Mutex::new(answers));
        let app = axum::Router::new()
            .route(
                "/desk/outcome",
                post(
                    |State((got, answers)): State<Shared>,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        got.lock().unwrap().push((headers, body.to_vec()));
                        let mut a = answers.lock().unwrap();
                        let code = if a.is_empty() { 200 } else { a.remove(0) };
                        StatusCode::from_u16(code).unwrap()
                    },
                ),
            )
            .with_state((got.clone(), answers));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/desk/outcome", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, got, task }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "{} callback(s), wanted {n}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Callbacks polled every 50 ms and retried 3 times after 100–200 ms.
fn fast_callbacks(c: &mut booking_ingest::IngestConfig) {
    c.callbacks.poll = Duration::from_millis(50);
    c.callbacks.policy = accesshub_retry::RetryPolicy::limited(
        accesshub_retry::Backoff::new(Duration::from_millis(100), Duration::from_millis(200)),
        3,
    );
}

/// Attempts made and whether the callback of request `id` was delivered.
async fn callback_progress(env: &Env, id: &str) -> (i32, bool) {
    sqlx::query_as(
        "SELECT attempts, delivered_at IS NOT NULL FROM keyreq_callbacks WHERE request_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&env.db.pool)
    .await
    .unwrap()
}

/// Issue 26 item 2: the caller gives a callback URL; once the worker records the final
/// outcome, accesshub POSTs it there exactly once, signed with the source's webhook secret as
/// senders sign towards us (checked here with the same function a sender uses), and a
/// receiver's 5xx is retried with backoff.
#[tokio::test]
async fn the_outcome_is_called_back_once_signed_and_retried_after_a_5xx() {
    let env = Env::with(fast_callbacks).await;
    let (s, b) = env
        .post("clock", &clock(4711, "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(s, 202, "{b}");
    let receiver = Receiver::start(vec![]).await;
    let (s, b) = post_keyreq(
        &env,
        "clock",
        &json!({"booking_id": 4711, "key_type": "mobile", "mobile_phone": "+44 7700 900123",
                "callback_url": receiver.url}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let id = b["request_id"].as_str().unwrap().to_owned();
    // The number entered at the desk travels in the event, with the mobile-key flag.
    let msgs = env.messages(2).await;
    let ev: Value = serde_json::from_slice(&msgs[1].payload).unwrap();
    assert_eq!(ev["payload"]["mobile_phone"], "+44 7700 900123", "{ev}");
    assert_eq!(ev["payload"]["mobile_key"], true, "{ev}");
    // Nothing is called back before the outcome is final.
    worker_records(&env, &id, "in_flight", "").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.count(), 0);
    sqlx::query("UPDATE bindings SET status = 'sent', vendor_ids = $2 WHERE booking_key = $1")
        .bind(&id)
        .bind(json!({"request_id": id, "reservation_key": "4711", "message": "mobile key sent to +44***23"}))
        .execute(&env.db.pool)
        .await
        .unwrap();
    receiver.wait_for(1).await;
    // Exactly once: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.count(), 1);
    let (headers, body) = receiver.got.lock().unwrap()[0].clone();
    let ts: i64 = headers["x-accesshub-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        headers["x-accesshub-signature"].to_str().unwrap(),
        booking_ingest::sign(SECRET, ts, &body),
        "signed with the source's webhook secret"
    );
    assert_eq!(headers["idempotency-key"].to_str().unwrap(), id);
    let outcome: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outcome["request_id"], id.as_str());
    assert_eq!(outcome["status"], "sent");
    assert_eq!(outcome["final"], true);
    assert_eq!(outcome["message"], "mobile key sent to +44***23");
    assert_eq!(callback_progress(&env, &id).await, (1, true));

    // A receiver that answers 503 twice gets the outcome on the third attempt, then no more.
    let flaky = Receiver::start(vec![503, 503]).await;
    let (s, b) = post_keyreq(
        &env,
        "clock",
        &json!({"booking_id": 4711, "key_type": "new", "encoder_id": "1",
                "callback_url": flaky.url}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let id2 = b["request_id"].as_str().unwrap().to_owned();
    worker_records(
        &env,
        &id2,
        "encoded",
        "key ready: 1 card(s) encoded on encoder 1",
    )
    .await;
    flaky.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(flaky.count(), 3);
    assert_eq!(callback_progress(&env, &id2).await, (3, true));
    receiver.task.abort();
    flaky.task.abort();
    env.finish().await;
}

/// A callback URL the egress policy refuses (the cloud metadata address, a scheme other than
/// http(s), credentials in the URL) is a 400 naming `callback_url`, and nothing is stored.
#[tokio::test]
async fn a_refused_callback_url_is_a_400_naming_the_field() {
    let env = Env::new().await;
    let (s, b) = env
        .post("clock", &clock(4711, "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(s, 202, "{b}");
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/outcome",
        "ftp://127.0.0.1/outcome",
        "http://desk:secret@127.0.0.1:9/outcome",
        "not a url",
    ] {
        let (s, b) = post_keyreq(
            &env,
            "clock",
            &json!({"booking_id": 4711, "key_type": "new", "encoder_id": "1", "callback_url": url}),
        )
        .await;
        assert_eq!(s, 400, "{url}: {b}");
        assert!(b.to_string().contains("callback_url"), "{url}: {b}");
    }
    assert_eq!(env.count("keyreq_callbacks").await, 0);
    // A number the lock system could never dial is a 422 naming the field, not echoing it.
    let (s, b) = post_keyreq(
        &env,
        "clock",
        &json!({"booking_id": 4711, "key_type": "mobile", "mobile_phone": "call 0612"}),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b.to_string().contains("mobile_phone") && !b.to_string().contains("0612"),
        "{b}"
    );
    env.finish().await;
}

/// Issue 26 item 3: key requests are authenticated the sender's own way, as its webhooks are:
/// BEX's `X-BE-Signature` (HMAC-SHA1 of the body; of the empty body for the GET), and Clock's
/// token once the operator chose token authentication (refused before that choice).
#[tokio::test]
async fn key_requests_are_authenticated_the_senders_own_way() {
    let env = Env::new().await;
    let path = format!("/webhooks/bex/{TENANT}/keyrequests");
    let body =
        serde_json::to_vec(&json!({"reservation_key": "R1", "action": "mobile_key", "site": "12"}))
            .unwrap();
    let bex_post = |sig: String| {
        let (env, path, body) = (&env, path.clone(), body.clone());
        async move {
            let headers = [
                ("content-type", "application/json".to_owned()),
                ("x-be-signature", sig),
            ];
            env.post_raw(&path, body, &headers).await
        }
    };
    let (s, b) = bex_post(booking_ingest::auth::sign_bex("wrong", &body)).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = bex_post(booking_ingest::auth::sign_bex(SECRET, &body)).await;
    assert_eq!(s, 202, "{b}");
    let id = b["request_id"].as_str().unwrap().to_owned();
    let resp = env
        .client
        .get(format!("{}{path}/{id}", env.base))
        .header(
            "x-be-signature",
            booking_ingest::auth::sign_bex(SECRET, b""),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // Clock: a token is no credential until the operator chooses it.
    let clock_path = format!("/webhooks/clock/{TENANT}/keyrequests");
    let (s, b) = env
        .post("clock", &clock(4711, "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(s, 202, "{b}");
    let kr = serde_json::to_vec(&json!({"booking_id": 4711, "key_type": "mobile"})).unwrap();
    let token_post = |query: String, token: Option<&str>| {
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(t) = token {
            headers.push(("x-accesshub-token", t.to_owned()));
        }
        let (path, kr, env) = (format!("{clock_path}{query}"), kr.clone(), &env);
        async move { env.post_raw(&path, kr, &headers).await }
    };
    let (s, b) = token_post(String::new(), Some(SECRET)).await;
    assert_eq!(s, 401, "{b}");
    sqlx::query(
        "UPDATE tenant_sources SET auth = 'token' WHERE tenant_id = $1 AND source = 'clock'",
    )
    .bind(TENANT)
    .execute(&env.db.pool)
    .await
    .unwrap();
    env.handle.as_ref().unwrap().sources().invalidate();
    let (s, b) = token_post(String::new(), Some(SECRET)).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = token_post("?token=wrong".into(), None).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = token_post(format!("?token={SECRET}"), None).await;
    assert_eq!(s, 202, "{b}");
    let id = b["request_id"].as_str().unwrap().to_owned();
    let resp = env
        .client
        .get(format!(
            "{}{clock_path}/{id}?wait=0&token={SECRET}",
            env.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    env.finish().await;
}

/// The value of the sample `name` (with its labels as written; none may be written `{}`) in a
/// `/metrics` text.
fn sample(text: &str, name: &str) -> Option<f64> {
    let bare = format!("{name}{{}}");
    text.lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n == name || n == bare)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Issue 26, operable callbacks: what every POST came to is counted on `/metrics`
/// (`accesshub_keyreq_callbacks_total{outcome}`) and the callbacks still to deliver are a
/// gauge. A receiver that answers 503 then 400 gets a retry, then accesshub gives up; one
/// that answers 200 gets its outcome; then nothing is pending.
#[tokio::test]
async fn callback_outcomes_and_pending_callbacks_are_on_metrics() {
    let env = Env::with(fast_callbacks).await;
    let (s, b) = env
        .post("clock", &clock(4711, "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(s, 202, "{b}");
    let refusing = Receiver::start(vec![503, 400]).await;
    let fine = Receiver::start(vec![]).await;
    let mut ids = Vec::new();
    for r in [&refusing, &fine] {
        let (s, b) = post_keyreq(
            &env,
            "clock",
            &json!({"booking_id": 4711, "key_type": "new", "encoder_id": "1",
                    "callback_url": r.url}),
        )
        .await;
        assert_eq!(s, 202, "{b}");
        ids.push(b["request_id"].as_str().unwrap().to_owned());
    }
    let metric = |text: &str, name: &str| sample(text, name).unwrap_or(-1.0);
    // Both wait for their outcome.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = env.metrics().await;
        if metric(&m, "accesshub_keyreq_callbacks_pending") == 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "pending never 2:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        worker_records(
            &env,
            id,
            "encoded",
            "key ready: 1 card(s) encoded on encoder 1",
        )
        .await;
    }
    refusing.wait_for(2).await;
    fine.wait_for(1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let m = env.metrics().await;
        let counted = [
            metric(
                &m,
                "accesshub_keyreq_callbacks_total{outcome=\"delivered\"}",
            ),
            metric(&m, "accesshub_keyreq_callbacks_total{outcome=\"retried\"}"),
            metric(&m, "accesshub_keyreq_callbacks_total{outcome=\"gave_up\"}"),
            metric(&m, "accesshub_keyreq_callbacks_pending"),
        ];
        if counted == [1.0, 1.0, 1.0, 0.0] {
            break m;
        }
        assert!(Instant::now() < deadline, "{counted:?}:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        m.contains("# TYPE accesshub_keyreq_callbacks counter"),
        "{m}"
    );
    assert!(
        m.contains("# TYPE accesshub_keyreq_callbacks_pending gauge"),
        "{m}"
    );
    assert_eq!(refusing.count(), 2, "no POST after the 400");
    refusing.task.abort();
    fine.task.abort();
    env.finish().await;
}

/// The callback settings stop booking-ingest at start-up when they cannot work, naming the
/// variable, before it touches NATS or PostgreSQL.
#[test]
fn bad_callback_settings_fail_fast() {
    for (var, value) in [
        ("ACCESSHUB_KEYREQ_CALLBACK_RETRIES", "-1"),
        ("ACCESSHUB_KEYREQ_CALLBACK_RETRIES", "many"),
        ("ACCESSHUB_KEYREQ_CALLBACK_BACKOFF", "0s"),
        ("ACCESSHUB_KEYREQ_CALLBACK_BACKOFF", "soon"),
        ("ACCESSHUB_KEYREQ_CALLBACK_BACKOFF_MAX", "100ms"),
        ("ACCESSHUB_KEYREQ_CALLBACK_TIMEOUT", "0s"),
    ] {
        refuses_to_start_with(var, value);
    }
}
