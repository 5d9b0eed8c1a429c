//! `send_bytes`, the entry point of a SOAP transport: a `text/xml` POST goes out with the
//! caller's headers plus `traceparent`, every answer (a SOAP fault comes as HTTP 500) comes
//! back whole, and the call shows in the `accesshub_vendor_*` metrics like a JSON call.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use accesshub_domain::ErrorClass;
use tokio::sync::mpsc;
use vendor_http::{HttpSettings, Method, VendorClient};

const FAULT: &str = "<soap:Envelope><soap:Body><soap:Fault><faultcode>soap:Server</faultcode>\
                     </soap:Fault></soap:Body></soap:Envelope>";
const OK: &str = "<soap:Envelope><soap:Body><HelloWorldTestResponse/></soap:Body></soap:Envelope>";

async fn soap_server(answers: Vec<String>) -> (String, mpsc::UnboundedReceiver<(String, String)>) {
    let (addr, rx) = accesshub_testkit::http::recording_server(answers).await;
    (format!("http://{addr}/Messenger.asmx"), rx)
}

use accesshub_testkit::http::xml_answer as answer;

/// Spans at info level with OpenTelemetry ids on this thread (the shared test subscriber
/// keeps only warnings, which disables the `vendor.request` span and so its header).
fn traced() -> tracing::subscriber::DefaultGuard {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    accesshub_telemetry::init_for_tests(); // the W3C propagator
    let provider = accesshub_telemetry::tracer_provider("vendor-http-test").unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_default(subscriber)
}

#[tokio::test]
async fn a_soap_post_carries_traceparent_returns_faults_whole_and_is_counted() {
    let _traced = traced();
    let (url, mut requests) = soap_server(vec![
        answer("500 Internal Server Error", "retry-after: 3\r\n", FAULT),
        answer("200 OK", "", OK),
    ])
    .await;
    let client = VendorClient::new(
        "soap-test",
        HttpSettings {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
        },
    )
    .unwrap();
    let envelope = "<soap:Envelope><soap:Body><HelloWorldTest/></soap:Body></soap:Envelope>";
    let post = || {
        client
            .request(Method::POST, &url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"http://tempuri.org/HelloWorldTest\"")
            .body(envelope)
    };

    // A SOAP fault: HTTP 500, handed back with its envelope, not turned into an error.
    let reply = client.send_bytes("HelloWorldTest", post()).await.unwrap();
    assert_eq!(reply.status.as_u16(), 500);
    assert_eq!(&reply.body[..], FAULT.as_bytes());
    assert_eq!(reply.status_class(), Some(ErrorClass::Transient));
    assert_eq!(reply.retry_after(), Some(Duration::from_secs(3)));
    let (head, body) = requests.recv().await.unwrap();
    assert!(head.starts_with("post /messenger.asmx "), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/xml; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("\r\nsoapaction: \"http://tempuri.org/helloworldtest\""),
        "{head}"
    );
    let traceparent = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent in {head}"));
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1].len(), 32, "{traceparent}");
    assert_ne!(parts[1], "0".repeat(32), "{traceparent}");
    assert_eq!(body, envelope);

    let reply = client.send_bytes("HelloWorldTest", post()).await.unwrap();
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(reply.status_class(), None);
    assert_eq!(&reply.body[..], OK.as_bytes());
    let (head, _) = requests.recv().await.unwrap();
    assert!(head.contains("\r\ntraceparent: 00-"), "{head}");

    // Both calls timed under the operation; the 500 counted as a transient vendor error.
    let reg = accesshub_telemetry::Registry::new();
    vendor_http::register_metrics(&reg);
    let text = reg.encode();
    let count_line = text
        .lines()
        .find(|l| {
            l.starts_with("accesshub_vendor_request_duration_seconds_count")
                && l.contains("vendor=\"soap-test\"")
                && l.contains("operation=\"HelloWorldTest\"")
        })
        .unwrap_or_else(|| panic!("no duration series in {text}"));
    assert!(count_line.ends_with(" 2"), "{count_line}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("accesshub_vendor_errors_total") && l.contains("soap-test"))
        .collect();
    assert_eq!(
        errors,
        ["accesshub_vendor_errors_total{vendor=\"soap-test\",class=\"transient\"} 1"],
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_error() {
    let client = VendorClient::new("soap-test-down", HttpSettings::default()).unwrap();
    let req = client
        .request(Method::POST, "http://127.0.0.1:9/Messenger.asmx")
        .header("Content-Type", "text/xml; charset=utf-8")
        .body("<x/>");
    let err = client.send_bytes("HelloWorldTest", req).await.unwrap_err();
    assert_eq!(
        accesshub_domain::Classify::class(&err),
        ErrorClass::Transient,
        "{err}"
    );
}
