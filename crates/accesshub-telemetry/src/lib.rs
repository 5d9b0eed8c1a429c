//! Telemetry every service shares: JSON logs, OpenTelemetry traces (OTLP configured by the
//! standard `OTEL_*` variables), W3C trace-context propagation over HTTP and NATS headers,
//! Prometheus metrics, and the `/healthz`, `/readyz`, `/metrics` endpoints.

pub mod logs;
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
    /// An `OTEL_*` variable holds a value the spec does not allow.
    #[error("environment variable {name} = {value:?}: {problem}")]
    Config {
        /// Variable name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is allowed.
        problem: &'static str,
    },
}

/// The OTLP transport, chosen as the OpenTelemetry specification says: the signal-specific
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
/// `http/protobuf` (the spec's default). Anything else stops the service naming the variable.
pub fn otlp_protocol() -> Result<opentelemetry_otlp::Protocol, TelemetryError> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    protocol_from(
        var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        var("OTEL_EXPORTER_OTLP_PROTOCOL"),
    )
}

/// The rule of [`otlp_protocol`] over given values.
pub fn protocol_from(
    traces: Option<String>,
    general: Option<String>,
) -> Result<opentelemetry_otlp::Protocol, TelemetryError> {
    use opentelemetry_otlp::Protocol;
    let (name, value) = match (traces, general) {
        (Some(v), _) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v),
        (None, Some(v)) => ("OTEL_EXPORTER_OTLP_PROTOCOL", v),
        (None, None) => return Ok(Protocol::HttpBinary),
    };
    match value.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpBinary),
        "http/json" => Ok(Protocol::HttpJson),
        _ => Err(TelemetryError::Config {
            name,
            value,
            problem: "expected grpc, http/protobuf or http/json",
        }),
    }
}

/// Whether spans are exported: `OTEL_TRACES_EXPORTER=none` turns it off, `otlp` on (to the
/// spec's default endpoint when none is set); unset, only when an endpoint is configured
/// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), so a local run
/// without a collector does not retry against localhost forever.
fn export_enabled() -> Result<bool, TelemetryError> {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        Some("none") => Ok(false),
        Some("otlp") => Ok(true),
        Some(other) => Err(TelemetryError::Config {
            name: "OTEL_TRACES_EXPORTER",
            value: other.to_owned(),
            problem: "expected otlp or none",
        }),
        None => Ok(var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()),
    }
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
/// entries); they are exported over the transport of [`otlp_protocol`] when export is on
/// (an endpoint set, or `OTEL_TRACES_EXPORTER=otlp`). Endpoint, headers, timeout and
/// compression come from the standard `OTEL_EXPORTER_OTLP_*` / `OTEL_EXPORTER_OTLP_TRACES_*`
/// variables. HTTP uses the blocking client on the batch processor's own thread (no "no
/// reactor running" panic); gRPC's channel runs on the service's Tokio runtime, so with gRPC
/// this must be called inside it (every service's `main` is `#[tokio::main]`).
pub fn tracer_provider(service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let service_name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let resource = Resource::builder().with_service_name(service_name).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if export_enabled()? {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        let exporter = match otlp_protocol()? {
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(Protocol::Grpc)
                .build(),
            http => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(http)
                .build(),
        }
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
        LogFormat::Json => {
            let (json, dispatch) = logs::JsonWithTraceIds::new();
            let r = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .fmt_fields(logs::json_fields())
                        .event_format(json),
                )
                .try_init();
            // The formatter finds each event's trace through the installed subscriber.
            tracing::dispatcher::get_default(|d| {
                let _ = dispatch.set(d.downgrade());
            });
            r
        }
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

#[cfg(test)]
mod protocol_tests {
    use opentelemetry_otlp::Protocol;

    use super::*;

    /// Issue 24: the spec's default (http/protobuf), the signal-specific variable first, and a
    /// bad value named.
    #[test]
    fn otlp_protocol_as_the_spec_says() {
        assert_eq!(protocol_from(None, None).unwrap(), Protocol::HttpBinary);
        assert_eq!(
            protocol_from(None, Some("grpc".into())).unwrap(),
            Protocol::Grpc
        );
        assert_eq!(
            protocol_from(None, Some("http/json".into())).unwrap(),
            Protocol::HttpJson
        );
        assert_eq!(
            protocol_from(Some("http/protobuf".into()), Some("grpc".into())).unwrap(),
            Protocol::HttpBinary
        );
        let err = protocol_from(Some("thrift".into()), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "{err}");
        let err = protocol_from(None, Some("http".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
    }
}
