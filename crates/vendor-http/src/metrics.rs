//! Vendor call metrics. The families are process-wide (every client of every connection
//! reports into the same series, without plumbing) and exposed by each registry that asks.

use std::{
    collections::HashMap,
    sync::{OnceLock, RwLock},
    time::Duration,
};

use accesshub_domain::ErrorClass;
use accesshub_telemetry::{
    Registry,
    metrics::{CounterVec, HistogramVec, labels},
};
use prometheus_client::metrics::histogram::Histogram;

const DURATION: &str = "accesshub_vendor_request_duration_seconds";
const DURATION_HELP: &str = "Vendor HTTP call latency by vendor and operation";
const ERRORS: &str = "accesshub_vendor_errors";
const ERRORS_HELP: &str = "Vendor call failures by vendor and class (transient|permanent)";

struct Families {
    duration: HistogramVec,
    errors: CounterVec,
    /// The duration series of each (vendor, operation) already seen: a vendor call costs a
    /// read lock and a clone instead of building and hashing four label strings.
    resolved: RwLock<HashMap<(&'static str, &'static str), Histogram>>,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        // A scratch registry builds the families with the shared bucket layout.
        let scratch = Registry::new();
        Families {
            duration: scratch.histogram(DURATION, DURATION_HELP),
            errors: scratch.counter(ERRORS, ERRORS_HELP),
            resolved: RwLock::new(HashMap::new()),
        }
    })
}

/// Exposes `accesshub_vendor_request_duration_seconds{vendor,operation}` and
/// `accesshub_vendor_errors_total{vendor,class}` in `registry` (once per registry).
pub fn register_metrics(registry: &Registry) {
    let f = families();
    registry.register(DURATION, DURATION_HELP, f.duration.clone());
    registry.register(ERRORS, ERRORS_HELP, f.errors.clone());
}

pub(crate) fn duration(vendor: &'static str, operation: &'static str, d: Duration) {
    let f = families();
    let known = f
        .resolved
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(vendor, operation))
        .cloned();
    let h = known.unwrap_or_else(|| {
        let h = f
            .duration
            .get_or_create(&labels([("vendor", vendor), ("operation", operation)]))
            .clone();
        f.resolved
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((vendor, operation), h.clone());
        h
    });
    h.observe(d.as_secs_f64());
}

pub(crate) fn error(vendor: &str, class: ErrorClass) {
    families()
        .errors
        .get_or_create(&labels([("vendor", vendor), ("class", class.as_str())]))
        .inc();
}
