//! The service's own metrics, registered on the shared registry.

use accesshub_telemetry::{
    Registry,
    metrics::{CounterVec, GaugeVec, labels},
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

/// Counters and gauges of ingest and the outbox.
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    accepted: CounterVec,
    rejected: CounterVec,
    /// `accesshub_outbox_published_total`.
    pub outbox_published: Counter,
    /// `accesshub_outbox_pending`.
    pub outbox_pending: Gauge,
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
        IngestMetrics {
            accepted: registry.counter(
                "accesshub_ingest_accepted",
                "Deliveries accepted as new events",
            ),
            rejected: registry.counter(
                "accesshub_ingest_rejected",
                "Deliveries rejected, by reason",
            ),
            outbox_published: published.get_or_create(&Vec::new()).clone(),
            outbox_pending: pending.get_or_create(&Vec::new()).clone(),
        }
    }

    /// One accepted delivery of `source`.
    pub fn accepted(&self, source: &str) {
        self.accepted
            .get_or_create(&labels([("source", source)]))
            .inc();
    }

    /// One rejected delivery of `source` for `reason`.
    pub fn rejected(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&labels([("source", source), ("reason", reason)]))
            .inc();
    }
}
