//! Telemetry every service shares: JSON logs, OpenTelemetry traces (OTLP configured by the
//! standard `OTEL_*` variables), W3C trace-context propagation over HTTP and NATS headers,
//! Prometheus metrics, and the `/healthz`, `/readyz`, `/metrics` endpoints.

pub mod metrics;
pub mod ops;
pub mod propagation;

use accesshub_config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

pub use metrics::Registry;
pub use propagation::{current_trace_id, extract_http, extract_nats, inject_http, inject_nats};

/// Telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the `OTEL_*` settings.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("tracing subscriber: {0}")]
    Subscriber(String),
}

/// Flushes buffered spans when dropped, so the last spans of a stopping pod are not lost.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports everything still buffered.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Builds the tracer provider. Spans always get real ids (so trace ids reach logs and DLQ
/// entries); they are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces
/// variant) is set. The blocking HTTP client runs on the batch processor's own thread,
/// which avoids the "no reactor running" panic of the async client.
pub fn tracer_provider(service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let service_name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let resource = Resource::builder().with_service_name(service_name).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let export = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if export {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs logging and tracing for a service process. Call once, at the top of `main`.
pub fn init(service: &str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = tracer_provider(service)?;
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("accesshub");
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn,hyper=warn"));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    result.map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// Installs tracing for tests: spans get real ids and propagate, logs go to the test writer.
/// Safe to call many times.
pub fn init_for_tests() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let Ok(provider) = tracer_provider("accesshub-test") else {
        return;
    };
    let tracer = provider.tracer("accesshub");
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .try_init();
}
