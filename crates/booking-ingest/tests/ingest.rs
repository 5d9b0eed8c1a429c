//! End-to-end tests of booking-ingest against the real NATS and PostgreSQL.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use accesshub_domain::{Event, EventBody, headers};
use common::*;
use serde_json::{Value, json};

async fn accept(env: &Env, source: &str, body: &Value) -> String {
    let (status, answer) = env.post(source, body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_upstream_format_reaches_jetstream() {
    let env = Env::new().await;
    let cases = [
        (
            "bex",
            bex("R-1", "2025-06-20T09:15:00Z", "reservation:created"),
            "reservation",
            "R-1",
        ),
        (
            "clock",
            clock(4711, "2025-06-20T09:15:00Z"),
            "reservation",
            "4711",
        ),
        (
            "nexudus",
            nexudus("pass-uuid-1", "2025-06-20T09:15:00Z"),
            "pass",
            "pass-uuid-1",
        ),
        (
            "connecx",
            connecx("cx-1", "2025-06-20T09:15:00Z"),
            "facility",
            "cx-1",
        ),
        ("native", native("N-1", 7), "facility", "N-1"),
    ];
    let mut ids = Vec::new();
    for (source, body, _, _) in &cases {
        ids.push(accept(&env, source, body).await);
    }
    let msgs = env.messages(cases.len() as u64).await;
    for (((source, _, kind, key), id), msg) in cases.iter().zip(&ids).zip(&msgs) {
        let expected = env
            .bus
            .bus
            .subject(&format!("bookings.{kind}.{TENANT}.{key}"));
        assert_eq!(msg.subject.as_str(), expected, "{source}");
        assert_eq!(msg.headers.get(headers::MSG_ID).unwrap().as_str(), id);
        assert_eq!(msg.headers.get(headers::EVENT_ID).unwrap().as_str(), id);
        assert_eq!(msg.headers.get(headers::TENANT).unwrap().as_str(), TENANT);
        assert_eq!(msg.headers.get(headers::KIND).unwrap().as_str(), *kind);
        assert_eq!(
            msg.headers.get(headers::SCHEMA_VERSION).unwrap().as_str(),
            "1"
        );
        let event: Event = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(event.id.to_string(), *id);
        assert_eq!(event.source.as_str(), *source);
        assert_eq!(event.booking_key, *key);
        assert_eq!(
            msg.headers.get(headers::REVISION).unwrap().as_str(),
            event.revision.to_string()
        );
        // The desired state is the published event byte for byte (a json column keeps the
        // text as serialized; jsonb would reorder and respace it).
        let (stored,): (String,) = sqlx::query_as(
            "SELECT payload::text FROM bookings WHERE kind = $1 AND booking_key = $2",
        )
        .bind(kind)
        .bind(key)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
        assert_eq!(stored.as_bytes(), &msg.payload[..], "{source}");
    }
    // Mapping details.
    let bex_ev: Event = serde_json::from_slice(&msgs[0].payload).unwrap();
    assert_eq!(bex_ev.site, "12");
    assert_eq!(bex_ev.revision, 1_750_410_900_000);
    let EventBody::Reservation(r) = &bex_ev.body else {
        panic!()
    };
    assert_eq!(r.guest.name, "Doe, John, Paul");
    assert_eq!(r.check_in_time.to_string(), "16:00:00"); // site default
    assert_eq!(r.check_out_time.to_string(), "10:30:00");
    assert_eq!(r.timezone, "Europe/Amsterdam");
    let clock_ev: Event = serde_json::from_slice(&msgs[1].payload).unwrap();
    let EventBody::Reservation(r) = &clock_ev.body else {
        panic!()
    };
    assert_eq!(r.check_in_time.to_string(), "14:00:00"); // from the booking
    assert_eq!(r.check_out_time.to_string(), "11:00:00"); // fallback (site 77 has no entry)
    let native_ev: Event = serde_json::from_slice(&msgs[4].payload).unwrap();
    assert_eq!(native_ev.revision, 7);
    // Desired state with its window.
    let (rev, starts, ends): (
        i64,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "SELECT revision, starts_at, ends_at FROM bookings WHERE booking_key = 'R-1'",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(rev, 1_750_410_900_000);
    assert_eq!(starts.unwrap().to_rfc3339(), "2025-07-14T14:00:00+00:00");
    assert_eq!(ends.unwrap().to_rfc3339(), "2025-07-18T08:30:00+00:00");
    // Relay marked everything published.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);
    env.finish().await;
}

#[tokio::test]
async fn duplicate_delivery_gets_same_answer_and_one_event() {
    let env = Env::new().await;
    let body = bex("R-2", "2025-06-20T09:15:00Z", "reservation:updated");
    let (s1, a1) = env.post("bex", &body).await;
    let (s2, a2) = env.post("bex", &body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a1, a2);
    // With an Idempotency-Key: a re-sent delivery with the same key, concurrently.
    let body2 = bex("R-3", "2025-06-20T09:15:00Z", "reservation:updated");
    let bytes = serde_json::to_vec(&body2).unwrap();
    let key = [("idempotency-key", "delivery-42".to_owned())];
    let (r1, r2) = tokio::join!(
        env.post_signed("bex", TENANT, bytes.clone(), &key),
        env.post_signed("bex", TENANT, bytes.clone(), &key)
    );
    assert_eq!(r1, r2);
    assert_eq!(r1.1["status"], "accepted");
    env.messages(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.stream_count().await, 2);
    assert_eq!(env.events_written().await, 2);
    assert_eq!(env.count("ingest_receipts").await, 2);
    env.finish().await;
}

#[tokio::test]
async fn out_of_order_revisions_are_superseded() {
    let env = Env::new().await;
    let newer = native("N-9", 3);
    let older = native("N-9", 2);
    let accepted = accept(&env, "native", &newer).await;
    let (status, answer) = env.post("native", &older).await;
    assert_eq!(status, 202);
    assert_eq!(
        answer,
        json!({"status": "superseded", "current_revision": 3})
    );
    // Same revision again (a different delivery) is not newer either.
    let mut same = native("N-9", 3);
    same["payload"]["facility_id"] = json!("other");
    let (_, answer) = env.post("native", &same).await;
    assert_eq!(answer["status"], "superseded");
    // The stored desired state is still the accepted delivery's, untouched by the others.
    let (rev, event_id, facility): (i64, uuid::Uuid, Option<String>) = sqlx::query_as(
        "SELECT revision, event_id, payload #>> '{payload,facility_id}' FROM bookings \
         WHERE booking_key = 'N-9'",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(rev, 3);
    assert_eq!(event_id.to_string(), accepted);
    assert_eq!(facility.as_deref(), Some("f1"));
    env.messages(1).await;
    assert_eq!(env.events_written().await, 1);
    env.finish().await;
}

/// A cancellation that does not bump the revision (a delete need not change an upstream's
/// last-change time) still wins over the stored state of that revision and is published; a
/// reactivation at the same revision stays superseded, and so does a second cancellation.
#[tokio::test]
async fn an_equal_revision_that_ends_access_wins_and_a_reactivation_does_not() {
    let env = Env::new().await;
    let with = |status: &str, n: u32| {
        let mut b = native("N-T", 5);
        b["id"] = json!(format!("01977a4e-2c10-7b3a-9f21-5d8c4e6a1b{n:02}"));
        b["payload"]["status"] = json!(status);
        b
    };
    accept(&env, "native", &with("booked", 10)).await;
    let cancelled = accept(&env, "native", &with("cancelled", 11)).await;
    for (status, n) in [("booked", 12), ("cancelled", 13)] {
        let (code, answer) = env.post("native", &with(status, n)).await;
        assert_eq!(code, 202);
        assert_eq!(
            answer,
            json!({"status": "superseded", "current_revision": 5}),
            "{status}"
        );
    }
    let (event_id, status, ends): (uuid::Uuid, Option<String>, bool) = sqlx::query_as(
        "SELECT event_id, payload #>> '{payload,status}', ends_access FROM bookings \
         WHERE booking_key = 'N-T'",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(event_id.to_string(), cancelled);
    assert_eq!(status.as_deref(), Some("cancelled"));
    assert!(ends);
    assert_eq!(
        env.events_written().await,
        2,
        "the booking and its cancellation"
    );
    env.finish().await;
}

/// The scenario reported against the real Nexudus shape: a `CoworkerTimePassDelete` carrying
/// the pass's last `UpdatedOn` was answered "superseded" and never revoked.
#[tokio::test]
async fn a_nexudus_delete_with_the_same_updated_on_is_accepted() {
    let env = Env::new().await;
    let at = "2025-06-20T09:15:00";
    accept(&env, "nexudus", &nexudus("tp-del", at)).await;
    let mut delete = nexudus("tp-del", at);
    delete["action"] = json!("CoworkerTimePassDelete");
    accept(&env, "nexudus", &delete).await;
    let status: Option<String> = sqlx::query_scalar(
        "SELECT payload #>> '{payload,status}' FROM bookings WHERE kind = 'pass'",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(status.as_deref(), Some("removed"));
    assert_eq!(env.events_written().await, 2);
    env.finish().await;
}

#[tokio::test]
async fn same_booking_twice_in_one_batch() {
    let env = Env::new().await;
    // Many revisions of one booking at once: they share a committer and often a batch.
    let mut futs = Vec::new();
    for rev in 1..=40 {
        let body = serde_json::to_vec(&native("N-B", rev)).unwrap();
        futs.push(env.post_signed("native", TENANT, body, &[]));
    }
    let answers = futures::future::join_all(futs).await;
    assert!(answers.iter().all(|(s, _)| *s == 202));
    let accepted = answers
        .iter()
        .filter(|(_, a)| a["status"] == "accepted")
        .count() as i64;
    assert!(accepted >= 1);
    let (rev,): (i64,) = sqlx::query_as("SELECT revision FROM bookings WHERE booking_key = 'N-B'")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(rev, 40);
    assert_eq!(env.events_written().await as i64, accepted);
    env.finish().await;
}

#[tokio::test]
async fn bad_inputs_get_clear_answers_and_store_nothing() {
    let env = Env::with(|c| c.body_limit = 4096).await;
    // 400 naming the field.
    let mut b = bex("R-5", "2025-06-20T09:15:00Z", "reservation:created");
    b["record"]["attributes"]["arrival_date"] = json!("14-07-2025");
    let (s, a) = env.post("bex", &b).await;
    assert_eq!(s, 400, "{a}");
    assert_eq!(a["error"], "invalid_request");
    assert_eq!(a["field"], "record.attributes.arrival_date");
    let mut b = clock(1, "2025-06-20T09:15:00Z");
    b["booking"].as_object_mut().unwrap().remove("departure");
    let (s, a) = env.post("clock", &b).await;
    assert_eq!(
        (s, a["field"].as_str()),
        (400, Some("booking.departure")),
        "{a}"
    );
    let (s, a) = env
        .post_signed("connecx", TENANT, b"{\"booking_id\": ".to_vec(), &[])
        .await;
    assert_eq!(
        (s, a["error"].as_str()),
        (400, Some("invalid_request")),
        "{a}"
    );
    // 422: departure before arrival.
    let mut b = bex("R-6", "2025-06-20T09:15:00Z", "reservation:created");
    b["record"]["attributes"]["departure_date"] = json!("2025-07-01");
    let (s, a) = env.post("bex", &b).await;
    assert_eq!(s, 422, "{a}");
    assert_eq!(a["field"], "payload.departure");
    assert_eq!(a["problems"][0]["field"], "payload.departure");
    // 422: connecX end before start; Nexudus without expiry.
    let mut b = connecx("cx-9", "2025-06-20T09:15:00Z");
    b["end"] = json!("2025-07-01T07:00:00Z");
    assert_eq!(env.post("connecx", &b).await.0, 422);
    let mut b = nexudus("p-9", "2025-06-20T09:15:00Z");
    b["data"]["ExpireDate"] = Value::Null;
    assert_eq!(env.post("nexudus", &b).await.1["field"], "data.ExpireDate");
    // 422: a NUL character, which PostgreSQL text refuses, anywhere in the event.
    let mut b = connecx("cx-10", "2025-06-20T09:15:00Z");
    b["resident"]["first_name"] = json!("Ann\u{0}e");
    let (s, a) = env.post("connecx", &b).await;
    assert_eq!((s, a["field"].as_str()), (422, Some("$")), "{a}");
    // 401: bad, missing, expired signature; unknown tenant.
    let body = serde_json::to_vec(&connecx("cx-1", "2025-06-20T09:15:00Z")).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let ct = ("content-type", "application/json".to_owned());
    let path = format!("/webhooks/connecx/{TENANT}");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![ct.clone()], "missing_timestamp"),
        (
            vec![
                ct.clone(),
                ("x-accesshub-timestamp", ts.to_string()),
                (
                    "x-accesshub-signature",
                    booking_ingest::sign("wrong", ts, &body),
                ),
            ],
            "signature_mismatch",
        ),
        (
            vec![
                ct.clone(),
                ("x-accesshub-timestamp", (ts - 301).to_string()),
                (
                    "x-accesshub-signature",
                    booking_ingest::sign(SECRET, ts - 301, &body),
                ),
            ],
            "stale_timestamp",
        ),
        (
            vec![
                ct.clone(),
                ("x-accesshub-timestamp", ts.to_string()),
                ("x-accesshub-signature", "sha256=zz".into()),
            ],
            "invalid_signature",
        ),
        (
            vec![
                ct.clone(),
                ("x-accesshub-timestamp", (ts + 1).to_string()),
                (
                    "x-accesshub-signature",
                    booking_ingest::sign(SECRET, ts, &body),
                ),
            ],
            "signature_mismatch",
        ),
    ];
    for (h, reason) in cases {
        let (s, a) = env.post_raw(&path, body.clone(), &h).await;
        assert_eq!(s, 401, "{h:?}");
        assert_eq!(a, json!({"error": "unauthorized", "reason": reason}));
    }
    // An unknown tenant looks exactly like a wrong signature (no tenant enumeration).
    let (s, a) = env
        .post_signed("connecx", "nobody", body.clone(), &[])
        .await;
    assert_eq!(
        (s, a),
        (
            401,
            json!({"error": "unauthorized", "reason": "signature_mismatch"})
        )
    );
    // 413 and 415.
    let big = serde_json::to_vec(&json!({"x": "a".repeat(5000)})).unwrap();
    assert_eq!(env.post_signed("connecx", TENANT, big, &[]).await.0, 413);
    let (s, _) = env
        .post_raw(
            &path,
            body.clone(),
            &[("content-type", "text/plain".into())],
        )
        .await;
    assert_eq!(s, 415);
    // 404 for an unknown source, and for the reconciler's (it never comes in through ingest).
    for source in ["nope", "reconciler"] {
        assert_eq!(
            env.post_signed(source, TENANT, body.clone(), &[]).await.0,
            404,
            "{source}"
        );
    }
    // Nothing stored.
    for t in ["bookings", "outbox", "ingest_receipts"] {
        assert_eq!(env.count(t).await, 0, "{t}");
    }
    // Metrics count the rejects.
    let metrics = env.metrics().await;
    assert!(
        metrics.contains(
            "accesshub_ingest_rejected_total{source=\"connecx\",reason=\"unauthorized\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "accesshub_ingest_rejected_total{source=\"unknown\",reason=\"not_found\"} 2\n"
        ),
        "{metrics}"
    );
    env.finish().await;
}

#[tokio::test]
async fn rotation_accepts_previous_secret_until_it_expires() {
    let env = Env::new().await;
    // The admin API's rotation: the old secret stays valid for an hour.
    accesshub_connections::TenantStore::new(env.db.pool.clone(), env.sbox.clone())
        .set_source_secret(
            TENANT,
            "connecx",
            Some(accesshub_connections::Secret::new("new-secret")),
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    // A fresh service sees the rotation (the running one caches for 30 s).
    let handle = env_handle_restart(&env).await;
    let base = format!("http://{}", handle.addr());
    let post = |secret: &'static str, id: &'static str| {
        let body = serde_json::to_vec(&connecx(id, "2025-06-20T09:15:00Z")).unwrap();
        let ts = chrono::Utc::now().timestamp();
        env.client
            .post(format!("{base}/webhooks/connecx/{TENANT}"))
            .header("content-type", "application/json")
            .header("x-accesshub-timestamp", ts.to_string())
            .header(
                "x-accesshub-signature",
                booking_ingest::sign(secret, ts, &body),
            )
            .body(body)
            .send()
    };
    assert_eq!(post(SECRET, "a").await.unwrap().status(), 202);
    assert_eq!(post("new-secret", "b").await.unwrap().status(), 202);
    assert_eq!(post("other", "c").await.unwrap().status(), 401);
    sqlx::query("UPDATE tenant_sources SET previous_expires = now() - interval '1 second'")
        .execute(&env.db.pool)
        .await
        .unwrap();
    handle.shutdown().await;
    let handle = env_handle_restart(&env).await;
    let base2 = format!("http://{}", handle.addr());
    let body = serde_json::to_vec(&connecx("d", "2025-06-20T09:15:00Z")).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let s = env
        .client
        .post(format!("{base2}/webhooks/connecx/{TENANT}"))
        .header("content-type", "application/json")
        .header("x-accesshub-timestamp", ts.to_string())
        .header(
            "x-accesshub-signature",
            booking_ingest::sign(SECRET, ts, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 401);
    handle.shutdown().await;
    env.finish().await;
}

async fn env_handle_restart(env: &Env) -> booking_ingest::IngestHandle {
    let cfg = booking_ingest::IngestConfig::for_test(
        env.bus.config("booking-ingest", &env.db.url),
        env.sbox.clone(),
    );
    booking_ingest::start(cfg).await.unwrap()
}

#[tokio::test]
async fn nats_ingest_replies() {
    let env = Env::new().await;
    let client = &env.bus.bus.client;
    let subject = env
        .bus
        .bus
        .subject(&accesshub_domain::subjects::ingest("connecx", TENANT));
    let body = serde_json::to_vec(&connecx("cx-nats", "2025-06-20T09:15:00Z")).unwrap();
    // booking-ingest subscribes before `start` returns only if its NATS connection is up by
    // then; on a loaded machine it may still be connecting and subscribe a moment later (in
    // the background). An upstream retries "no responders"; so does this.
    let mut reply = None;
    for _ in 0..50 {
        match client.request(subject.clone(), body.clone().into()).await {
            Ok(r) => {
                reply = Some(r);
                break;
            }
            Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("ingest request: {e}"),
        }
    }
    let reply = reply.expect("booking-ingest answered within 5 s");
    let a: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(a["status"], "accepted", "{a}");
    let reply = client.request(subject.clone(), body.into()).await.unwrap();
    let b: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(a, b);
    let mut bad = connecx("cx-bad", "2025-06-20T09:15:00Z");
    bad["start"] = json!(5);
    let reply = client
        .request(subject, serde_json::to_vec(&bad).unwrap().into())
        .await
        .unwrap();
    let c: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        (
            c["status"].as_str(),
            c["error"].as_str(),
            c["field"].as_str()
        ),
        (Some("rejected"), Some("invalid_request"), Some("start")),
        "{c}"
    );
    let other = env
        .bus
        .bus
        .subject(&accesshub_domain::subjects::ingest("connecx", "nobody"));
    let reply = client.request(other, b"{}".to_vec().into()).await.unwrap();
    let d: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(d["error"], "unknown_tenant");
    let msgs = env.messages(1).await;
    assert_eq!(
        msgs[0].headers.get(headers::MSG_ID).unwrap().as_str(),
        a["event_id"].as_str().unwrap()
    );
    assert_eq!(env.events_written().await, 1);
    env.finish().await;
}

#[tokio::test]
async fn traceparent_travels_to_the_event() {
    let env = Env::new().await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = serde_json::to_vec(&connecx("cx-tr", "2025-06-20T09:15:00Z")).unwrap();
    let (s, _) = env
        .post_signed("connecx", TENANT, body, &[("traceparent", tp.into())])
        .await;
    assert_eq!(s, 202);
    let msgs = env.messages(1).await;
    let got = msgs[0]
        .headers
        .get(headers::TRACEPARENT)
        .unwrap()
        .as_str()
        .to_owned();
    assert!(
        got.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{got}"
    );
    env.finish().await;
}

#[tokio::test]
async fn ops_endpoints() {
    let env = Env::new().await;
    for (p, code) in [("/healthz", 200), ("/readyz", 200), ("/metrics", 200)] {
        let r = env
            .client
            .get(format!("{}{p}", env.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{p}");
    }
    accept(&env, "connecx", &connecx("m-1", "2025-06-20T09:15:00Z")).await;
    env.messages(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let m = env
        .client
        .get(format!("{}/metrics", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("accesshub_ingest_accepted_total{source=\"connecx\"} 1"),
        "{m}"
    );
    assert!(m.contains("accesshub_outbox_published_total"), "{m}");
    assert!(m.contains("accesshub_outbox_pending"), "{m}");
    assert!(m.contains("accesshub_ingest_commit_seconds_count"), "{m}");
    assert!(m.contains("accesshub_ingest_receipts_pruned_total"), "{m}");
    assert!(m.contains("accesshub_http_requests_total"), "{m}");
    env.finish().await;
}

/// A row another replica committed and did not relay (it died in between) is published by
/// this replica's poll, and deleted after its PubAck. Commits wake only their own process's
/// relay (no NOTIFY: it would serialise commits), so with the poll at a minute the row waits.
#[tokio::test]
async fn outbox_rows_of_other_replicas_are_published_by_the_poll() {
    for (poll, published) in [
        (std::time::Duration::from_millis(100), true),
        (std::time::Duration::from_secs(60), false),
    ] {
        let env = Env::with(|c| c.relay.poll = poll).await;
        accept(&env, "native", &native("N-R", 1)).await;
        let first = env.messages(1).await;
        let subject = first[0].subject.to_string();
        let payload = first[0].payload.to_vec();
        // What another replica's committer would write.
        sqlx::query("INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(&subject)
            .bind(&payload)
            .execute(&env.db.pool)
            .await
            .unwrap();
        if published {
            env.messages(2).await;
            assert_eq!(env.events_written().await, 2);
        } else {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
                .fetch_one(&env.db.pool)
                .await
                .unwrap();
            assert_eq!(
                left, 1,
                "published without a poll: something else wakes the relay"
            );
        }
        env.finish().await;
    }
}

/// The committers run their one statement on its cached generic plan (planning it per
/// execution cost more than running it), so that plan must probe primary keys even when it
/// was made while the tables were never analysed: no sequential scan, and not the bookings
/// index by start time filtered on the key (a scan of the tenant's every booking). The
/// other pool plans every execution of its batch statements.
#[tokio::test]
async fn committer_statement_probes_primary_keys_on_a_generic_plan() {
    let env = Env::new().await;
    let handle = env.handle.as_ref().unwrap();
    let mode = |pool: sqlx::PgPool| async move {
        let (m,): (String,) = sqlx::query_as("SHOW plan_cache_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        m
    };
    assert_eq!(
        mode(handle.commit_pool().clone()).await,
        "force_generic_plan"
    );
    assert_eq!(mode(handle.pool().clone()).await, "force_custom_plan");
    assert_eq!(mode(handle.relay_pool().clone()).await, "force_custom_plan");
    // Accepting a webhook waits for the WAL flush; the relay's deletes do not need to.
    let sync = |pool: sqlx::PgPool| async move {
        let (m,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap();
        m
    };
    assert_eq!(sync(handle.commit_pool().clone()).await, "on");
    assert_eq!(sync(handle.relay_pool().clone()).await, "off");

    let mut conn = handle.commit_pool().acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PREPARE write_batch AS {}",
        booking_ingest::committer::WRITE_BATCH
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let nulls = vec!["NULL"; 15].join(", ");
    let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (COSTS OFF) EXECUTE write_batch({nulls})"
    )))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|(l,)| l).collect();
    let text = plan.join("\n");
    assert!(
        text.contains("Index Scan using ingest_receipts_pkey"),
        "{text}"
    );
    assert!(!text.contains("Seq Scan"), "{text}");
    assert!(!text.contains("bookings_starts_idx"), "{text}");
    drop(conn);
    env.finish().await;
}

/// Receipts older than the retention are pruned (in batches); younger ones stay and keep
/// answering repeats with their first answer. A repeat after its receipt expired is taken as
/// a new delivery and answered from the booking's revision: superseded, no second event.
#[tokio::test]
async fn expired_receipts_are_pruned_in_batches() {
    let env = Env::new().await;
    let mut bodies = Vec::new();
    for i in 0..5 {
        let b = native(&format!("N-P{i}"), 1);
        accept(&env, "native", &b).await;
        bodies.push(b);
    }
    let fresh = native("N-FRESH", 1);
    let fresh_id = accept(&env, "native", &fresh).await;
    sqlx::query(
        "UPDATE ingest_receipts SET created_at = now() - interval '8 days' \
         WHERE event_id IN (SELECT event_id FROM bookings WHERE booking_key LIKE 'N-P%')",
    )
    .execute(&env.db.pool)
    .await
    .unwrap();
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let pruned = booking_ingest::retention::prune_receipts(&env.db.pool, week, 2)
        .await
        .unwrap();
    assert_eq!(pruned, 5);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM ingest_receipts")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    // The fresh receipt still gives the first answer.
    let (_, again) = env.post("native", &fresh).await;
    assert_eq!(again["event_id"], fresh_id);
    // An expired one is a new delivery of an already stored revision.
    let (status, late) = env.post("native", &bodies[0]).await;
    assert_eq!(status, 202);
    assert_eq!(late, json!({"status": "superseded", "current_revision": 1}));
    assert_eq!(env.events_written().await, 6);
    env.finish().await;
}

/// A registration past its ttl is served once more while ONE background load refreshes it
/// (no stampede of loads when it expires under load); the refreshed secret then applies.
#[tokio::test]
async fn expired_source_registrations_refresh_in_the_background() {
    let env = Env::new().await;
    let ttl = std::time::Duration::from_millis(300);
    let cache = booking_ingest::auth::SourceCache::new(env.db.pool.clone(), env.sbox.clone(), ttl);
    let first = cache.get(TENANT, "native").await.unwrap().unwrap();
    let now = chrono::Utc::now();
    assert_eq!(first.secrets(now), vec![SECRET.as_bytes().to_vec()]);
    // Re-registered with a new secret (and no previous one) by another replica.
    let tenants = accesshub_connections::TenantStore::new(env.db.pool.clone(), env.sbox.clone());
    common::set_secret(&tenants, "native", "rotated").await;
    // Within the ttl: still the cached one.
    let cached = cache.get(TENANT, "native").await.unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &cached));
    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    // Past it: many concurrent callers all get an answer at once (the stale one)...
    let all = futures::future::join_all((0..50).map(|_| cache.get(TENANT, "native"))).await;
    for e in &all {
        assert_eq!(
            e.as_ref().unwrap().as_ref().unwrap().secrets(now),
            vec![SECRET.as_bytes().to_vec()]
        );
    }
    // ...and the refresh lands shortly after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let e = cache.get(TENANT, "native").await.unwrap().unwrap();
        if e.secrets(chrono::Utc::now()) == vec![b"rotated".to_vec()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    env.finish().await;
}

/// The public port serves webhooks and probes only: the admin API is a service of its own
/// and must never be reachable through the webhook ingress.
#[tokio::test]
async fn the_admin_api_is_not_served_on_the_webhook_port() {
    let env = Env::new().await;
    for path in [
        "/admin/v1/tenants",
        "/admin/v1/syncs",
        "/admin/v1/connections",
    ] {
        let r = env
            .client
            .get(format!("{}{path}", env.base))
            .bearer_auth("any-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = env
        .client
        .get(format!("{}/healthz", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.finish().await;
}
