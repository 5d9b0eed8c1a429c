//! NATS outage: webhooks are still accepted (into the outbox) and the events flow once NATS
//! is back. Runs against a private nats-server this test starts, stops and restarts.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use std::time::{Duration, Instant};

use accesshub_e2e::PrivateNats;
use accesshub_store::SecretBox;
use accesshub_testkit::TestDb;
use booking_ingest::IngestConfig;
use common::*;

#[tokio::test]
async fn webhooks_accepted_while_nats_is_down_flow_when_it_returns() {
    accesshub_telemetry::init_for_tests();
    let mut nats = PrivateNats::start().unwrap();
    let db = TestDb::new().await;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    register_all(&db.pool, &sbox).await;
    let mut common = accesshub_config::CommonConfig::for_test("booking-ingest", "outage", &db.url);
    common.nats_url = nats.url();
    common.streams.file_storage = true; // survives the restart
    let mut cfg = IngestConfig::for_test(common.clone(), sbox.clone());
    cfg.relay.max_backoff = Duration::from_millis(500);
    let handle = booking_ingest::start(cfg).await.unwrap();
    let env = Env {
        db: db.clone(),
        bus: accesshub_testkit::TestBus {
            namespace: "outage".into(),
            bus: accesshub_bus::connect(&common).await.unwrap(),
        },
        sbox,
        base: format!("http://{}", handle.addr()),
        handle: Some(handle),
        client: client(),
    };
    let (s, _) = env
        .post("connecx", &connecx("before", "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(s, 202);
    env.messages(1).await;

    nats.kill();
    // Wait until the service notices (readiness goes down).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = env
            .client
            .get(format!("{}/readyz", env.base))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "readyz stayed up with NATS down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..5 {
        let (s, a) = env
            .post(
                "connecx",
                &connecx(&format!("during-{i}"), "2025-06-20T09:15:00Z"),
            )
            .await;
        assert_eq!(s, 202, "{a}");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(pending, 5, "events wait in the outbox");

    nats.restart().unwrap();
    let msgs = env.messages(6).await;
    let keys: Vec<String> = msgs
        .iter()
        .map(|m| m.subject.as_str().rsplit('.').next().unwrap().to_owned())
        .collect();
    assert_eq!(keys[0], "before");
    for i in 0..5 {
        assert!(keys.contains(&format!("during-{i}")), "{keys:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.finish().await;
}
