//! Vendor outages and slow bookings do not spill over (issue 25 item 3), against the real NATS
//! and Postgres. The handler is a small vendor: it holds each booking's applied revision and
//! status per tenant, answers in a few milliseconds, and can be switched down per tenant
//! (every call then fails transiently after a timeout-like pause, as a vendor that is away).

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Event, EventBody, EventKind, PassStatus, subjects};
use accesshub_testkit::{TestBus, TestDb, eventually};
use worker_runtime::{
    ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, StaticConnections, Status,
    WorkerConfig, WorkerHandle,
};

/// What the vendor holds: (tenant, booking) → (revision, active).
type Held = Arc<Mutex<HashMap<(String, String), (i64, bool)>>>;

#[derive(Clone, Default)]
struct Sim {
    held: Held,
    /// Tenants whose vendor is down.
    down: Arc<Mutex<HashSet<String>>>,
    /// Calls made while down, per tenant.
    failed_calls: Arc<Mutex<HashMap<String, u64>>>,
    /// Booking keys whose call takes this long.
    slow: Arc<Mutex<HashMap<String, Duration>>>,
    /// Calls in progress per booking key (a slow one is "in progress" until it returns).
    in_call: Arc<Mutex<HashSet<String>>>,
}

struct H(Sim);

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
        "breaker-test-worker"
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
        let v = &self.0;
        if v.down.lock().unwrap().contains(&event.tenant) {
            // A vendor that is away: the call hangs until the client's timeout.
            tokio::time::sleep(Duration::from_millis(50)).await;
            *v.failed_calls
                .lock()
                .unwrap()
                .entry(event.tenant.clone())
                .or_default() += 1;
            return Err(HandlerError::transient("503 Service Unavailable"));
        }
        let slow = v.slow.lock().unwrap().get(&event.booking_key).copied();
        v.in_call.lock().unwrap().insert(event.booking_key.clone());
        tokio::time::sleep(slow.unwrap_or(Duration::from_millis(2))).await;
        v.in_call.lock().unwrap().remove(&event.booking_key);
        let active = matches!(&event.body, EventBody::Pass(p) if p.status == PassStatus::Active);
        v.held.lock().unwrap().insert(
            (event.tenant.clone(), event.booking_key.clone()),
            (event.revision, active),
        );
        let status = if active {
            Status::Active
        } else {
            Status::Removed
        };
        Ok(ApplyOutcome::new(
            status,
            serde_json::json!({"rev": event.revision}),
        ))
    }
}

struct Env {
    db: TestDb,
    tb: TestBus,
    vendor: Sim,
}

impl Env {
    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        Env {
            db,
            tb,
            vendor: Sim::default(),
        }
    }

    fn config(&self) -> WorkerConfig {
        WorkerConfig::for_test(
            self.tb.config("breaker-test-worker", &self.db.url),
            Arc::new(StaticConnections::new(vec![
                common::connection("acme"),
                common::connection("globex"),
            ])),
        )
    }

    async fn start(&self, cfg: WorkerConfig) -> WorkerHandle {
        worker_runtime::start(cfg, H(self.vendor.clone()))
            .await
            .unwrap()
    }

    async fn publish(&self, tenant: &str, key: &str, rev: i64, active: bool) {
        common::publish_event(&self.tb, &common::pass(tenant, key, rev, active)).await;
    }

    fn held(&self, tenant: &str, key: &str) -> Option<(i64, bool)> {
        self.vendor
            .held
            .lock()
            .unwrap()
            .get(&(tenant.to_owned(), key.to_owned()))
            .copied()
    }

    /// Whether the vendor holds every booking of `want` at its latest revision and status.
    fn converged(&self, tenant: &str, want: &BTreeMap<String, (i64, bool)>) -> bool {
        want.iter().all(|(k, w)| self.held(tenant, k) == Some(*w))
    }

    async fn dlq_messages(&self) -> u64 {
        let mut stream = self
            .tb
            .bus
            .js
            .get_stream(self.tb.bus.stream_name(subjects::DLQ_STREAM))
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    async fn parked(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM parked_events")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Publishes tenant B's load (`n` bookings, two revisions each) and waits until the
    /// vendor holds all of it; how long that took from the first publish.
    async fn b_load(&self, prefix: &str, n: usize) -> Duration {
        let started = Instant::now();
        let mut want = BTreeMap::new();
        for i in 0..n {
            let key = format!("{prefix}-{i}");
            self.publish("globex", &key, 1, true).await;
            self.publish("globex", &key, 2, true).await;
            want.insert(key, (2, true));
        }
        eventually("tenant B applied", Duration::from_secs(60), || async {
            self.converged("globex", &want)
        })
        .await;
        started.elapsed()
    }

    async fn finish(self, h: WorkerHandle) {
        h.shutdown().await.unwrap();
        self.tb.cleanup().await;
        self.db.drop_db().await;
    }
}

/// The value of a metric line starting with `name{` and containing every label in `labels`.
fn gauge(h: &WorkerHandle, name: &str, labels: &[&str]) -> Option<i64> {
    let text = h.registry().encode();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Tenant A's vendor is down for far longer than the retry budget (`max_deliver` 5 × backoff
/// capped at 400 ms ≈ 2 s; the outage lasts at least 10 s) while tenant B's load runs: B
/// applies completely during the outage, at a speed comparable to a run without it; A's events
/// (creations, updates and cancellations) are parked, nothing goes to the DLQ, and once the
/// vendor answers again A converges — every booking at its latest revision and status.
#[tokio::test]
async fn one_tenants_vendor_outage_parks_its_events_and_spares_the_others() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.breaker_threshold = 3;
    cfg.breaker_open_base = Duration::from_millis(300);
    cfg.breaker_open_max = Duration::from_secs(1);
    let retry_budget = cfg.backoff_max * u32::try_from(cfg.max_deliver).unwrap();
    let h = env.start(cfg).await;

    // Baseline: B alone.
    let baseline = env.b_load("base", 100).await;

    // A's vendor goes down; A's bookings keep changing during the outage.
    env.vendor.down.lock().unwrap().insert("acme".into());
    let outage = Instant::now();
    let mut want_a = BTreeMap::new();
    for i in 0..30 {
        let key = format!("a-{i}");
        env.publish("acme", &key, 1, true).await;
        want_a.insert(key, (1, true));
    }
    for i in 0..30 {
        let key = format!("a-{i}");
        match i % 3 {
            // Updated.
            0 => {
                env.publish("acme", &key, 2, true).await;
                want_a.insert(key, (2, true));
            }
            // Cancelled: must not be lost or dead-lettered either.
            1 => {
                env.publish("acme", &key, 2, false).await;
                want_a.insert(key, (2, false));
            }
            _ => {}
        }
    }
    eventually("A's vendor failing", Duration::from_secs(20), || async {
        env.vendor
            .failed_calls
            .lock()
            .unwrap()
            .get("acme")
            .is_some_and(|n| *n >= 3)
    })
    .await;

    // B's load during the outage.
    let during = env.b_load("during", 100).await;
    assert!(
        env.vendor.down.lock().unwrap().contains("acme"),
        "B completed while A was down"
    );
    // Generous: a loaded 2-core machine varies, the spill-over this guards against does not
    // (A's failing calls holding slots and a blocked pull loop cost seconds, not percent).
    let bound = baseline * 4 + Duration::from_secs(2);
    assert!(
        during <= bound,
        "B took {during:?} during A's outage, {baseline:?} without it (bound {bound:?})"
    );
    assert_eq!(
        gauge(
            &h,
            "accesshub_connection_breaker_open",
            &["tenant=\"globex\""],
        )
        .unwrap_or(0),
        0
    );

    // The outage lasts well beyond the retry budget.
    let hold = (retry_budget * 5).max(Duration::from_secs(10));
    while outage.elapsed() < hold {
        assert_eq!(
            env.dlq_messages().await,
            0,
            "dead-lettered during the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        gauge(
            &h,
            "accesshub_connection_breaker_open",
            &["tenant=\"acme\""],
        ),
        Some(1),
        "A's breaker open"
    );
    let parked = env.parked().await;
    assert!(parked > 0, "A's events are parked");
    assert!(
        gauge(&h, "accesshub_connection_parked", &["tenant=\"acme\""]).unwrap_or(0) > 0,
        "parked gauge"
    );
    let failed_during_outage = env.vendor.failed_calls.lock().unwrap()["acme"];
    // Probes only (plus the calls that opened the breaker), not retries of every event.
    assert!(
        failed_during_outage < 60,
        "{failed_during_outage} calls to A's vendor during the outage"
    );
    assert!(!env.converged("acme", &want_a));

    // The vendor answers again: A converges, in order, and nothing was dead-lettered.
    env.vendor.down.lock().unwrap().remove("acme");
    eventually("A converged", Duration::from_secs(60), || async {
        env.converged("acme", &want_a)
    })
    .await;
    eventually("nothing parked", Duration::from_secs(20), || async {
        env.parked().await == 0
    })
    .await;
    assert_eq!(env.dlq_messages().await, 0, "DLQ empty");
    eventually("breaker closed", Duration::from_secs(10), || async {
        gauge(
            &h,
            "accesshub_connection_breaker_open",
            &["tenant=\"acme\""],
        ) == Some(0)
            && gauge(&h, "accesshub_connection_parked", &["tenant=\"acme\""]) == Some(0)
    })
    .await;
    // Latest revision wins per booking: a cancelled booking's creation never re-applied
    // after its cancellation.
    for (key, (rev, active)) in &want_a {
        assert_eq!(env.held("acme", key), Some((*rev, *active)), "{key}");
    }
    env.finish(h).await;
}

/// One slow booking does not stall the replica: while its call runs (longer than ack_wait),
/// the pull loop keeps feeding the other slots, and messages waiting (behind it, or for a slot)
/// are kept with progress acks instead of being redelivered.
#[tokio::test]
async fn a_slow_booking_stalls_neither_the_pull_loop_nor_its_queue() {
    let env = Env::new().await;
    let mut cfg = env.config();
    // ack_wait well above the progress interval (a loaded 2-core CI machine delays timers by
    // a second or more: 2 s gave 26 redeliveries under the whole suite), the slow call well
    // above ack_wait (so messages queued behind it would be redelivered without progress acks).
    cfg.ack_wait = Duration::from_secs(5);
    cfg.progress_interval = Duration::from_millis(500);
    let h = env.start(cfg).await;
    let slow_for = Duration::from_secs(12);
    env.vendor
        .slow
        .lock()
        .unwrap()
        .insert("slow-1".into(), slow_for);
    env.publish("acme", "slow-1", 1, true).await;
    eventually("slow call started", Duration::from_secs(10), || async {
        env.vendor.in_call.lock().unwrap().contains("slow-1")
    })
    .await;
    let started = Instant::now();
    let n = 200;
    for i in 0..n {
        env.publish("globex", &format!("q-{i}"), 1, true).await;
    }
    // 8 slots: the slow booking holds one, every other booking takes the other seven (with
    // lanes fixed by a hash, about one in eight waited behind the slow one).
    let done = || {
        (0..n)
            .filter(|i| env.held("globex", &format!("q-{i}")).is_some())
            .count()
    };
    eventually(
        "others applied during the slow call",
        Duration::from_secs(5),
        || async { done() == n },
    )
    .await;
    assert!(
        env.vendor.in_call.lock().unwrap().contains("slow-1"),
        "the slow call was still running after {:?} ({} of {n} applied)",
        started.elapsed(),
        done()
    );
    eventually("everything applied", Duration::from_secs(30), || async {
        done() == n && env.held("acme", "slow-1").is_some()
    })
    .await;
    // No message passed ack_wait while queued: a redelivery would be a skipped duplicate.
    let text = h.registry().encode();
    let skipped = text
        .lines()
        .find(|l| l.starts_with("accesshub_worker_messages_total") && l.contains("skipped"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert_eq!(skipped, 0.0, "redelivered while queued");
    env.finish(h).await;
}

/// Parked events are durable: a worker stopped while its connection's breaker is open leaves
/// them in Postgres, and the next worker (another replica, or the restarted one) applies them
/// once the vendor answers — still nothing dead-lettered.
#[tokio::test]
async fn parked_events_survive_a_restart() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.breaker_threshold = 3;
    cfg.breaker_open_base = Duration::from_millis(300);
    cfg.breaker_open_max = Duration::from_secs(1);
    let h = env.start(cfg.clone()).await;
    env.vendor.down.lock().unwrap().insert("acme".into());
    let mut want = BTreeMap::new();
    for i in 0..10 {
        let key = format!("r-{i}");
        env.publish("acme", &key, 1, true).await;
        env.publish("acme", &key, 2, i % 2 == 0).await;
        want.insert(key, (2, i % 2 == 0));
    }
    eventually("all parked", Duration::from_secs(30), || async {
        env.parked().await == 10
    })
    .await;
    h.shutdown().await.unwrap();
    env.vendor.down.lock().unwrap().remove("acme");
    // A fresh registry: the new worker is another process.
    cfg.registry = accesshub_telemetry::Registry::new();
    let h = env.start(cfg).await;
    eventually(
        "converged after restart",
        Duration::from_secs(30),
        || async { env.converged("acme", &want) },
    )
    .await;
    eventually("nothing parked", Duration::from_secs(10), || async {
        env.parked().await == 0
    })
    .await;
    assert_eq!(env.dlq_messages().await, 0, "DLQ empty");
    env.finish(h).await;
}
