//! Egress guards at connect time and scrubbed vendor error bodies, against real local
//! listeners (security review M3, L7).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use accesshub_domain::{Classify as _, ErrorClass};
use accesshub_testkit::http::recording_server;
use vendor_http::{
    AuthedClient, EgressPolicy, HttpSettings, Method, TokenSourceConfig, VendorClient,
};

fn settings() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
    }
}

fn answer(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_strict_client_never_connects_to_plain_http_or_internal_addresses() {
    let (addr, mut seen) = recording_server(vec![answer("200 OK", "", "{}")]).await;
    let strict =
        VendorClient::with_egress_policy("test", settings(), EgressPolicy::strict()).unwrap();
    for url in [
        format!("http://{addr}/x"),
        format!("https://{addr}/x"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://localhost/x".to_owned(),
    ] {
        let e = strict
            .send("op", strict.request(Method::GET, &url))
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent, "{url}: {e}");
        assert!(e.to_string().contains("egress refused"), "{url}: {e}");
    }
    assert!(seen.try_recv().is_err(), "the listener was contacted");

    // The same listener is reachable once the allow-list names it.
    let allowing = VendorClient::with_egress_policy(
        "test",
        settings(),
        format!("http://{addr}").parse().unwrap(),
    )
    .unwrap();
    allowing
        .send(
            "op",
            allowing.request(Method::GET, &format!("http://{addr}/x")),
        )
        .await
        .unwrap();
    assert!(seen.recv().await.is_some());
}

#[tokio::test]
async fn a_redirect_to_a_refused_target_is_not_followed() {
    let (inner, mut inner_seen) = recording_server(vec![answer("200 OK", "", "{}")]).await;
    let (outer, mut outer_seen) = recording_server(vec![answer(
        "302 Found",
        &format!("location: http://{inner}/secret\r\n"),
        "",
    )])
    .await;
    let client = VendorClient::with_egress_policy(
        "test",
        settings(),
        format!("http://{outer}").parse().unwrap(),
    )
    .unwrap();
    let e = client
        .send(
            "op",
            client.request(Method::GET, &format!("http://{outer}/")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    assert!(e.to_string().contains("egress refused"), "{e}");
    assert!(outer_seen.recv().await.is_some());
    assert!(inner_seen.try_recv().is_err(), "the redirect was followed");
}

/// A token endpoint that echoes what it got (client secret, a JWT, a key) in its error body:
/// the error message keeps the vendor's words and none of the credentials.
#[tokio::test]
async fn vendor_error_bodies_are_scrubbed_in_messages() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcGkifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    let body = format!(
        r#"{{"error":"invalid_client","error_description":"client authentication failed for client_secret=Sup3rS3cretValue&client_id=acme","access_token":"{jwt}","trace":"{}","hint":"Authorization: Bearer abc.def.ghi"}}"#,
        "a1b2c3d4".repeat(8)
    ) + &"padding ".repeat(100);
    let (addr, mut seen) = recording_server(vec![answer("401 Unauthorized", "", &body)]).await;
    let client = AuthedClient::new(
        VendorClient::new("test", settings()).unwrap(),
        TokenSourceConfig {
            token_url: format!("http://{addr}/connect/token"),
            client_id: "acme".into(),
            client_secret: "Sup3rS3cretValue".into(),
            scope: None,
        },
    );
    let e = client
        .send("op", |h| {
            h.request(Method::GET, format!("http://{addr}/api"))
        })
        .await
        .unwrap_err();
    let (_, sent) = seen.recv().await.unwrap();
    assert!(
        sent.contains("Sup3rS3cretValue"),
        "the secret was sent: {sent}"
    );
    let msg = e.to_string();
    for secret in ["Sup3rS3cretValue", jwt, "a1b2c3d4a1b2c3d4", "abc.def.ghi"] {
        assert!(!msg.contains(secret), "{secret:?} in {msg:?}");
    }
    assert!(msg.contains("invalid_client"), "{msg}");
    assert!(msg.contains("client authentication failed"), "{msg}");
    assert!(
        msg.chars().count() < 400,
        "{} chars: {msg}",
        msg.chars().count()
    );
    assert_eq!(
        e.safe_body().as_deref().map(|b| b.contains("Sup3r")),
        Some(false)
    );
}
