//! Runtime behaviour against the real NATS and Postgres, with a tiny scripted handler.
//! The booking key scripts the handler: `perm-*` fails permanently, `flaky<N>-*` fails
//! transiently on the first N attempts, `ra-*` asks for Retry-After 1 s once, `slow<ms>-*`
//! takes that long, `forever-*` always fails transiently.

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

mod common;

use accesshub_testkit::eventually;
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{
    DeadLetter, ErrorClass, Event, EventBody, EventKind, PassStatus, headers, subjects,
};
use accesshub_testkit::{TestBus, TestDb};
use worker_runtime::{
    ApplyContext, ApplyOutcome, BindingKey, Handler, HandlerError, Recorded, StaticConnections,
    Status, WorkerConfig, WorkerHandle,
};

/// (key, revision, attempt, when)
type Calls = Arc<Mutex<Vec<(String, i64, u64, Instant)>>>;

#[derive(Clone, Default)]
struct Log {
    /// (key, revision, attempt, when)
    applied: Calls,
    calls: Calls,
    active: Arc<Mutex<HashSet<String>>>,
    overlap: Arc<Mutex<bool>>,
    /// Most bookings ever in `apply` at once.
    peak: Arc<Mutex<usize>>,
    /// For `fenced-*` keys: pause the first attempt, then report the fence's answer.
    gate: Arc<Mutex<Option<Gate>>>,
}

/// A `fenced-*` booking's first attempt says it entered and waits for `release`; every
/// attempt then asks [`ApplyContext::ensure_held`] and reports the answer on `fenced` before
/// its (pretend) vendor call.
#[derive(Clone)]
struct Gate {
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: Arc<tokio::sync::Notify>,
    fenced: tokio::sync::mpsc::UnboundedSender<bool>,
}

struct TestHandler {
    log: Log,
}

fn num_after(key: &str, prefix: &str) -> Option<u64> {
    let rest = key.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Handler for TestHandler {
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
        "test-worker"
    }
    fn vendor(&self) -> Vendor {
        Vendor::Tapkey
    }
    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Pass]
    }
    async fn apply(
        &self,
        ctx: &ApplyContext<()>,
        event: &Event,
        _prev: Option<&Recorded<serde_json::Value>>,
    ) -> Result<ApplyOutcome<serde_json::Value>, HandlerError> {
        let key = event.booking_key.clone();
        let gate = self.log.gate.lock().unwrap().clone();
        if let Some(g) = gate.filter(|_| key.starts_with("fenced-")) {
            if ctx.attempt == 1 {
                let _ = g.entered.send(());
                g.release.notified().await;
            }
            let held = ctx.ensure_held().await;
            let _ = g.fenced.send(held.is_ok());
            held?;
        }
        {
            let mut a = self.log.active.lock().unwrap();
            if !a.insert(key.clone()) {
                *self.log.overlap.lock().unwrap() = true;
            }
            let mut peak = self.log.peak.lock().unwrap();
            *peak = (*peak).max(a.len());
        }
        self.log.calls.lock().unwrap().push((
            key.clone(),
            event.revision,
            ctx.attempt,
            Instant::now(),
        ));
        let ms = num_after(&key, "slow").unwrap_or(5);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.log.active.lock().unwrap().remove(&key);
        if key.starts_with("perm-") {
            return Err(HandlerError::permanent("mapping missing for pass type"));
        }
        if key.starts_with("forever-") {
            return Err(HandlerError::transient("vendor busy"));
        }
        if let Some(n) = num_after(&key, "flaky")
            && ctx.attempt <= n
        {
            return Err(HandlerError::transient("503 from vendor"));
        }
        if key.starts_with("ra-") && ctx.attempt == 1 {
            let mut e = HandlerError::transient("429");
            e.retry_after = Some(Duration::from_secs(1));
            return Err(e);
        }
        self.log.applied.lock().unwrap().push((
            key.clone(),
            event.revision,
            ctx.attempt,
            Instant::now(),
        ));
        let status = match &event.body {
            EventBody::Pass(p) if p.status != PassStatus::Active => Status::Removed,
            _ => Status::Active,
        };
        Ok(ApplyOutcome::new(
            status,
            serde_json::json!({"ref": ctx.reference, "rev": event.revision}),
        ))
    }
}

fn connection() -> Connection {
    common::connection("acme")
}

struct Env {
    db: TestDb,
    tb: TestBus,
    log: Log,
}

impl Env {
    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        Env {
            db,
            tb,
            log: Log::default(),
        }
    }

    fn config(&self) -> WorkerConfig {
        WorkerConfig::for_test(
            self.tb.config("test-worker", &self.db.url),
            Arc::new(StaticConnections::new(vec![
                connection(),
                // initech uses Tapkey, but only at its annex: its events at "hq" have no
                // connection serving them.
                Connection {
                    tenant: "initech".into(),
                    sites: vec!["annex".into()],
                    ..connection()
                },
            ])),
        )
    }

    async fn start_with(&self, cfg: WorkerConfig) -> WorkerHandle {
        worker_runtime::start(
            cfg,
            TestHandler {
                log: self.log.clone(),
            },
        )
        .await
        .unwrap()
    }

    async fn start(&self) -> WorkerHandle {
        self.start_with(self.config()).await
    }

    fn event(&self, tenant: &str, key: &str, rev: i64) -> Event {
        common::pass(tenant, key, rev, true)
    }

    async fn publish_raw(&self, subject: &str, payload: Vec<u8>, h: async_nats::HeaderMap) {
        common::publish_raw(&self.tb, subject, payload, h).await;
    }

    async fn publish(&self, ev: &Event) {
        common::publish_event(&self.tb, ev).await;
    }

    async fn binding(&self, key: &str) -> Option<worker_runtime::Binding> {
        worker_runtime::get_binding(
            &self.db.pool,
            &BindingKey {
                tenant: "acme".into(),
                vendor: "tapkey".into(),
                kind: "pass".into(),
                booking_key: key.into(),
            },
        )
        .await
        .unwrap()
    }

    async fn dead_letter(&self, original_subject: &str) -> Option<DeadLetter> {
        let stream = self
            .tb
            .bus
            .js
            .get_stream(self.tb.bus.stream_name(subjects::DLQ_STREAM))
            .await
            .unwrap();
        let subj = self
            .tb
            .bus
            .subject(&subjects::dlq("test-worker", original_subject));
        let m = stream.get_last_raw_message_by_subject(&subj).await.ok()?;
        Some(serde_json::from_slice(&m.payload).unwrap())
    }

    async fn finish(self, h: WorkerHandle) {
        h.shutdown().await.unwrap();
        self.tb.cleanup().await;
        self.db.drop_db().await;
    }

    fn calls_for(&self, key: &str) -> Vec<(i64, u64)> {
        self.log
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == key)
            .map(|c| (c.1, c.2))
            .collect()
    }
}

fn metric(h: &WorkerHandle, outcome: &str) -> u64 {
    let text = h.registry().encode();
    let needle = format!("outcome=\"{outcome}\"");
    text.lines()
        .find(|l| l.starts_with("accesshub_worker_messages_total") && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn applies_then_skips_duplicates_and_stale_revisions() {
    let env = Env::new().await;
    let h = env.start().await;
    let r1 = env.event("acme", "b1", 1);
    let r2 = env.event("acme", "b1", 2);
    env.publish(&r1).await;
    env.publish(&r2).await;
    eventually("revision 2", Duration::from_secs(10), || async {
        env.binding("b1")
            .await
            .is_some_and(|b| b.applied_revision == 2)
    })
    .await;
    // Same revision again (a redelivery / re-publish with a new msg id) and an older one.
    let mut dup = r2.clone();
    dup.id = uuid::Uuid::now_v7();
    env.publish(&dup).await;
    let mut old = r1.clone();
    old.id = uuid::Uuid::now_v7();
    env.publish(&old).await;
    eventually("two skips", Duration::from_secs(10), || async {
        metric(&h, "skipped") >= 2
    })
    .await;
    let b = env.binding("b1").await.unwrap();
    assert_eq!(b.applied_revision, 2);
    assert_eq!(b.applied_event_id, Some(r2.id));
    assert_eq!(b.status, "active");
    assert_eq!(b.vendor_ids["ref"], "ah:acme:pass:b1");
    let revs: Vec<i64> = env.calls_for("b1").iter().map(|c| c.0).collect();
    assert!(revs.iter().filter(|r| **r == 2).count() == 1, "{revs:?}");
    assert!(!revs.contains(&1) || revs[0] == 1, "{revs:?}");
    // Readiness: consumer reachable and Postgres up.
    (h.readiness())().await.unwrap();
    env.finish(h).await;
}

/// An event that ends access wins over the applied state of the same revision (a delete need
/// not bump the upstream's revision); a reactivation at that revision does not, nor does the
/// same end once the record says nothing is held.
#[tokio::test]
async fn an_equal_revision_that_ends_access_is_applied_and_a_reactivation_is_not() {
    let env = Env::new().await;
    let h = env.start().await;
    let active = env.event("acme", "t1", 4);
    env.publish(&active).await;
    eventually("applied", Duration::from_secs(10), || async {
        env.binding("t1")
            .await
            .is_some_and(|b| b.applied_revision == 4)
    })
    .await;
    let mut removed = env.event("acme", "t1", 4);
    if let EventBody::Pass(p) = &mut removed.body {
        p.status = PassStatus::Removed;
    }
    env.publish(&removed).await;
    eventually("the removal applied", Duration::from_secs(10), || async {
        env.binding("t1")
            .await
            .is_some_and(|b| b.applied_event_id == Some(removed.id))
    })
    .await;
    assert_eq!(env.binding("t1").await.unwrap().status, "removed");
    // Booked again at the same revision, and the same removal again: both skipped.
    let reactivated = env.event("acme", "t1", 4);
    env.publish(&reactivated).await;
    let mut again = removed.clone();
    again.id = uuid::Uuid::now_v7();
    env.publish(&again).await;
    eventually("two skips", Duration::from_secs(10), || async {
        metric(&h, "skipped") >= 2
    })
    .await;
    let b = env.binding("t1").await.unwrap();
    assert_eq!(b.applied_event_id, Some(removed.id));
    assert_eq!(
        env.calls_for("t1").len(),
        2,
        "the first event and the removal only"
    );
    env.finish(h).await;
}

#[tokio::test]
async fn revision_3_before_2_applies_3_only() {
    let env = Env::new().await;
    // Publish first, start after, so the order in the stream is 3 then 2.
    env.publish(&env.event("acme", "r1", 3)).await;
    env.publish(&env.event("acme", "r1", 2)).await;
    let h = env.start().await;
    eventually("two messages handled", Duration::from_secs(10), || async {
        metric(&h, "applied") + metric(&h, "skipped") >= 2
    })
    .await;
    assert_eq!(env.binding("r1").await.unwrap().applied_revision, 3);
    assert_eq!(env.calls_for("r1"), vec![(3, 1)]);
    env.finish(h).await;
}

#[tokio::test]
async fn one_booking_at_a_time_many_at_once() {
    let env = Env::new().await;
    let h = env.start().await;
    for rev in 1..=8 {
        for k in 0..12 {
            env.publish(&env.event("acme", &format!("slow20-k{k}"), rev))
                .await;
        }
    }
    eventually("all at revision 8", Duration::from_secs(30), || async {
        let mut ok = true;
        for k in 0..12 {
            ok &= env
                .binding(&format!("slow20-k{k}"))
                .await
                .is_some_and(|b| b.applied_revision == 8);
        }
        ok
    })
    .await;
    assert!(
        !*env.log.overlap.lock().unwrap(),
        "same booking processed concurrently"
    );
    // Bookings run in parallel: 96 events × 20 ms would take ~2 s serially.
    let calls = env.log.calls.lock().unwrap().clone();
    let first = calls.iter().map(|c| c.3).min().unwrap();
    let last = calls.iter().map(|c| c.3).max().unwrap();
    assert!(
        last - first < Duration::from_millis(1900),
        "{:?}",
        last - first
    );
    env.finish(h).await;
}

/// A free slot takes whichever booking waits, whatever its key: with lanes fixed by a hash
/// of the booking, eight bookings on eight lanes mostly shared some lanes and ran partly one
/// after another.
#[tokio::test]
async fn every_slot_is_used_whatever_the_bookings_keys() {
    let env = Env::new().await;
    let h = env.start().await; // 8 slots
    for k in 0..8 {
        env.publish(&env.event("acme", &format!("slow1500-s{k}"), 1))
            .await;
    }
    eventually("all applied", Duration::from_secs(30), || async {
        env.log.applied.lock().unwrap().len() == 8
    })
    .await;
    assert_eq!(
        *env.log.peak.lock().unwrap(),
        8,
        "bookings in apply at once"
    );
    env.finish(h).await;
}

/// A message waiting for a slot (not only behind its own booking) gets progress acks: with
/// one slot and calls longer than `ack_wait`, the second booking would otherwise be
/// redelivered while it waits, and its copy skipped as a duplicate.
#[tokio::test]
async fn a_message_waiting_for_a_slot_is_not_redelivered() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.concurrency = 1;
    cfg.ack_wait = Duration::from_secs(2);
    cfg.progress_interval = Duration::from_millis(500);
    let h = env.start_with(cfg).await;
    for key in ["slow3000-w1", "slow3000-w2", "slow10-w3"] {
        env.publish(&env.event("acme", key, 1)).await;
    }
    eventually("all applied", Duration::from_secs(30), || async {
        env.log.applied.lock().unwrap().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(*env.log.peak.lock().unwrap(), 1);
    assert_eq!(metric(&h, "applied"), 3);
    assert_eq!(
        metric(&h, "skipped"),
        0,
        "a waiting message was redelivered"
    );
    env.finish(h).await;
}

/// Slots go to bookings in the order they started waiting, and a booking keeps its place
/// while it takes in more messages: B waits before C, then gets a second event while still
/// waiting, and is still served before C.
#[tokio::test]
async fn a_booking_keeps_its_place_in_the_slot_queue() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.concurrency = 1;
    // No progress tick during the test (it would re-queue a booking in the broken version
    // too, and mask what B's second event does).
    cfg.ack_wait = Duration::from_secs(30);
    cfg.progress_interval = Duration::from_secs(10);
    let h = env.start_with(cfg).await;
    env.publish(&env.event("acme", "slow1500-fa", 1)).await;
    eventually("A holds the slot", Duration::from_secs(10), || async {
        !env.calls_for("slow1500-fa").is_empty()
    })
    .await;
    env.publish(&env.event("acme", "slow10-fb", 1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.publish(&env.event("acme", "slow10-fc", 1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.publish(&env.event("acme", "slow10-fb", 2)).await;
    eventually("all applied", Duration::from_secs(30), || async {
        env.log.applied.lock().unwrap().len() == 4
    })
    .await;
    let order: Vec<(String, i64)> = env
        .log
        .applied
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.0.clone(), a.1))
        .collect();
    let at = |key: &str, rev: i64| order.iter().position(|a| a.0 == key && a.1 == rev);
    assert!(at("slow10-fb", 1) < at("slow10-fc", 1), "{order:?}");
    env.finish(h).await;
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_apply() {
    let env = Env::new().await;
    let h = env.start().await;
    env.publish(&env.event("acme", "flaky2-x", 1)).await;
    eventually("applied", Duration::from_secs(10), || async {
        env.binding("flaky2-x")
            .await
            .is_some_and(|b| b.applied_revision == 1)
    })
    .await;
    assert_eq!(env.calls_for("flaky2-x"), vec![(1, 1), (1, 2), (1, 3)]);
    assert_eq!(metric(&h, "retried"), 2);
    assert_eq!(env.binding("flaky2-x").await.unwrap().last_error, None);
    env.finish(h).await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let env = Env::new().await;
    let h = env.start().await;
    env.publish(&env.event("acme", "ra-1", 1)).await;
    eventually("applied", Duration::from_secs(10), || async {
        env.binding("ra-1").await.is_some()
    })
    .await;
    let calls = env.log.calls.lock().unwrap().clone();
    let gap = calls[1].3 - calls[0].3;
    // backoff_max is 400 ms in the test config: only Retry-After explains a ≥ 1 s gap.
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    env.finish(h).await;
}

/// Publishes `ev` with a W3C `traceparent` of trace `trace`.
async fn publish_traced(env: &Env, ev: &Event, trace: &str) {
    let mut hm = async_nats::HeaderMap::new();
    hm.insert(headers::MSG_ID, ev.id.to_string().as_str());
    hm.insert(
        headers::TRACEPARENT,
        format!("00-{trace}-00f067aa0ba902b7-01").as_str(),
    );
    env.publish_raw(&ev.subject(), serde_json::to_vec(ev).unwrap(), hm)
        .await;
}

/// Issue 22: the binding names the trace that applied what it records — the one the event
/// carried (`traceparent`), which the worker's span continues — so an operator can paste it
/// from the console into the trace UI. Each applied revision brings its own.
#[tokio::test]
async fn the_binding_records_the_trace_that_applied_it() {
    let env = Env::new().await;
    let h = env.start().await;
    for (rev, trace) in [
        (1, "4bf92f3577b34da6a3ce929d0e0e4736"),
        (2, "0af7651916cd43dd8448eb211c80319c"),
    ] {
        publish_traced(&env, &env.event("acme", "traced", rev), trace).await;
        eventually("the revision applied", Duration::from_secs(10), || async {
            env.binding("traced")
                .await
                .is_some_and(|b| b.applied_revision == rev)
        })
        .await;
        let b = env.binding("traced").await.unwrap();
        assert_eq!(b.trace_id.as_deref(), Some(trace), "revision {rev}");
    }
    env.finish(h).await;
}

#[tokio::test]
async fn permanent_failure_goes_to_dlq_with_every_field() {
    let env = Env::new().await;
    let h = env.start().await;
    let ev = env.event("acme", "perm-1", 4);
    let mut hm = async_nats::HeaderMap::new();
    hm.insert(headers::MSG_ID, ev.id.to_string().as_str());
    hm.insert(headers::REPLAY_COUNT, "2");
    hm.append("X-Multi", "a");
    hm.append("X-Multi", "b");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    hm.insert(
        headers::TRACEPARENT,
        format!("00-{trace}-00f067aa0ba902b7-01").as_str(),
    );
    env.publish_raw(&ev.subject(), serde_json::to_vec(&ev).unwrap(), hm)
        .await;
    let subject = ev.subject();
    eventually("dead letter", Duration::from_secs(10), || async {
        env.dead_letter(&subject).await.is_some()
    })
    .await;
    let dl = env.dead_letter(&subject).await.unwrap();
    assert_eq!(dl.worker, "test-worker");
    assert_eq!(dl.original_subject, subject);
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert!(dl.reason.contains("mapping missing"), "{}", dl.reason);
    assert_eq!(dl.attempts, 1);
    assert_eq!(dl.stream, env.tb.bus.stream_name(subjects::BOOKINGS_STREAM));
    assert!(dl.stream_sequence.is_some());
    assert_eq!(dl.event_id, Some(ev.id));
    assert_eq!(dl.tenant.as_deref(), Some("acme"));
    assert_eq!(dl.kind.as_deref(), Some("pass"));
    assert_eq!(dl.booking_key.as_deref(), Some("perm-1"));
    assert_eq!(dl.replay_count, 2);
    assert_eq!(dl.trace_id.as_deref(), Some(trace));
    assert_eq!(dl.original_headers["X-Multi"], vec!["a", "b"]);
    assert_eq!(
        dl.payload_bytes().unwrap(),
        serde_json::to_vec(&ev).unwrap()
    );
    // The runtime records the failure after the DLQ PubAck, so the entry can be visible a
    // moment before the binding row.
    eventually(
        "binding marked dead_lettered",
        Duration::from_secs(5),
        || async {
            env.binding("perm-1")
                .await
                .is_some_and(|b| b.status == "dead_lettered")
        },
    )
    .await;
    let b = env.binding("perm-1").await.unwrap();
    assert_eq!(b.status, "dead_lettered");
    assert!(b.last_error.unwrap().contains("mapping missing"));
    // The failed attempt's trace, next to its error (the console shows both).
    assert_eq!(b.trace_id.as_deref(), Some(trace));
    // Terminated: never redelivered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(env.calls_for("perm-1").len(), 1);
    assert_eq!(metric(&h, "dead_lettered"), 1);
    env.finish(h).await;
}

#[tokio::test]
async fn poison_payload_is_dead_lettered_and_a_site_not_served_ignored_without_blocking() {
    let env = Env::new().await;
    let h = env.start().await;
    let poison_subject = subjects::booking(EventKind::Pass, "acme", "poison");
    let mut hm = async_nats::HeaderMap::new();
    hm.insert(headers::TENANT, "acme");
    env.publish_raw(&poison_subject, b"{not json".to_vec(), hm)
        .await;
    // globex has no Tapkey connection at all (it uses other vendors): skipped, not a dead
    // letter. initech has one, but not for this site: access control is off there (install
    // per administration), a counted skip — its stored booking is applied by the sync once
    // the site is activated.
    let unused = env.event("globex", "other-vendor", 1);
    env.publish(&unused).await;
    let other = env.event("initech", "nocon", 1);
    env.publish(&other).await;
    env.publish(&env.event("acme", "after", 1)).await;
    eventually("later event applied", Duration::from_secs(10), || async {
        env.binding("after").await.is_some()
    })
    .await;
    let ps = poison_subject.clone();
    eventually("poison dead letter", Duration::from_secs(10), || async {
        env.dead_letter(&ps).await.is_some()
    })
    .await;
    let dl = env.dead_letter(&poison_subject).await.unwrap();
    assert!(dl.reason.contains("not a valid event"), "{}", dl.reason);
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert_eq!(dl.payload, "{not json");
    assert_eq!(dl.tenant.as_deref(), Some("acme"));
    assert_eq!(dl.event_id, None);
    eventually(
        "the site not served ignored and counted",
        Duration::from_secs(10),
        || async {
            h.registry().encode().lines().any(|l| {
                l.starts_with("accesshub_worker_ignored_total")
                    && l.contains("reason=\"site_not_served\"")
                    && l.ends_with(" 1")
            })
        },
    )
    .await;
    eventually(
        "the unused vendor's event skipped",
        Duration::from_secs(10),
        || async {
            h.registry().encode().lines().any(|l| {
                l.starts_with("accesshub_worker_messages_total")
                    && l.contains("outcome=\"skipped\"")
                    && !l.ends_with(" 0")
            })
        },
    )
    .await;
    assert!(env.dead_letter(&unused.subject()).await.is_none());
    assert!(env.dead_letter(&other.subject()).await.is_none());
    assert!(env.binding("other-vendor").await.is_none());
    assert!(env.binding("nocon").await.is_none());
    env.finish(h).await;
}

#[tokio::test]
async fn transient_on_last_delivery_goes_to_dlq() {
    let env = Env::new().await;
    let h = env.start().await;
    let ev = env.event("acme", "forever-1", 1);
    env.publish(&ev).await;
    let s = ev.subject();
    eventually("dead letter", Duration::from_secs(20), || async {
        env.dead_letter(&s).await.is_some()
    })
    .await;
    let dl = env.dead_letter(&s).await.unwrap();
    assert_eq!(dl.class, ErrorClass::Transient);
    assert_eq!(dl.attempts, 5);
    assert!(dl.reason.contains("retries exhausted"), "{}", dl.reason);
    assert_eq!(env.calls_for("forever-1").len(), 5);
    env.finish(h).await;
}

#[tokio::test]
async fn long_calls_keep_the_message_with_progress_acks() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.ack_wait = Duration::from_secs(2);
    cfg.progress_interval = Duration::from_millis(500);
    let h = env.start_with(cfg).await;
    env.publish(&env.event("acme", "slow5000-p", 1)).await;
    eventually("applied", Duration::from_secs(15), || async {
        env.binding("slow5000-p").await.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // No redelivery happened although the call took 2.5 × ack_wait.
    assert_eq!(env.calls_for("slow5000-p"), vec![(1, 1)]);
    env.finish(h).await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_work() {
    let env = Env::new().await;
    let h = env.start().await;
    env.publish(&env.event("acme", "slow1500-g", 1)).await;
    eventually("in apply", Duration::from_secs(10), || async {
        !env.calls_for("slow1500-g").is_empty()
    })
    .await;
    h.shutdown().await.unwrap();
    // Finished and recorded before shutdown returned.
    assert!(env.binding("slow1500-g").await.is_some());
    env.tb.cleanup().await;
    env.db.drop_db().await;
}

#[tokio::test]
async fn crash_mid_call_redelivers_and_a_restart_applies() {
    let env = Env::new().await;
    let h = env.start().await;
    env.publish(&env.event("acme", "slow3000-c", 1)).await;
    eventually("in apply", Duration::from_secs(10), || async {
        !env.calls_for("slow3000-c").is_empty()
    })
    .await;
    h.abort().await;
    assert!(env.binding("slow3000-c").await.is_none());
    let h = env.start().await;
    eventually("applied after restart", Duration::from_secs(20), || async {
        env.binding("slow3000-c").await.is_some()
    })
    .await;
    let calls = env.calls_for("slow3000-c");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].1, 2, "redelivery is attempt 2");
    env.finish(h).await;
}

#[tokio::test]
async fn deleted_consumer_is_recreated() {
    let env = Env::new().await;
    let h = env.start().await;
    env.publish(&env.event("acme", "d1", 1)).await;
    eventually("applied", Duration::from_secs(10), || async {
        env.binding("d1").await.is_some()
    })
    .await;
    let stream = env
        .tb
        .bus
        .js
        .get_stream(env.tb.bus.stream_name(subjects::BOOKINGS_STREAM))
        .await
        .unwrap();
    stream
        .delete_consumer(&env.tb.bus.ns.stream("test-worker"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.publish(&env.event("acme", "d2", 1)).await;
    eventually(
        "applied after consumer deletion",
        Duration::from_secs(30),
        || async { env.binding("d2").await.is_some() },
    )
    .await;
    env.finish(h).await;
}

/// The access recorded for a booking whose tenant no longer has any connection to the
/// vendor (deleted with its access kept): an ending cannot remove it, and says so in the
/// DLQ instead of being skipped. Endings of bookings that hold nothing, and events that want
/// access, are still skipped.
#[tokio::test]
async fn an_ending_without_a_connection_is_dead_lettered_while_access_is_recorded() {
    let env = Env::new().await;
    for (key, status) in [("held", "active"), ("gone", "removed")] {
        sqlx::query(
            "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, status)
             VALUES ('globex', 'tapkey', 'pass', $1, 1, $2)",
        )
        .bind(key)
        .bind(status)
        .execute(&env.db.pool)
        .await
        .unwrap();
    }
    let h = env.start().await;
    let ended = |key: &str| {
        let mut ev = env.event("globex", key, 2);
        if let EventBody::Pass(p) = &mut ev.body {
            p.status = PassStatus::Removed;
        }
        ev
    };
    let held = ended("held");
    env.publish(&ended("gone")).await;
    env.publish(&env.event("globex", "wanted", 1)).await;
    env.publish(&held).await;
    let s = held.subject();
    eventually("dead letter", Duration::from_secs(10), || async {
        env.dead_letter(&s).await.is_some()
    })
    .await;
    let dl = env.dead_letter(&s).await.unwrap();
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert!(
        dl.reason.contains(
            "no tapkey connection serves site \"hq\" of tenant \"globex\": the access recorded for booking \"held\" could not be removed"
        ),
        "{}",
        dl.reason
    );
    eventually("the other two skipped", Duration::from_secs(10), || async {
        metric(&h, "skipped") >= 2
    })
    .await;
    assert!(env.dead_letter(&ended("gone").subject()).await.is_none());
    assert!(
        env.dead_letter(&env.event("globex", "wanted", 1).subject())
            .await
            .is_none()
    );
    assert!(env.log.calls.lock().unwrap().is_empty(), "no vendor call");
    env.finish(h).await;
}

/// The connections of [`Env::config`], with every connection being offboarded.
struct Offboarding(StaticConnections);

impl worker_runtime::ConnectionSource for Offboarding {
    fn for_site<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        site: &'a str,
    ) -> worker_runtime::BoxFuture<'a, Result<Option<Connection>, worker_runtime::SourceError>>
    {
        self.0.for_site(tenant, vendor, site)
    }

    fn offboarding<'a>(
        &'a self,
        _tenant: &'a str,
        _vendor: Vendor,
        _name: &'a str,
    ) -> worker_runtime::BoxFuture<'a, Result<bool, worker_runtime::SourceError>> {
        Box::pin(async { Ok(true) })
    }
}

/// A connection being offboarded wants nothing: an event that wants access reaches the
/// handler as its ending (same booking and revision), never as a new grant.
#[tokio::test]
async fn events_of_an_offboarding_connection_are_applied_as_endings() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.connections = Arc::new(Offboarding(StaticConnections::new(vec![connection()])));
    let h = env.start_with(cfg).await;
    env.publish(&env.event("acme", "p-off", 3)).await;
    eventually("applied", Duration::from_secs(10), || async {
        env.binding("p-off").await.is_some()
    })
    .await;
    let b = env.binding("p-off").await.unwrap();
    assert_eq!((b.status.as_str(), b.applied_revision), ("removed", 3));
    env.finish(h).await;
}

/// M8: the worker's lock session is killed by the server while its handler waits before a
/// vendor call, and another replica takes the booking and calls the vendor. The worker
/// notices nothing by itself (no statement ran on the dead session); its fence must refuse
/// the call. Its retry, after the other replica is done, makes it: one vendor call at a
/// time for the booking.
#[tokio::test]
async fn a_worker_whose_lock_session_died_makes_no_vendor_call() {
    let env = Env::new().await;
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (fenced_tx, mut fenced) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    *env.log.gate.lock().unwrap() = Some(Gate {
        entered: entered_tx,
        release: release.clone(),
        fenced: fenced_tx,
    });
    let h = env.start().await;
    env.publish(&env.event("acme", "fenced-1", 1)).await;
    tokio::time::timeout(Duration::from_secs(10), entered.recv())
        .await
        .unwrap()
        .unwrap();

    // The worker's lock session: the only advisory-lock holder in this test's database.
    let pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert!(killed);
    // Another replica takes the booking (the runtime's lock key) and calls the vendor.
    let mut other = env.db.pool.acquire().await.unwrap();
    let lock_key = "binding\u{1f}acme\u{1f}tapkey\u{1f}pass\u{1f}fenced-1";
    let start = Instant::now();
    while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(lock_key)
        .fetch_one(&mut *other)
        .await
        .unwrap()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the other replica got the booking"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.log.active.lock().unwrap().insert("fenced-1".into());

    release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(10), fenced.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !answer,
        "the fence let a vendor call through without the lock"
    );
    env.log.active.lock().unwrap().remove("fenced-1");
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(lock_key)
        .execute(&mut *other)
        .await
        .unwrap();
    drop(other);

    // The retry takes the lock on a new session and makes the call.
    eventually("applied on retry", Duration::from_secs(15), || async {
        env.binding("fenced-1")
            .await
            .is_some_and(|b| b.applied_revision == 1)
    })
    .await;
    assert!(
        !*env.log.overlap.lock().unwrap(),
        "two vendor calls for one booking at once"
    );
    assert_eq!(
        env.calls_for("fenced-1"),
        vec![(1, 2)],
        "one call, by the retry"
    );
    env.finish(h).await;
}
