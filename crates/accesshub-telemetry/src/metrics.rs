//! A shared Prometheus registry; each component registers its own metrics on it.

use std::sync::{Arc, Mutex};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
};

/// Label set used by our metric families: ordered `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;
/// A labelled counter.
pub type CounterVec = Family<Labels, Counter>;
/// A labelled gauge.
pub type GaugeVec = Family<Labels, Gauge>;
/// A labelled histogram (seconds).
pub type HistogramVec = Family<Labels, Histogram, fn() -> Histogram>;

/// Cheap to clone; every clone registers into and encodes the same registry.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<prometheus_client::registry::Registry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Builds label pairs from `&str` tuples.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a labelled counter (`_total` is appended by the exposition format).
    pub fn counter(&self, name: &str, help: &str) -> CounterVec {
        let fam = CounterVec::default();
        if let Ok(mut r) = self.inner.lock() {
            r.register(name, help, fam.clone());
        }
        fam
    }

    /// Registers a labelled gauge.
    pub fn gauge(&self, name: &str, help: &str) -> GaugeVec {
        let fam = GaugeVec::default();
        if let Ok(mut r) = self.inner.lock() {
            r.register(name, help, fam.clone());
        }
        fam
    }

    /// Registers a labelled latency histogram in seconds.
    pub fn histogram(&self, name: &str, help: &str) -> HistogramVec {
        let fam = HistogramVec::new_with_constructor(latency_histogram as fn() -> Histogram);
        if let Ok(mut r) = self.inner.lock() {
            r.register(name, help, fam.clone());
        }
        fam
    }

    /// Registers an already-built metric, e.g. process-wide families (vendor-http's) that
    /// several registries expose.
    pub fn register<M: prometheus_client::registry::Metric>(
        &self,
        name: &str,
        help: &str,
        metric: M,
    ) {
        if let Ok(mut r) = self.inner.lock() {
            r.register(name, help, metric);
        }
    }

    /// Text exposition for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.inner.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}
