//! `/healthz`, `/readyz`, `/metrics` and HTTP request metrics, mounted by every service.

use std::{future::Future, pin::Pin, sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};

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
        }
    }
}

/// axum middleware recording [`HttpMetrics`]; use with `middleware::from_fn_with_state`.
pub async fn track_http(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    m.requests
        .get_or_create(&labels([
            ("service", &m.service),
            ("route", &route),
            ("status", &status),
        ]))
        .inc();
    m.duration
        .get_or_create(&labels([("service", &m.service), ("route", &route)]))
        .observe(start.elapsed().as_secs_f64());
    resp
}
