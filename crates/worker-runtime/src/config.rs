//! Worker settings, each with a production default and an `ACCESSHUB_WORKER_*` variable.

use std::{sync::Arc, time::Duration};

use accesshub_config::{CommonConfig, ConfigError, env_duration, env_or};
use accesshub_telemetry::Registry;

use crate::source::ConnectionSource;

/// Everything the runtime needs to run one worker.
#[derive(Clone)]
pub struct WorkerConfig {
    /// NATS, Postgres, namespace, HTTP address.
    pub common: CommonConfig,
    /// Where connections come from.
    pub connections: Arc<dyn ConnectionSource>,
    /// Metrics registry exposed on `/metrics`.
    pub registry: Registry,
    /// Messages processed at once (one booking never twice at once; a free slot goes to the
    /// booking that has waited longest). Slots are cheap; what they buy is messages in flight
    /// while each waits on its lock batch, vendor call, group commit and double ack (rate ≈
    /// slots ÷ that time: with a vendor answering in 100 ms and two calls per event, 512 slots
    /// allow 2,560 events/s), and larger lock and commit batches (less CPU per event).
    /// Default 512: the worker bench drained 4.9–5.1k events/s with 512 where 256 managed
    /// 4.2–4.6k (CPU per event 358–375 vs 385–415 µs), p99 at 1k/s 11–28 ms either way
    /// (2026-11-23). Each message in flight holds one Postgres advisory lock (see
    /// docs/deploy.md on the lock table). The vendor's rate limit still bounds vendor calls.
    pub concurrency: usize,
    /// Consumer `ack_wait`: how long a message may be unacknowledged before redelivery.
    pub ack_wait: Duration,
    /// Consumer `max_deliver`; the last delivery's failure goes to the DLQ.
    pub max_deliver: i64,
    /// Consumer `max_ack_pending` (bounds in-flight messages across replicas).
    pub max_ack_pending: i64,
    /// Messages per pull request.
    pub batch: usize,
    /// Idle heartbeat of pull requests (missed ones are counted and logged).
    pub heartbeat: Duration,
    /// First retry delay (the exponential backoff's base).
    pub backoff_base: Duration,
    /// Largest computed retry delay.
    pub backoff_max: Duration,
    /// Largest `Retry-After` honoured (a broken vendor must not park a message for days).
    pub retry_after_max: Duration,
    /// Progress-ack interval during long vendor calls (default `ack_wait / 3`).
    pub progress_interval: Duration,
    /// Vendor calls per second per connection in this replica (0 = unlimited): each replica
    /// has its own limiter, so N replicas reach up to N × this rate at one vendor.
    pub rate_limit: f64,
    /// Burst of the per-connection rate limit.
    pub rate_burst: u32,
    /// How long a small batch of booking locks or binding records waits for more before its
    /// statement runs (fewer, larger statements: less CPU per event, this much more latency).
    pub store_linger: Duration,
    /// How often consumer info is read (pending gauge, readiness).
    pub info_interval: Duration,
    /// Readiness fails when consumer info has not been read for this long.
    pub ready_max_age: Duration,
    /// Transient vendor failures in a row that open a connection's circuit breaker (its
    /// events are then parked in Postgres and acknowledged instead of retried towards the
    /// DLQ); 0 disables the breaker. Keep it below `max_deliver`, so the breaker opens before
    /// a message's retries run out.
    pub breaker_threshold: u32,
    /// How long an opened breaker waits before its first probe (doubling per failed probe).
    pub breaker_open_base: Duration,
    /// Longest wait between probes of an open breaker.
    pub breaker_open_max: Duration,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("service", &self.common.service)
            .field("concurrency", &self.concurrency)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliver", &self.max_deliver)
            .field("max_ack_pending", &self.max_ack_pending)
            .field("breaker_threshold", &self.breaker_threshold)
            .finish_non_exhaustive()
    }
}

impl WorkerConfig {
    /// Production defaults.
    pub fn new(common: CommonConfig, connections: Arc<dyn ConnectionSource>) -> Self {
        let ack_wait = Duration::from_secs(30);
        WorkerConfig {
            common,
            connections,
            registry: Registry::new(),
            concurrency: 512,
            ack_wait,
            max_deliver: 10,
            max_ack_pending: 2000,
            batch: 200,
            heartbeat: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            retry_after_max: Duration::from_secs(900),
            progress_interval: ack_wait / 3,
            rate_limit: 50.0,
            rate_burst: 50,
            store_linger: Duration::from_millis(1),
            info_interval: Duration::from_secs(5),
            ready_max_age: Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_open_base: Duration::from_secs(5),
            breaker_open_max: Duration::from_secs(300),
        }
    }

    /// Defaults overridden by `ACCESSHUB_WORKER_CONCURRENCY`, `_ACK_WAIT`, `_MAX_DELIVER`,
    /// `_MAX_ACK_PENDING`, `_BATCH`, `_BACKOFF_BASE`, `_BACKOFF_MAX`, `_RATE_LIMIT`, `_RATE_BURST`,
    /// `_STORE_LINGER`, `_BREAKER_THRESHOLD`, `_BREAKER_OPEN_BASE`, `_BREAKER_OPEN_MAX`.
    pub fn from_env(
        common: CommonConfig,
        connections: Arc<dyn ConnectionSource>,
    ) -> Result<Self, ConfigError> {
        let d = Self::new(common, connections);
        let ack_wait = env_duration("ACCESSHUB_WORKER_ACK_WAIT", d.ack_wait)?;
        Ok(WorkerConfig {
            concurrency: env_or("ACCESSHUB_WORKER_CONCURRENCY", d.concurrency)?.max(1),
            ack_wait,
            progress_interval: ack_wait / 3,
            max_deliver: env_or("ACCESSHUB_WORKER_MAX_DELIVER", d.max_deliver)?.max(1),
            max_ack_pending: env_or("ACCESSHUB_WORKER_MAX_ACK_PENDING", d.max_ack_pending)?,
            batch: env_or("ACCESSHUB_WORKER_BATCH", d.batch)?.max(1),
            backoff_base: env_duration("ACCESSHUB_WORKER_BACKOFF_BASE", d.backoff_base)?,
            backoff_max: env_duration("ACCESSHUB_WORKER_BACKOFF_MAX", d.backoff_max)?,
            rate_limit: env_or("ACCESSHUB_WORKER_RATE_LIMIT", d.rate_limit)?,
            rate_burst: env_or("ACCESSHUB_WORKER_RATE_BURST", d.rate_burst)?,
            store_linger: env_duration("ACCESSHUB_WORKER_STORE_LINGER", d.store_linger)?,
            breaker_threshold: env_or("ACCESSHUB_WORKER_BREAKER_THRESHOLD", d.breaker_threshold)?,
            breaker_open_base: env_duration(
                "ACCESSHUB_WORKER_BREAKER_OPEN_BASE",
                d.breaker_open_base,
            )?,
            breaker_open_max: env_duration(
                "ACCESSHUB_WORKER_BREAKER_OPEN_MAX",
                d.breaker_open_max,
            )?,
            ..d
        })
    }

    /// Fast settings for tests: short ack wait and backoff, so retries happen in milliseconds.
    /// The circuit breaker is off (tests of the retry policy see retries run out); tests of
    /// the breaker set `breaker_threshold`.
    pub fn for_test(common: CommonConfig, connections: Arc<dyn ConnectionSource>) -> Self {
        WorkerConfig {
            concurrency: 8,
            ack_wait: Duration::from_secs(3),
            progress_interval: Duration::from_secs(1),
            max_deliver: 5,
            heartbeat: Duration::from_secs(1),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            retry_after_max: Duration::from_secs(10),
            rate_limit: 0.0,
            info_interval: Duration::from_millis(500),
            ready_max_age: Duration::from_secs(5),
            breaker_threshold: 0,
            breaker_open_base: Duration::from_millis(200),
            breaker_open_max: Duration::from_secs(2),
            ..Self::new(common, connections)
        }
    }
}
