//! The worker metrics (names fixed: the dashboard uses them).

use accesshub_telemetry::{
    Registry,
    metrics::{CounterVec, GaugeVec, HistogramVec, labels},
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

/// Outcome label of `accesshub_worker_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Vendor now matches the event.
    Applied,
    /// Stale/equal revision or a kind this worker does not handle.
    Skipped,
    /// Transient failure, NAKed with a delay.
    Retried,
    /// Published to the DLQ and terminated.
    DeadLettered,
    /// The connection's circuit breaker is open: parked in Postgres and acknowledged, to
    /// apply when the vendor answers again.
    Parked,
}

impl Outcome {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Skipped => "skipped",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Parked => "parked",
        }
    }
}

#[derive(Clone)]
pub(crate) struct WorkerMetrics {
    worker: String,
    pending: GaugeVec,
    dlq_depth: GaugeVec,
    heartbeats: CounterVec,
    ignored: CounterVec,
    /// Series touched for every message, resolved once: building and hashing label strings
    /// per message cost more than the counting.
    by_outcome: [Counter; 5],
    in_flight: Gauge,
    lock_step: Histogram,
    commit_step: Histogram,
}

impl WorkerMetrics {
    pub(crate) fn new(registry: &Registry, worker: &str) -> Self {
        vendor_http::register_metrics(registry);
        // The worker unseals its connections' vendor secrets.
        registry.register(
            accesshub_store::DECRYPT_FAILURES,
            accesshub_store::DECRYPT_FAILURES_HELP,
            accesshub_store::decrypt_failures(worker),
        );
        let messages: CounterVec = registry.counter(
            "accesshub_worker_messages",
            "Messages handled by outcome (applied|skipped|retried|dead_lettered|parked)",
        );
        let in_flight: GaugeVec =
            registry.gauge("accesshub_worker_in_flight", "Messages being processed");
        let binding_steps: HistogramVec = registry.histogram(
            "accesshub_worker_binding_step_seconds",
            "Time a message waited for its booking lock + binding read (step=lock) and for \
             its group commit (step=commit), queueing included",
        );
        let outcome = |o: Outcome| {
            messages
                .get_or_create(&labels([("worker", worker), ("outcome", o.as_str())]))
                .clone()
        };
        let step = |st: &str| {
            binding_steps
                .get_or_create(&labels([("worker", worker), ("step", st)]))
                .clone()
        };
        WorkerMetrics {
            worker: worker.to_owned(),
            pending: registry.gauge(
                "accesshub_consumer_pending",
                "Messages in the stream not yet delivered to the worker's consumer",
            ),
            dlq_depth: registry.gauge(
                "accesshub_dlq_depth",
                "Dead letters of this worker currently held in the DLQ stream",
            ),
            ignored: registry.counter(
                "accesshub_worker_ignored",
                "Events needing nothing at this vendor because access control is off for them (site not served, unmapped), by reason",
            ),
            heartbeats: registry.counter(
                "accesshub_worker_missed_heartbeats",
                "Pull requests whose idle heartbeat went missing",
            ),
            by_outcome: [
                outcome(Outcome::Applied),
                outcome(Outcome::Skipped),
                outcome(Outcome::Retried),
                outcome(Outcome::DeadLettered),
                outcome(Outcome::Parked),
            ],
            in_flight: in_flight
                .get_or_create(&labels([("worker", worker)]))
                .clone(),
            lock_step: step("lock"),
            commit_step: step("commit"),
        }
    }

    pub(crate) fn outcome(&self, o: Outcome) {
        let i = match o {
            Outcome::Applied => 0,
            Outcome::Skipped => 1,
            Outcome::Retried => 2,
            Outcome::DeadLettered => 3,
            Outcome::Parked => 4,
        };
        self.by_outcome[i].inc();
    }

    pub(crate) fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    pub(crate) fn pending(&self, n: u64) {
        self.pending
            .get_or_create(&labels([("worker", &self.worker)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn dlq_depth(&self, n: u64) {
        self.dlq_depth
            .get_or_create(&labels([("worker", &self.worker)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `step` is `lock` or `commit`.
    pub(crate) fn binding_step(&self, step: &str, d: std::time::Duration) {
        let h = if step == "lock" {
            &self.lock_step
        } else {
            &self.commit_step
        };
        h.observe(d.as_secs_f64());
    }

    /// An event skipped because access control is off for it (`reason`: `site_not_served`,
    /// `unmapped`): counted, not dead-lettered.
    pub(crate) fn ignored(&self, reason: &str) {
        self.ignored
            .get_or_create(&labels([("worker", &self.worker), ("reason", reason)]))
            .inc();
    }

    pub(crate) fn missed_heartbeat(&self) {
        self.heartbeats
            .get_or_create(&labels([("worker", &self.worker)]))
            .inc();
    }
}
