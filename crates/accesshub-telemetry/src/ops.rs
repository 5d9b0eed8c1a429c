//! `/healthz`, `/readyz`, `/metrics` and HTTP request metrics, mounted by every service.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

use crate::metrics::{CounterVec, HistogramVec, Registry, labels};

/// Readiness probe: `Ok` when the service can do its job, `Err(reason)` otherwise.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    ready: ReadinessCheck,
}

/// The operational endpoints: liveness (process answers), readiness (dependencies
/// reachable, as the check says) and Prometheus exposition.
pub fn ops_router(registry: Registry, ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState { registry, ready })
}

async fn readyz(State(s): State<OpsState>) -> Response {
    match (s.ready)().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn metrics(State(s): State<OpsState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.registry.encode(),
    )
        .into_response()
}

/// Request counters and latency histograms labelled by service, route and status.
#[derive(Clone)]
pub struct HttpMetrics {
    service: String,
    requests: CounterVec,
    duration: HistogramVec,
    /// Handles per route already looked up: the families' label sets (owned strings, hashed
    /// under the family's lock) are built once per route and status, not once per request.
    routes: Arc<RwLock<HashMap<String, RouteHandles>>>,
}

#[derive(Clone)]
struct RouteHandles {
    duration: Histogram,
    by_status: Vec<(u16, Counter)>,
}

impl HttpMetrics {
    /// Registers `accesshub_http_requests` and `accesshub_http_request_duration_seconds`.
    pub fn new(registry: &Registry, service: &str) -> Self {
        HttpMetrics {
            service: service.to_owned(),
            requests: registry.counter("accesshub_http_requests", "HTTP requests served"),
            duration: registry.histogram(
                "accesshub_http_request_duration_seconds",
                "HTTP request latency",
            ),
            routes: Arc::default(),
        }
    }

    /// Counts one request of `route` answered with `status` that took `secs`.
    pub fn observe(&self, route: &str, status: u16, secs: f64) {
        if let Ok(m) = self.routes.read()
            && let Some(h) = m.get(route)
            && let Some((_, counter)) = h.by_status.iter().find(|(s, _)| *s == status)
        {
            counter.inc();
            h.duration.observe(secs);
            return;
        }
        let (duration, counter) = self.handles(route, status);
        counter.inc();
        duration.observe(secs);
    }

    fn handles(&self, route: &str, status: u16) -> (Histogram, Counter) {
        let counter = self
            .requests
            .get_or_create(&labels([
                ("service", &self.service),
                ("route", route),
                ("status", &status.to_string()),
            ]))
            .clone();
        let duration = self
            .duration
            .get_or_create(&labels([("service", &self.service), ("route", route)]))
            .clone();
        if let Ok(mut m) = self.routes.write() {
            let h = m.entry(route.to_owned()).or_insert_with(|| RouteHandles {
                duration: duration.clone(),
                by_status: Vec::new(),
            });
            if !h.by_status.iter().any(|(s, _)| *s == status) {
                h.by_status.push((status, counter.clone()));
            }
        }
        (duration, counter)
    }
}

/// axum middleware recording [`HttpMetrics`]; use with `middleware::from_fn_with_state`.
pub async fn track_http(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let start = Instant::now();
    let resp = next.run(req).await;
    m.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C: every service's graceful-stop trigger.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_into_the_registered_families() {
        let registry = Registry::default();
        let m = HttpMetrics::new(&registry, "svc");
        m.observe("/a", 202, 0.001);
        m.clone().observe("/a", 202, 0.002);
        m.observe("/a", 401, 0.001);
        m.observe("/b", 202, 0.001);
        let text = registry.encode();
        for line in [
            r#"accesshub_http_requests_total{service="svc",route="/a",status="202"} 2"#,
            r#"accesshub_http_requests_total{service="svc",route="/a",status="401"} 1"#,
            r#"accesshub_http_requests_total{service="svc",route="/b",status="202"} 1"#,
            r#"accesshub_http_request_duration_seconds_count{service="svc",route="/a"} 3"#,
            r#"accesshub_http_request_duration_seconds_count{service="svc",route="/b"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }
}
