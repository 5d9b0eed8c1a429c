//! A real OTLP receiver for trace tests, built on the official protobuf definitions
//! (`opentelemetry-proto`): OTLP/HTTP with protobuf or JSON bodies on `/v1/traces`, and
//! OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`). Services export to
//! it with the standard `OTEL_EXPORTER_OTLP_*` variables; the test reads back which spans of
//! which services share a trace, and over which transport they came.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::IntoResponse,
    routing::post,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};
use prost::Message as _;

/// The OTLP transports of the spec (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `grpc`
    Grpc,
    /// `http/protobuf`
    HttpProtobuf,
    /// `http/json`
    HttpJson,
}

impl Transport {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn protocol(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http/protobuf",
            Transport::HttpJson => "http/json",
        }
    }
}

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting resource.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Parent span id (hex, empty for roots).
    pub parent_span_id: String,
    /// How it arrived.
    pub transport: Transport,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The running receiver: HTTP on `addr`, gRPC on `grpc_addr`.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    /// OTLP/HTTP address.
    pub addr: SocketAddr,
    /// OTLP/gRPC address.
    pub grpc_addr: SocketAddr,
    spans: Spans,
}

fn spans_of(req: ExportTraceServiceRequest, transport: Transport) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    transport,
                });
            }
        }
    }
    out
}

/// OTLP/JSON (ids are hex strings there, not base64: the spec's exception for JSON).
fn parse_json(body: &[u8]) -> Vec<ReceivedSpan> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let get = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    trace_id: get("traceId"),
                    span_id: get("spanId"),
                    parent_span_id: get("parentSpanId"),
                    transport: Transport::HttpJson,
                });
            }
        }
    }
    out
}

/// `POST /v1/traces`: the body's encoding by its Content-Type, as OTLP/HTTP prescribes; the
/// answer in the same encoding.
async fn http_export(
    State(spans): State<Spans>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parsed, answer_type, answer) = if content_type.starts_with("application/x-protobuf") {
        match ExportTraceServiceRequest::decode(body) {
            Ok(req) => (
                spans_of(req, Transport::HttpProtobuf),
                "application/x-protobuf",
                ExportTraceServiceResponse::default().encode_to_vec(),
            ),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    [(CONTENT_TYPE, "text/plain")],
                    Vec::new(),
                );
            }
        }
    } else if content_type.starts_with("application/json") {
        (parse_json(&body), "application/json", b"{}".to_vec())
    } else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(CONTENT_TYPE, "text/plain")],
            Vec::new(),
        );
    };
    if let Ok(mut s) = spans.lock() {
        s.extend(parsed);
    }
    (StatusCode::OK, [(CONTENT_TYPE, answer_type)], answer)
}

struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let parsed = spans_of(request.into_inner(), Transport::Grpc);
        if let Ok(mut s) = self.0.lock() {
            s.extend(parsed);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl OtlpReceiver {
    /// Starts listening (HTTP and gRPC) on ephemeral loopback ports.
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let spans: Spans = Arc::default();
        let app = Router::new()
            .route("/v1/traces", post(http_export))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let service = TraceServiceServer::new(Grpc(spans.clone()));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener))
                .await;
        });
        Ok(OtlpReceiver {
            addr,
            grpc_addr,
            spans,
        })
    }

    /// Value for `OTEL_EXPORTER_OTLP_ENDPOINT` with the given transport.
    pub fn endpoint_for(&self, transport: Transport) -> String {
        match transport {
            Transport::Grpc => format!("http://{}", self.grpc_addr),
            Transport::HttpProtobuf | Transport::HttpJson => format!("http://{}", self.addr),
        }
    }

    /// Environment a service needs to export here quickly over `transport`.
    pub fn env_for(&self, service: &str, transport: Transport) -> Vec<(String, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                self.endpoint_for(transport),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
                transport.protocol().into(),
            ),
            ("OTEL_SERVICE_NAME".into(), service.into()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ]
    }

    /// [`OtlpReceiver::env_for`] with the spec's default transport (http/protobuf, by leaving
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` unset).
    pub fn env(&self, service: &str) -> Vec<(String, String)> {
        self.env_for(service, Transport::HttpProtobuf)
            .into_iter()
            .filter(|(k, _)| k != "OTEL_EXPORTER_OTLP_PROTOCOL")
            .collect()
    }

    /// Everything received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, KeyValue},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };

    use super::*;

    fn request() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("booking-ingest".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1; 8],
                        name: "webhook".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn parses_otlp_json() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"booking-ingest"}}]},
          "scopeSpans":[{"spans":[{"traceId":"ABC","spanId":"01","parentSpanId":"","name":"webhook"}]}]}]}"#;
        let s = parse_json(body);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].service, "booking-ingest");
        assert_eq!(s[0].trace_id, "abc");
        assert_eq!(s[0].name, "webhook");
    }

    /// The receiver itself, over the wire: protobuf over HTTP and over gRPC.
    #[tokio::test]
    async fn receives_protobuf_over_http_and_grpc() {
        let r = OtlpReceiver::start().await.unwrap();
        let status = reqwest::Client::new()
            .post(format!(
                "{}/v1/traces",
                r.endpoint_for(Transport::HttpProtobuf)
            ))
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(request().encode_to_vec())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            r.endpoint_for(Transport::Grpc),
        )
        .await
        .unwrap();
        client.export(request()).await.unwrap();
        let spans = r.spans();
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].transport, Transport::HttpProtobuf);
        assert_eq!(spans[1].transport, Transport::Grpc);
        for s in &spans {
            assert_eq!(s.service, "booking-ingest");
            assert_eq!(s.trace_id, "ab".repeat(16));
            assert_eq!(s.span_id, "0101010101010101");
        }
    }
}
