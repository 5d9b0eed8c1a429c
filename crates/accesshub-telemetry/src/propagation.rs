//! W3C trace context across HTTP and NATS, so a webhook, its event, the worker's vendor
//! calls and any DLQ entry share one trace (ARCHITECTURE.md, principle 7).

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector},
    trace::TraceContextExt as _,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);
impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsExtractor<'a>(&'a async_nats::HeaderMap);
impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

struct HttpInjector<'a>(&'a mut http::HeaderMap);
impl Injector for HttpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);
impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's context into NATS headers.
pub fn inject_nats(headers: &mut async_nats::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut NatsInjector(headers))
    });
}

/// Reads a remote parent context from NATS headers.
pub fn extract_nats(headers: &async_nats::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&NatsExtractor(headers)))
}

/// Writes the current span's context into HTTP headers (outgoing vendor calls).
pub fn inject_http(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HttpInjector(headers))
    });
}

/// Reads a remote parent context from HTTP headers (incoming webhooks).
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HttpExtractor(headers)))
}

/// The current span's `traceparent` value, if it has a valid context (stored in the outbox).
pub fn current_traceparent() -> Option<String> {
    let mut map = http::HeaderMap::new();
    inject_http(&mut map);
    map.get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Hex trace id of the current span, for logs and DLQ entries.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` a child of the remote context `cx` (no-op when `cx` carries no span).
pub fn set_parent(span: &tracing::Span, cx: Context) {
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}
