//! The consume loop: durable pull consumers ([`consumer`]) → the pull loops ([`pull`]) → the
//! keyed dispatch, one booking at a time and `concurrency` at once ([`dispatch`]) → per message the revision check, the handler, the binding and double ack, or the
//! error policy: NAK with delay / DLQ + Term ([`process`]); progress acks and the periodic
//! consumer-info / DLQ-depth readings ([`progress`]). This file holds what they share and the
//! worker's start and stop.

mod breakers;
mod consumer;
mod dispatch;
mod process;
mod progress;
mod pull;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use accesshub_bus::Bus;
use accesshub_domain::subjects;
use accesshub_retry::Backoff;
use accesshub_telemetry::ops::ReadinessCheck;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use vendor_http::RateLimiter;

use crate::{
    WorkerError, config::WorkerConfig, handler::Handler, metrics::WorkerMetrics, policy::NakPolicy,
    store::BindingStore,
};
use consumer::Feed;
use dispatch::Dispatcher;
use progress::info_loop;
use pull::pull_loop;

struct Shared<H: Handler> {
    handler: H,
    cfg: WorkerConfig,
    bus: Bus,
    pool: PgPool,
    /// Booking locks, binding reads and group commit (batched across the messages in flight).
    store: BindingStore,
    metrics: WorkerMetrics,
    backoff: NakPolicy,
    consumer_name: String,
    stream_name: String,
    /// Durable consumer of the reconciler's repair commands (`sync.<vendor>.>` on SYNC).
    sync_consumer_name: String,
    sync_stream_name: String,
    limiters: Mutex<HashMap<(String, String), Arc<RateLimiter>>>,
    /// The handler's vendor client per connection (rebuilt when the connection changes).
    clients: crate::cache::ClientCache<H::Client>,
    /// What handler contexts share (pool, bus, binding store), cloned once per message.
    handles: Arc<crate::services::Handles>,
    /// Unix millis of the last successful consumer info (readiness).
    last_info_ok: AtomicI64,
    /// Set at shutdown: queued messages are handed back instead of processed.
    stopping: CancellationToken,
    /// Set when the consumer must be recreated (deleted, broken pull).
    recreate: tokio::sync::Notify,
    /// One circuit breaker per connection.
    breakers: breakers::Breakers,
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
    // Messages in flight hold no connection across the vendor call. Error records and readiness (single-row
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
        clients: crate::cache::ClientCache::new(),
        handles: Arc::new(crate::services::Handles {
            pool: pool.clone(),
            bus: bus.clone(),
            store: store.clone(),
        }),
        last_info_ok: AtomicI64::new(0),
        stopping: CancellationToken::new(),
        recreate: tokio::sync::Notify::new(),
        breakers: breakers::Breakers::new(
            &cfg.registry,
            handler.vendor().as_str(),
            crate::breaker::BreakerPolicy {
                threshold: cfg.breaker_threshold,
                open: Backoff::new(cfg.breaker_open_base, cfg.breaker_open_max),
                probe_timeout: cfg.ack_wait * 2,
            },
        ),
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

/// Holds the worker weakly: a handle kept for its readiness must not keep a crashed
/// ([`WorkerHandle::abort`]) worker's NATS connection open, or the server would go on handing
/// messages to the dead worker's pull requests until they expire.
fn readiness<H: Handler>(shared: Arc<Shared<H>>) -> ReadinessCheck {
    let shared = Arc::downgrade(&shared);
    Arc::new(move || {
        let s = shared.upgrade();
        Box::pin(async move {
            let Some(s) = s else {
                return Err("worker stopped".to_owned());
            };
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

async fn run<H: Handler>(
    s: Arc<Shared<H>>,
    shutdown: CancellationToken,
    // The binding store's tasks: aborted with this future (a crash), or after the drain.
    db_tasks: JoinSet<()>,
) -> Result<(), WorkerError> {
    // Shared by both feeds; dropped with this future and the sync feed (a crash), which
    // aborts every booking's task.
    let dispatcher = Arc::new(Dispatcher::new(s.clone()));
    // Aborted with this future (a crash must not leave a feed pulling for a dead worker).
    let info_task = AbortOnDropHandle::new(tokio::spawn(info_loop(s.clone(), shutdown.clone())));
    let breaker_task = AbortOnDropHandle::new(tokio::spawn(breakers::breaker_loop(
        s.clone(),
        shutdown.clone(),
    )));
    let sync_feed = AbortOnDropHandle::new(tokio::spawn(pull_loop(
        s.clone(),
        Feed::Sync,
        dispatcher.clone(),
        shutdown.clone(),
    )));
    let result = pull_loop(
        s.clone(),
        Feed::Bookings,
        dispatcher.clone(),
        shutdown.clone(),
    )
    .await;
    // Both feeds stop before the dispatch drains.
    shutdown.cancel();
    let sync_result = sync_feed
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))
        .and_then(|r| r);
    // Drain: messages being processed finish, those waiting are handed back.
    s.stopping.cancel();
    dispatcher.drain().await;
    drop(db_tasks);
    info_task.abort();
    breaker_task.abort();
    tracing::info!(worker = s.handler.name(), "worker stopped");
    result.and(sync_result)
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
