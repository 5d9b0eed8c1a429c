//! The reconciler's repair commands on the SYNC stream: a forced apply bypasses the
//! equal-revision skip (never an older revision), a removal command reaches the handler under
//! the booking's lock, and a force header on BOOKINGS means nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{
    Event, EventKind, subjects,
    sync::{self, RemoveCommand},
};
use worker_runtime::{
    ApplyContext, ApplyOutcome, BindingKey, Handler, HandlerError, Recorded, StaticConnections,
    Status, WorkerConfig,
};

/// (booking key, vendor id, revision in the binding)
type Removed = Arc<Mutex<Vec<(String, String, Option<i64>)>>>;

#[derive(Clone, Default)]
struct Log {
    applied: Arc<Mutex<Vec<(String, i64)>>>,
    removed: Removed,
}

struct H(Log);

impl Handler for H {
    type Ids = serde_json::Value;
    type Client = ();

    fn client(
        &self,
        _conn: &Connection,
        _limiter: std::sync::Arc<vendor_http::RateLimiter>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "sync-test-worker"
    }
    fn vendor(&self) -> Vendor {
        Vendor::Tapkey
    }
    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Pass]
    }
    async fn apply(
        &self,
        _ctx: &ApplyContext<()>,
        event: &Event,
        _prev: Option<&Recorded<serde_json::Value>>,
    ) -> Result<ApplyOutcome<serde_json::Value>, HandlerError> {
        self.0
            .applied
            .lock()
            .unwrap()
            .push((event.booking_key.clone(), event.revision));
        Ok(ApplyOutcome::new(
            Status::Active,
            serde_json::json!({"grants": ["g1"]}),
        ))
    }
    async fn remove(
        &self,
        _ctx: &ApplyContext<()>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<serde_json::Value>>,
    ) -> Result<Option<ApplyOutcome<serde_json::Value>>, HandlerError> {
        self.0.removed.lock().unwrap().push((
            cmd.booking_key.clone(),
            cmd.vendor_id.clone(),
            prev.map(|b| b.applied_revision),
        ));
        Ok(None)
    }
}

fn connection() -> Connection {
    common::connection("acme")
}

fn event(key: &str, rev: i64) -> Event {
    common::pass("acme", key, rev, true)
}

async fn publish(
    tb: &accesshub_testkit::TestBus,
    subject: &str,
    body: Vec<u8>,
    h: async_nats::HeaderMap,
) {
    common::publish_raw(tb, subject, body, h).await;
}

fn sync_headers(action: &str, force: bool) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(sync::HEADER_RUN, "7");
    h.insert(sync::HEADER_ACTION, action);
    if force {
        h.insert(sync::HEADER_FORCE, "true");
    }
    h
}

/// `accesshub_testkit::eventually` for a synchronous check, up to 10 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    accesshub_testkit::eventually(what, Duration::from_secs(10), || std::future::ready(f())).await;
}

#[tokio::test]
async fn forced_apply_and_removal_from_the_sync_stream() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let log = Log::default();
    let cfg = WorkerConfig::for_test(
        tb.config("sync-test-worker", &db.url),
        Arc::new(StaticConnections::new(vec![connection()])),
    );
    let h = worker_runtime::start(cfg, H(log.clone())).await.unwrap();
    let applied = |n: usize| log.applied.lock().unwrap().len() >= n;

    // Revision 2 applied from BOOKINGS.
    let ev = event("p1", 2);
    let body = serde_json::to_vec(&ev).unwrap();
    publish(
        &tb,
        &ev.subject(),
        body.clone(),
        async_nats::HeaderMap::new(),
    )
    .await;
    eventually("first apply", || applied(1)).await;

    // A force header on BOOKINGS is ignored: equal revision → skipped.
    let mut h_bookings = async_nats::HeaderMap::new();
    h_bookings.insert(sync::HEADER_FORCE, "true");
    publish(&tb, &ev.subject(), body.clone(), h_bookings).await;
    // SYNC without force: skipped too.
    let sync_subject = subjects::sync("tapkey", "acme", "p1");
    publish(
        &tb,
        &sync_subject,
        body.clone(),
        sync_headers("apply", false),
    )
    .await;
    // An older revision, even forced, is never applied.
    let old = serde_json::to_vec(&event("p1", 1)).unwrap();
    publish(&tb, &sync_subject, old, sync_headers("apply", true)).await;
    // The forced repair at the same revision is applied.
    publish(
        &tb,
        &sync_subject,
        body.clone(),
        sync_headers("apply", true),
    )
    .await;
    eventually("forced apply", || applied(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *log.applied.lock().unwrap(),
        vec![("p1".to_owned(), 2), ("p1".to_owned(), 2)]
    );

    // Removal of a stray, with the booking's binding loaded under its lock.
    let cmd = RemoveCommand {
        run_id: 7,
        tenant: "acme".into(),
        vendor: "tapkey".into(),
        connection: "default".into(),
        kind: EventKind::Pass,
        booking_key: "p1".into(),
        reference: "g-stray".into(),
        vendor_id: "g-stray".into(),
    };
    publish(
        &tb,
        &sync_subject,
        serde_json::to_vec(&cmd).unwrap(),
        sync_headers("remove", true),
    )
    .await;
    eventually("removal", || !log.removed.lock().unwrap().is_empty()).await;
    assert_eq!(
        log.removed.lock().unwrap()[0],
        ("p1".to_owned(), "g-stray".to_owned(), Some(2))
    );
    // Another vendor's commands are not on this consumer's filter at all.
    publish(
        &tb,
        &subjects::sync("cloudpass", "acme", "p1"),
        serde_json::to_vec(&cmd).unwrap(),
        sync_headers("remove", true),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(log.removed.lock().unwrap().len(), 1);
    let b = worker_runtime::get_binding(
        &db.pool,
        &BindingKey {
            tenant: "acme".into(),
            vendor: "tapkey".into(),
            kind: "pass".into(),
            booking_key: "p1".into(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(b.applied_revision, 2);
    h.shutdown().await.unwrap();
    tb.cleanup().await;
    db.drop_db().await;
}
