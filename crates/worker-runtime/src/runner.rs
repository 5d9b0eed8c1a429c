//! The consume loop: durable pull consumer → keyed lanes → revision check → handler →
//! binding + double ack, or the error policy (NAK with delay / DLQ + Term).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use accesshub_bus::Bus;
use accesshub_domain::{
    ErrorClass, Event, subjects,
    sync::{self, RemoveCommand, SyncAction},
};
use accesshub_retry::{Backoff, RetryPolicy, sleep_unless_cancelled};
use accesshub_telemetry::ops::ReadinessCheck;
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt as _;
use sqlx::PgPool;
use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span};
use vendor_http::RateLimiter;

use crate::{
    WorkerError,
    bindings::{self, BindingKey},
    config::WorkerConfig,
    dlq,
    handler::{ApplyContext, Handler, HandlerError, reference},
    metrics::{Outcome, WorkerMetrics},
    policy::{Decision, NakPolicy},
    store::{BindingStore, Committed, Held, Record},
};

struct Shared<H> {
    handler: H,
    cfg: WorkerConfig,
    bus: Bus,
    pool: PgPool,
    /// Booking locks, binding reads and group commit (batched across lanes).
    store: BindingStore,
    metrics: WorkerMetrics,
    backoff: NakPolicy,
    consumer_name: String,
    stream_name: String,
    /// Durable consumer of the reconciler's repair commands (`sync.<vendor>.>` on SYNC).
    sync_consumer_name: String,
    sync_stream_name: String,
    limiters: Mutex<HashMap<(String, String), Arc<RateLimiter>>>,
    /// Unix millis of the last successful consumer info (readiness).
    last_info_ok: AtomicI64,
    /// Set at shutdown: queued messages are handed back instead of processed.
    stopping: CancellationToken,
    /// Set when the consumer must be recreated (deleted, broken pull).
    recreate: tokio::sync::Notify,
}

/// A running worker (in-process). Tests start one with [`start`](crate::start).
pub struct WorkerHandle {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), WorkerError>>,
    readiness: ReadinessCheck,
    registry: accesshub_telemetry::Registry,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle").finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// Graceful stop: no more fetching, in-flight messages finish, queued ones are NAKed for
    /// immediate redelivery (to another replica), then the worker exits.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        self.shutdown.cancel();
        self.task
            .await
            .map_err(|e| WorkerError::Task(e.to_string()))?
    }

    /// Stops at once, mid-call if need be — a crash, for tests of at-least-once delivery.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// The readiness check (consumer reachable recently and Postgres answers).
    pub fn readiness(&self) -> ReadinessCheck {
        self.readiness.clone()
    }

    /// The metrics registry.
    pub fn registry(&self) -> &accesshub_telemetry::Registry {
        &self.registry
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Starts a worker in the background and returns at once (NATS or Postgres being down only
/// delays consumption and shows in readiness).
pub async fn start<H: Handler>(cfg: WorkerConfig, handler: H) -> Result<WorkerHandle, WorkerError> {
    let bus = accesshub_bus::connect(&cfg.common).await?;
    // Lanes hold no connection across the vendor call. Error records and readiness (single-row
    // statements) share a few; the binding store has its own two (the lock task's and the
    // committer's), whose fixed batch statements run on cached generic plans (see `store`).
    let pool = accesshub_store::connect_lazy(&cfg.common.database_url, 6)?;
    let store_pool = accesshub_store::connect_lazy_generic(&cfg.common.database_url, 2)?;
    let mut db_tasks = JoinSet::new();
    let store = BindingStore::start(store_pool, cfg.store_linger, &mut db_tasks);
    let name = handler.name();
    let shared = Arc::new(Shared {
        metrics: WorkerMetrics::new(&cfg.registry, name),
        backoff: NakPolicy {
            backoff: Backoff::new(cfg.backoff_base, cfg.backoff_max),
            retry_after_max: cfg.retry_after_max,
        },
        consumer_name: bus.ns.stream(name),
        stream_name: bus.stream_name(subjects::BOOKINGS_STREAM),
        sync_consumer_name: bus.ns.stream(&format!("{name}-sync")),
        sync_stream_name: bus.stream_name(subjects::SYNC_STREAM),
        limiters: Mutex::new(HashMap::new()),
        last_info_ok: AtomicI64::new(0),
        stopping: CancellationToken::new(),
        recreate: tokio::sync::Notify::new(),
        handler,
        bus,
        pool,
        store,
        cfg,
    });
    let readiness = readiness(shared.clone());
    let shutdown = CancellationToken::new();
    let registry = shared.cfg.registry.clone();
    let task = tokio::spawn(run(shared, shutdown.clone(), db_tasks));
    Ok(WorkerHandle {
        shutdown,
        task,
        readiness,
        registry,
    })
}

fn readiness<H: Handler>(shared: Arc<Shared<H>>) -> ReadinessCheck {
    Arc::new(move || {
        let s = shared.clone();
        Box::pin(async move {
            let age = now_ms() - s.last_info_ok.load(Ordering::Relaxed);
            let max = i64::try_from(s.cfg.ready_max_age.as_millis()).unwrap_or(i64::MAX);
            if age > max {
                return Err(format!(
                    "consumer {} not reachable for {} ms",
                    s.consumer_name, age
                ));
            }
            accesshub_store::ping(&s.pool)
                .await
                .map_err(|e| format!("postgres: {e}"))
        })
    })
}

/// The durable consumer's configuration: one filter subject (nats-server 2.9).
fn consumer_config<H: Handler>(s: &Shared<H>) -> pull::Config {
    let kinds = s.handler.kinds();
    let filter = match kinds {
        [one] => subjects::bookings_of_kind(*one),
        _ => subjects::BOOKINGS_SUBJECTS.to_owned(),
    };
    pull::Config {
        durable_name: Some(s.consumer_name.clone()),
        description: Some(format!("{} (accesshub worker)", s.handler.name())),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        filter_subject: s.bus.subject(&filter),
        ack_wait: s.cfg.ack_wait,
        max_deliver: s.cfg.max_deliver,
        max_ack_pending: s.cfg.max_ack_pending,
        ..Default::default()
    }
}

/// Which stream a pull loop consumes: booking events, or the reconciler's repair commands.
/// Both feed the same keyed lanes and the same handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Bookings,
    Sync,
}

/// The SYNC consumer: this vendor's repair commands, same delivery settings as BOOKINGS.
fn sync_consumer_config<H: Handler>(s: &Shared<H>) -> pull::Config {
    pull::Config {
        durable_name: Some(s.sync_consumer_name.clone()),
        description: Some(format!(
            "{} repair commands (accesshub worker)",
            s.handler.name()
        )),
        filter_subject: s.bus.subject(&format!(
            "sync.{}.>",
            subjects::token(s.handler.vendor().as_str())
        )),
        ..consumer_config(s)
    }
}

fn feed_names<H: Handler>(s: &Shared<H>, feed: Feed) -> (&str, &str) {
    match feed {
        Feed::Bookings => (&s.stream_name, &s.consumer_name),
        Feed::Sync => (&s.sync_stream_name, &s.sync_consumer_name),
    }
}

/// Creates the consumer or brings it to our settings; falls back to the existing one when
/// the server refuses the update.
async fn ensure_consumer<H: Handler>(s: &Shared<H>, feed: Feed) -> Result<PullConsumer, String> {
    let (stream_name, consumer_name) = feed_names(s, feed);
    let stream = s
        .bus
        .js
        .get_stream(stream_name)
        .await
        .map_err(|e| format!("stream {stream_name}: {e}"))?;
    let config = match feed {
        Feed::Bookings => consumer_config(s),
        Feed::Sync => sync_consumer_config(s),
    };
    match stream.create_consumer(config).await {
        Ok(c) => Ok(c),
        Err(e) => {
            tracing::warn!(error = %e, consumer = %consumer_name, "consumer create/update refused; using existing");
            stream
                .get_consumer(consumer_name)
                .await
                .map_err(|e2| format!("consumer {consumer_name}: {e}; {e2}"))
        }
    }
}

/// The lane of a message: the booking's `<tenant>.<key>` (the last two tokens of both
/// `bookings.<kind>.<tenant>.<key>` and `sync.<vendor>.<tenant>.<key>`), so an event and a
/// repair command of one booking share a lane.
fn lane_index(subject: &str, lanes: usize) -> usize {
    let mut parts = subject.rsplitn(3, '.');
    let key = parts.next().unwrap_or_default();
    let tenant = parts.next().unwrap_or_default();
    let mut h = DefaultHasher::new();
    tenant.hash(&mut h);
    key.hash(&mut h);
    usize::try_from(h.finish() % lanes.max(1) as u64).unwrap_or(0)
}

async fn run<H: Handler>(
    s: Arc<Shared<H>>,
    shutdown: CancellationToken,
    // The binding store's tasks: aborted with this future (a crash), or after the lanes.
    db_tasks: JoinSet<()>,
) -> Result<(), WorkerError> {
    // Keyed lanes: a booking always hashes to the same lane, lanes run in parallel.
    let mut lanes = Vec::with_capacity(s.cfg.concurrency);
    let mut lane_tasks = JoinSet::new();
    for _ in 0..s.cfg.concurrency {
        let (tx, rx) = mpsc::channel::<jetstream::Message>(4);
        lanes.push(tx);
        lane_tasks.spawn(lane(s.clone(), rx));
    }
    let info_task = tokio::spawn(info_loop(s.clone(), shutdown.clone()));
    let sync_feed = tokio::spawn(pull_loop(
        s.clone(),
        Feed::Sync,
        lanes.clone(),
        shutdown.clone(),
    ));
    let result = pull_loop(s.clone(), Feed::Bookings, lanes, shutdown.clone()).await;
    // Both feeds stop before the lanes drain (the lanes end when every sender is gone).
    shutdown.cancel();
    let sync_result = sync_feed
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))
        .and_then(|r| r);
    // Drain: lanes finish what they are doing, hand back what is queued, and stop.
    s.stopping.cancel();
    while lane_tasks.join_next().await.is_some() {}
    drop(db_tasks);
    info_task.abort();
    tracing::info!(worker = s.handler.name(), "worker stopped");
    result.and(sync_result)
}

/// Setting up a consumer while NATS is away: retried until shutdown, 400 ms doubling to 12.8 s.
const CONSUMER_SETUP: RetryPolicy = RetryPolicy::forever(Backoff::new(
    Duration::from_millis(400),
    Duration::from_millis(12_800),
));

/// Pulls one feed into the lanes until `shutdown`.
async fn pull_loop<H: Handler>(
    s: Arc<Shared<H>>,
    feed: Feed,
    lanes: Vec<mpsc::Sender<jetstream::Message>>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut setup = CONSUMER_SETUP.attempts();
    'outer: while !shutdown.is_cancelled() {
        let consumer = match ensure_consumer(&s, feed).await {
            Ok(c) => c,
            Err(e) => {
                let wait = setup.next_wait().unwrap_or(CONSUMER_SETUP.backoff.max);
                tracing::warn!(error = %e, ?wait, ?feed, "cannot set up the consumer; retrying");
                if sleep_unless_cancelled(wait, &shutdown).await {
                    continue;
                }
                break;
            }
        };
        if feed == Feed::Bookings {
            s.last_info_ok.store(now_ms(), Ordering::Relaxed);
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(s.cfg.batch)
            .heartbeat(s.cfg.heartbeat)
            .expires(s.cfg.heartbeat * 6)
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                let wait = setup.next_wait().unwrap_or(CONSUMER_SETUP.backoff.max);
                tracing::warn!(error = %e, ?wait, ?feed, "cannot start pulling; retrying");
                if sleep_unless_cancelled(wait, &shutdown).await {
                    continue;
                }
                break;
            }
        };
        setup.reset();
        let mut missed = 0u32;
        loop {
            // Only the BOOKINGS feed is watched by the info loop (one waiter for its Notify).
            let recreate = async {
                match feed {
                    Feed::Bookings => s.recreate.notified().await,
                    Feed::Sync => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                _ = recreate => {
                    tracing::warn!("recreating consumer");
                    continue 'outer;
                }
                n = messages.next() => n,
            };
            match next {
                Some(Ok(msg)) => {
                    missed = 0;
                    let idx = lane_index(msg.message.subject.as_str(), lanes.len());
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            let _ = msg.ack_with(AckKind::Nak(None)).await;
                            break 'outer;
                        }
                        permit = lanes[idx].reserve() => match permit {
                            Ok(p) => p.send(msg),
                            Err(_) => return Err(WorkerError::Task("a lane stopped".into())),
                        }
                    }
                }
                Some(Err(e)) => {
                    use jetstream::consumer::pull::MessagesErrorKind as K;
                    match e.kind() {
                        K::MissingHeartbeat => {
                            missed += 1;
                            s.metrics.missed_heartbeat();
                            tracing::warn!(missed, ?feed, "missed pull heartbeat");
                            if missed >= 3 {
                                continue 'outer;
                            }
                        }
                        K::ConsumerDeleted | K::NoResponders | K::RequestLimitExceeded => {
                            tracing::warn!(error = %e, ?feed, "consumer gone or refused; recreating");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue 'outer;
                        }
                        _ => {
                            tracing::warn!(error = %e, ?feed, "pull error; continuing");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                None => {
                    tracing::warn!(?feed, "message stream ended; recreating");
                    continue 'outer;
                }
            }
        }
    }
    Ok(())
}

async fn lane<H: Handler>(s: Arc<Shared<H>>, mut rx: mpsc::Receiver<jetstream::Message>) {
    while let Some(msg) = rx.recv().await {
        if s.stopping.is_cancelled() {
            // Not started: give it back now rather than after ack_wait.
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            continue;
        }
        s.metrics.in_flight(1);
        process(&s, msg).await;
        s.metrics.in_flight(-1);
    }
}

/// Reads consumer info periodically: pending gauge, readiness, and recreation when the
/// consumer was deleted under us.
async fn info_loop<H: Handler>(s: Arc<Shared<H>>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(s.cfg.info_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = s
            .bus
            .js
            .get_consumer_from_stream::<pull::Config, _, _>(&s.consumer_name, &s.stream_name)
            .await;
        match r {
            Ok(mut c) => match c.info().await {
                Ok(info) => {
                    s.metrics.pending(info.num_pending);
                    s.last_info_ok.store(now_ms(), Ordering::Relaxed);
                    if let Some(depth) = dlq_depth(&s).await {
                        s.metrics.dlq_depth(depth);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "consumer info"),
            },
            Err(e) => {
                tracing::warn!(error = %e, consumer = %s.consumer_name, "consumer info unavailable");
                if e.to_string().to_lowercase().contains("not found") {
                    s.recreate.notify_one();
                }
            }
        }
    }
}

/// Dead letters this worker has in the DLQ stream (per-subject counts of `dlq.<worker>.>`),
/// so an alert can fire on a growing DLQ without anyone running `accessctl`.
async fn dlq_depth<H: Handler>(s: &Shared<H>) -> Option<u64> {
    use futures::TryStreamExt as _;
    let stream = s
        .bus
        .js
        .get_stream(s.bus.stream_name(accesshub_domain::subjects::DLQ_STREAM))
        .await
        .ok()?;
    let filter = s
        .bus
        .subject(&accesshub_domain::subjects::dlq_of_worker(s.handler.name()));
    let mut subjects = stream.info_with_subjects(filter).await.ok()?;
    let mut total = 0u64;
    while let Ok(Some((_, count))) = subjects.try_next().await {
        total += count as u64;
    }
    Some(total)
}

fn limiter<H: Handler>(
    s: &Shared<H>,
    conn: &accesshub_connections::Connection,
) -> Arc<RateLimiter> {
    let key = (conn.tenant.clone(), conn.name.clone());
    let mut map = s.limiters.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key)
        .or_insert_with(|| Arc::new(RateLimiter::new(s.cfg.rate_limit, s.cfg.rate_burst)))
        .clone()
}

/// Runs `fut`, sending progress acks so a slow vendor call does not trigger a redelivery.
async fn with_progress<T>(
    msg: &jetstream::Message,
    every: Duration,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "progress ack");
                }
            }
        }
    }
}

async fn process<H: Handler>(s: &Shared<H>, msg: jetstream::Message) {
    let info = msg.info().ok().map(|i| {
        (
            u64::try_from(i.delivered).unwrap_or(1),
            i.stream_sequence,
            i.stream.to_owned(),
        )
    });
    let (delivered, seq, stream) = match info {
        Some((d, seq, st)) => (d.max(1), Some(seq), st),
        None => (1, None, s.stream_name.clone()),
    };
    let subject = s.bus.ns.strip(msg.message.subject.as_str()).to_owned();
    let span = tracing::info_span!(
        "worker.message",
        otel.kind = "consumer",
        worker = s.handler.name(),
        subject = %subject,
        delivered,
        event_id = tracing::field::Empty,
        revision = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if let Some(h) = &msg.message.headers {
        accesshub_telemetry::propagation::set_parent(&span, accesshub_telemetry::extract_nats(h));
    }
    let m = Msg {
        msg: &msg,
        subject: &subject,
        delivered,
        seq,
        stream,
    };
    // One progress timer for the whole message (lock wait, vendor call, record, DLQ copy):
    // a slow step must not let ack_wait expire and the message be redelivered meanwhile.
    // Boxed: the handling future embeds the handler's vendor calls (tens of KB); by value it
    // was copied whole at each wrapper and await — memcpy was ~15 % of the worker's
    // instructions (callgrind of worker-bench).
    let outcome = with_progress(&msg, s.cfg.progress_interval, Box::pin(handle(s, &m)))
        .instrument(span.clone())
        .await;
    span.record("outcome", outcome.as_str());
    s.metrics.outcome(outcome);
}

struct Msg<'a> {
    msg: &'a jetstream::Message,
    subject: &'a str,
    delivered: u64,
    seq: Option<u64>,
    stream: String,
}

fn header<'m>(msg: &'m jetstream::Message, name: &str) -> Option<&'m str> {
    msg.message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

async fn handle<H: Handler>(s: &Shared<H>, m: &Msg<'_>) -> Outcome {
    // Repair commands only count as such when they come from the SYNC stream.
    let from_sync = m.stream == s.sync_stream_name;
    if from_sync && header(m.msg, sync::HEADER_ACTION) == Some(SyncAction::Remove.as_str()) {
        return handle_remove(s, m).await;
    }
    // The reconciler found the vendor out of step with the revision already applied: apply
    // again even though the revision equals the binding's (never an older one).
    let force = from_sync && header(m.msg, sync::HEADER_FORCE) == Some("true");
    let event: Event = match serde_json::from_slice(&m.msg.message.payload) {
        Ok(e) => e,
        Err(e) => {
            let err = HandlerError::permanent(format!("payload is not a valid event: {e}"));
            return fail(s, m, None, err).await;
        }
    };
    let span = Span::current();
    span.record("event_id", tracing::field::display(event.id));
    span.record("revision", event.revision);
    if !s.handler.kinds().contains(&event.kind()) {
        ack(m.msg).await;
        return Outcome::Skipped;
    }
    let vendor = s.handler.vendor();
    let conn = match s
        .cfg
        .connections
        .for_site(&event.tenant, vendor, &event.site)
        .await
    {
        Ok(Some(c)) => Arc::new(c),
        Ok(None) => {
            match s.cfg.connections.uses_vendor(&event.tenant, vendor).await {
                Ok(false) => {
                    tracing::debug!(tenant = %event.tenant, "tenant has no connection to this vendor; skipped");
                    ack(m.msg).await;
                    return Outcome::Skipped;
                }
                Ok(true) => {}
                Err(e) => return fail(s, m, Some(&event), e.into()).await,
            }
            let err = HandlerError::permanent(format!(
                "no enabled {vendor} connection for tenant {:?} serving site {:?}: configure one (accessctl connections)",
                event.tenant, event.site
            ));
            return fail(s, m, Some(&event), err).await;
        }
        Err(e) => return fail(s, m, Some(&event), e.into()).await,
    };
    let key = BindingKey {
        tenant: event.tenant.clone(),
        vendor: vendor.as_str().to_owned(),
        kind: event.kind().as_str().to_owned(),
        booking_key: event.booking_key.clone(),
    };
    let asked = Instant::now();
    let mark = s.handler.marks_attempts();
    let locked = s.store.lock(&key, mark).await;
    s.metrics.binding_step("lock", asked.elapsed());
    let Held {
        guard,
        binding,
        first_attempt,
    } = match locked {
        Ok(l) => l,
        Err(e) => return fail(s, m, Some(&event), e.context("binding")).await,
    };
    if let Some(b) = &binding
        && (b.applied_revision > event.revision || (b.applied_revision == event.revision && !force))
    {
        drop(guard);
        tracing::debug!(
            applied = b.applied_revision,
            "stale or duplicate revision; skipped"
        );
        ack(m.msg).await;
        return Outcome::Skipped;
    }
    let ctx = ApplyContext {
        worker: s.handler.name(),
        reference: reference(&event.tenant, event.kind(), &event.booking_key),
        rate_limiter: limiter(s, &conn),
        connection: conn,
        attempt: m.delivered,
        last_attempt: i64::try_from(m.delivered).unwrap_or(i64::MAX) >= s.cfg.max_deliver,
        // The marker proves no earlier attempt of this booking; a redelivery is never first
        // (belt and braces for attempts made before markers existed).
        first_attempt: first_attempt && m.delivered == 1,
    };
    let started = Instant::now();
    let result = s.handler.apply(&ctx, &event, binding.as_ref()).await;
    match result {
        Ok(outcome) => {
            if !guard.still_held() {
                // The lock's session broke during the call: another replica may be on this
                // booking. Do not record; the redelivery re-checks the revision.
                drop(guard);
                let err = HandlerError::transient("lost the booking lock during the vendor call");
                return fail(s, m, Some(&event), err).await;
            }
            let rec = Record {
                key: key.clone(),
                revision: event.revision,
                event_id: event.id,
                vendor_ids: outcome.vendor_ids.clone(),
                status: outcome.status.clone(),
            };
            let asked = Instant::now();
            let saved = s.store.commit(rec).await;
            s.metrics.binding_step("commit", asked.elapsed());
            drop(guard);
            match saved {
                Ok(Committed::Recorded) => {}
                Ok(Committed::Superseded) => {
                    // Only possible after a lost lock: a newer revision was recorded meanwhile.
                    let err = HandlerError::transient(
                        "a newer revision was recorded by another worker during the vendor call",
                    );
                    return fail(s, m, Some(&event), err).await;
                }
                // The vendor already matches; the retry re-applies idempotently.
                Err(e) => return fail(s, m, Some(&event), e).await,
            }
            if let Err(e) = m.msg.double_ack().await {
                // Redelivery will be skipped by the revision check.
                tracing::warn!(error = %e, "ack not confirmed");
            }
            tracing::debug!(took_ms = started.elapsed().as_millis() as u64, status = %outcome.status, "applied");
            Outcome::Applied
        }
        Err(err) => {
            drop(guard);
            fail(s, m, Some(&event), err).await
        }
    }
}

/// A reconciler removal command: delete one stray vendor object, under the booking's lock.
async fn handle_remove<H: Handler>(s: &Shared<H>, m: &Msg<'_>) -> Outcome {
    let cmd: RemoveCommand = match serde_json::from_slice(&m.msg.message.payload) {
        Ok(c) => c,
        Err(e) => {
            let err = HandlerError::permanent(format!("payload is not a removal command: {e}"));
            return fail(s, m, None, err).await;
        }
    };
    let vendor = s.handler.vendor();
    if cmd.vendor != vendor.as_str() {
        ack(m.msg).await;
        return Outcome::Skipped;
    }
    let conn = match s
        .cfg
        .connections
        .by_name(&cmd.tenant, vendor, &cmd.connection)
        .await
    {
        Ok(Some(c)) => Arc::new(c),
        Ok(None) => {
            let err = HandlerError::permanent(format!(
                "no {vendor} connection {:?} for tenant {:?}",
                cmd.connection, cmd.tenant
            ));
            return fail(s, m, None, err).await;
        }
        Err(e) => return fail(s, m, None, e.into()).await,
    };
    let key = BindingKey {
        tenant: cmd.tenant.clone(),
        vendor: vendor.as_str().to_owned(),
        kind: cmd.kind.as_str().to_owned(),
        booking_key: cmd.booking_key.clone(),
    };
    let locked = s.store.lock(&key, false).await;
    let Held { guard, binding, .. } = match locked {
        Ok(l) => l,
        Err(e) => return fail(s, m, None, e.context("binding")).await,
    };
    let ctx = ApplyContext {
        worker: s.handler.name(),
        reference: reference(&cmd.tenant, cmd.kind, &cmd.booking_key),
        rate_limiter: limiter(s, &conn),
        connection: conn,
        attempt: m.delivered,
        last_attempt: i64::try_from(m.delivered).unwrap_or(i64::MAX) >= s.cfg.max_deliver,
        first_attempt: false,
    };
    let result = s.handler.remove(&ctx, &cmd, binding.as_ref()).await;
    match result {
        Ok(()) => {
            drop(guard);
            tracing::info!(reference = %cmd.reference, vendor_id = %cmd.vendor_id, run = cmd.run_id, "stray vendor object removed");
            ack(m.msg).await;
            Outcome::Applied
        }
        Err(err) => {
            drop(guard);
            fail(s, m, None, err).await
        }
    }
}

async fn ack(msg: &jetstream::Message) {
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(error = %e, "ack not confirmed");
    }
}

/// The error policy: NAK with delay, or DLQ + Term.
async fn fail<H: Handler>(
    s: &Shared<H>,
    m: &Msg<'_>,
    event: Option<&Event>,
    err: HandlerError,
) -> Outcome {
    let key = event.map(|e| BindingKey {
        tenant: e.tenant.clone(),
        vendor: s.handler.vendor().as_str().to_owned(),
        kind: e.kind().as_str().to_owned(),
        booking_key: e.booking_key.clone(),
    });
    match s.backoff.decide(&err, m.delivered, s.cfg.max_deliver) {
        Decision::Retry(delay) => {
            tracing::warn!(error = %err.message, attempt = m.delivered, ?delay, "transient failure; retrying");
            if let Some(k) = &key
                && let Err(e) = bindings::record_error(&s.pool, k, &err.message, false).await
            {
                tracing::debug!(error = %e, "record last_error");
            }
            if let Err(e) = m.msg.ack_with(AckKind::Nak(Some(delay))).await {
                tracing::warn!(error = %e, "nak failed; redelivery after ack_wait");
            }
            Outcome::Retried
        }
        Decision::DeadLetter => {
            let class = if err.class == ErrorClass::Transient {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            };
            let reason = if class == ErrorClass::Transient {
                format!(
                    "retries exhausted after {} attempts: {}",
                    m.delivered, err.message
                )
            } else {
                err.message.clone()
            };
            let dl = dlq::build(&dlq::Failure {
                worker: s.handler.name(),
                msg: m.msg,
                original_subject: m.subject,
                event,
                reason: &reason,
                class,
                attempts: m.delivered,
                stream: m.stream.clone(),
                stream_sequence: m.seq,
                // Our span's trace (a child of the publisher's); the header's trace when
                // spans are filtered out — the same trace id either way.
                trace_id: accesshub_telemetry::current_trace_id()
                    .or_else(|| header_trace_id(m.msg)),
            });
            if let Err(e) = dlq::publish(&s.bus, &dl).await {
                // Never Term without a durable copy: try again later.
                tracing::error!(error = %e, "DLQ publish failed; message kept");
                let _ = m
                    .msg
                    .ack_with(AckKind::Nak(Some(s.backoff.delay(m.delivered))))
                    .await;
                return Outcome::Retried;
            }
            if let Some(k) = &key
                && let Err(e) = bindings::record_error(&s.pool, k, &reason, true).await
            {
                tracing::warn!(error = %e, "record last_error");
            }
            tracing::error!(reason = %reason, class = %class, dlq_id = %dl.id, "dead-lettered");
            if let Err(e) = m.msg.double_ack_with(AckKind::Term).await {
                tracing::warn!(error = %e, "term not confirmed");
            }
            Outcome::DeadLettered
        }
    }
}

/// Trace id of a W3C `traceparent` header (`00-<trace>-<span>-<flags>`).
fn header_trace_id(msg: &jetstream::Message) -> Option<String> {
    let tp = msg
        .message
        .headers
        .as_ref()?
        .get(accesshub_domain::headers::TRACEPARENT)?
        .as_str();
    let trace = tp.split('-').nth(1)?;
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32))
        .then(|| trace.to_owned())
}
