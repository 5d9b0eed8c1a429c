//! A real OTLP/HTTP receiver (JSON encoding) for trace tests: services export to it with the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`, and the
//! test reads back which spans of which services share a trace.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};

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
}

/// The running receiver.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    /// Listening address.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn attr_string(attrs: &serde_json::Value, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find_map(|a| {
        (a.get("key")?.as_str()? == key)
            .then(|| {
                a.get("value")?
                    .get("stringValue")?
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten()
    })
}

fn parse(body: &[u8]) -> Vec<ReceivedSpan> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        let service =
            attr_string(&rs["resource"]["attributes"], "service.name").unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let get = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    trace_id: get("traceId"),
                    span_id: get("spanId"),
                    parent_span_id: get("parentSpanId"),
                });
            }
        }
    }
    out
}

impl OtlpReceiver {
    /// Starts listening on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(spans): State<Arc<Mutex<Vec<ReceivedSpan>>>>, body: Bytes| async move {
                        let parsed = parse(&body);
                        if let Ok(mut s) = spans.lock() {
                            s.extend(parsed);
                        }
                        (StatusCode::OK, "{}")
                    },
                ),
            )
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpReceiver { addr, spans })
    }

    /// Value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Environment a service needs to export here quickly.
    pub fn env(&self, service: &str) -> Vec<(String, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), self.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/json".into()),
            ("OTEL_SERVICE_NAME".into(), service.into()),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        ]
    }

    /// Everything received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_otlp_json() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"booking-ingest"}}]},
          "scopeSpans":[{"spans":[{"traceId":"ABC","spanId":"01","parentSpanId":"","name":"webhook"}]}]}]}"#;
        let s = parse(body);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].service, "booking-ingest");
        assert_eq!(s[0].trace_id, "abc");
        assert_eq!(s[0].name, "webhook");
    }
}
