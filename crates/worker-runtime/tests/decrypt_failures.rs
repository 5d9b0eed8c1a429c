//! A worker whose connection's secrets no configured key opens (a key removed before every
//! row was resealed) reports it to whoever runs it: `accesshub_secret_decrypt_failures_total`
//! with the worker as `component` on its /metrics, and the event is not applied (issue 23
//! item 4). Real Postgres connection store and NATS; its own test binary, because the
//! metric's component label is per process.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use accesshub_connections::{
    Connection, ConnectionCache, ConnectionStore, DEFAULT_TTL, EgressPolicy, TenantStore, Vendor,
};
use accesshub_domain::{Event, EventKind};
use accesshub_store::SecretBox;
use worker_runtime::{
    ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, Status, WorkerConfig,
};

struct Counting(Arc<AtomicUsize>);

impl Handler for Counting {
    type Ids = serde_json::Value;
    type Client = ();
    fn name(&self) -> &'static str {
        "decrypt-worker"
    }
    fn vendor(&self) -> Vendor {
        Vendor::Tapkey
    }
    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Pass]
    }
    fn client(
        &self,
        _conn: &Connection,
        _limiter: Arc<vendor_http::RateLimiter>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
    async fn apply(
        &self,
        _ctx: &ApplyContext<()>,
        _event: &Event,
        _prev: Option<&Recorded<serde_json::Value>>,
    ) -> Result<ApplyOutcome<serde_json::Value>, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(ApplyOutcome::new(Status::Active, serde_json::json!({})))
    }
}

fn decrypt_failures(text: &str) -> f64 {
    text.lines()
        .find(|l| {
            l.starts_with("accesshub_secret_decrypt_failures_total")
                && l.contains(r#"component="decrypt-worker""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn a_connection_no_configured_key_opens_is_counted_on_the_workers_metrics() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    // Stored under key k1 ...
    let k1 = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), k1.clone())
        .create("acme", "Acme")
        .await
        .unwrap();
    ConnectionStore::new(db.pool.clone(), k1)
        .with_egress(EgressPolicy::loopback_http())
        .upsert(&common::connection("acme"))
        .await
        .unwrap();
    // ... the worker runs with k2 only.
    let k2 = SecretBox::from_spec(&SecretBox::generate_spec().replace("k1:", "k2:")).unwrap();
    let cache = ConnectionCache::new(ConnectionStore::new(db.pool.clone(), k2), DEFAULT_TTL);
    let cfg = WorkerConfig::for_test(tb.config("decrypt-worker", &db.url), Arc::new(cache));
    let applied = Arc::new(AtomicUsize::new(0));
    let h = worker_runtime::start(cfg, Counting(applied.clone()))
        .await
        .unwrap();
    assert_eq!(
        decrypt_failures(&h.registry().encode()),
        0.0,
        "present at 0"
    );

    common::publish_event(&tb, &common::pass("acme", "b1", 1, true)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while decrypt_failures(&h.registry().encode()) < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no decrypt failure counted: {}",
            h.registry().encode()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        applied.load(Ordering::SeqCst),
        0,
        "applied without its secrets"
    );

    h.shutdown().await.unwrap();
    tb.cleanup().await;
    db.drop_db().await;
}
