//! The service's own metrics, registered on the shared registry.

use accesshub_telemetry::{
    Registry,
    metrics::{CounterVec, GaugeVec, labels},
};
use prometheus_client::metrics::{
    counter::Counter,
    gauge::Gauge,
    histogram::{Histogram, exponential_buckets},
};

/// Counters and gauges of ingest and the outbox.
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    accepted: CounterVec,
    /// `accepted`'s child per upstream, looked up once: one per webhook otherwise built and
    /// hashed a label set of owned strings.
    accepted_by_source: std::sync::Arc<Vec<(&'static str, Counter)>>,
    rejected: CounterVec,
    ignored: CounterVec,
    /// `accesshub_outbox_published_total`.
    pub outbox_published: Counter,
    /// `accesshub_outbox_pending`.
    pub outbox_pending: Gauge,
    /// `accesshub_ingest_commit_batch_size`: deliveries per group-commit transaction. Small
    /// batches at high load mean the committers are not amortizing the commit.
    pub commit_batch: Histogram,
    /// `accesshub_outbox_relay_batch_size`: rows published per relay pass.
    pub relay_batch: Histogram,
    /// `accesshub_ingest_commit_seconds`: how long one batch statement took, commit
    /// included: the floor of every webhook's latency.
    pub commit_seconds: Histogram,
    /// `accesshub_ingest_receipts_pruned_total`: receipts deleted after their retention.
    pub receipts_pruned: Counter,
    /// `accesshub_ingest_source_lookups_total`: registrations read from the database (cache
    /// misses and refreshes). Climbing with unknown tenants means someone probes tenant ids.
    pub source_lookups: Counter,
    /// `accesshub_secret_decrypt_failures_total{component="booking-ingest"}`: stored webhook
    /// secrets that do not open with the configured keys (answered 503). Alert on any.
    pub decrypt_failures: Counter,
    /// `accesshub_keyreq_callbacks_total{outcome}` and `accesshub_keyreq_callbacks_pending`.
    pub callbacks: crate::keyreq_callback::CallbackMetrics,
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

impl IngestMetrics {
    /// Registers everything on `registry`.
    pub fn new(registry: &Registry) -> Self {
        let published: CounterVec = registry.counter(
            "accesshub_outbox_published",
            "Outbox rows published to JetStream (PubAck received)",
        );
        let pending: GaugeVec = registry.gauge(
            "accesshub_outbox_pending",
            "Outbox rows waiting to be published",
        );
        let accepted: CounterVec = registry.counter(
            "accesshub_ingest_accepted",
            "Deliveries accepted as new events",
        );
        let accepted_by_source = crate::upstream::inbound_sources()
            .map(|s| {
                let s = s.as_str();
                (s, accepted.get_or_create(&labels([("source", s)])).clone())
            })
            .collect();
        IngestMetrics {
            accepted,
            accepted_by_source: std::sync::Arc::new(accepted_by_source),
            rejected: registry.counter(
                "accesshub_ingest_rejected",
                "Deliveries rejected, by reason",
            ),
            ignored: registry.counter(
                "accesshub_ingest_ignored",
                "Deliveries answered 2xx but deliberately not acted on, by source and reason",
            ),
            outbox_published: published.get_or_create(&Vec::new()).clone(),
            receipts_pruned: {
                let c: CounterVec = registry.counter(
                    "accesshub_ingest_receipts_pruned",
                    "Delivery receipts deleted after their retention",
                );
                c.get_or_create(&Vec::new()).clone()
            },
            source_lookups: {
                let c: CounterVec = registry.counter(
                    "accesshub_ingest_source_lookups",
                    "Tenant source registrations read from the database",
                );
                c.get_or_create(&Vec::new()).clone()
            },
            decrypt_failures: {
                // The process-wide family (accesshub-store), which also counts the connection
                // secrets this service opens to judge ignored events.
                let c = accesshub_store::decrypt_failures(crate::SERVICE);
                registry.register(
                    accesshub_store::DECRYPT_FAILURES,
                    accesshub_store::DECRYPT_FAILURES_HELP,
                    c.clone(),
                );
                c.get_or_create(&labels([("component", crate::SERVICE)]))
                    .clone()
            },
            outbox_pending: pending.get_or_create(&Vec::new()).clone(),
            callbacks: crate::keyreq_callback::CallbackMetrics::new(registry),
            commit_batch: {
                let h = batch_histogram();
                registry.register(
                    "accesshub_ingest_commit_batch_size",
                    "Deliveries written per group-commit transaction",
                    h.clone(),
                );
                h
            },
            commit_seconds: {
                let h = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
                registry.register(
                    "accesshub_ingest_commit_seconds",
                    "Time to write and commit one batch of deliveries",
                    h.clone(),
                );
                h
            },
            relay_batch: {
                let h = batch_histogram();
                registry.register(
                    "accesshub_outbox_relay_batch_size",
                    "Outbox rows published per relay pass",
                    h.clone(),
                );
                h
            },
        }
    }

    /// One accepted delivery of `source`.
    pub fn accepted(&self, source: &str) {
        match self.accepted_by_source.iter().find(|(s, _)| *s == source) {
            Some((_, c)) => {
                c.inc();
            }
            None => {
                self.accepted
                    .get_or_create(&labels([("source", source)]))
                    .inc();
            }
        }
    }

    /// One delivery of `source` deliberately ignored for `reason`
    /// (`accesshub_ingest_ignored_total{source,reason}`).
    pub fn ignored(&self, source: &str, reason: &str) {
        self.ignored
            .get_or_create(&labels([("source", source), ("reason", reason)]))
            .inc();
    }

    /// One rejected delivery of `source` for `reason`.
    pub fn rejected(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&labels([("source", source), ("reason", reason)]))
            .inc();
    }
}
