//! Security review L8: the `site` of a time-restrictions lookup comes from the caller's
//! query string and must stay one path segment at the vendor.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use accesshub_connections::{CloudpassSettings, Secret};
use accesshub_testkit::http::recording_server;
use cloudpass_adapter::client::CloudpassClient;
use vendor_http::RateLimiter;

fn json(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_site_with_dot_dot_slash_stays_one_segment() {
    let (addr, mut seen) = recording_server(vec![
        json(
            "200 OK",
            r#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#,
        ),
        json("404 Not Found", "{}"),
    ])
    .await;
    let settings = CloudpassSettings {
        base_url: format!("http://{addr}"),
        client_id: "api-user".into(),
        client_secret: Secret::new("s"),
        administrations: Default::default(),
        default_time_restriction_id: "tr".into(),
        reapply_time_restriction: false,
        window_before_minutes: 30,
        window_after_minutes: 30,
    };
    let client = CloudpassClient::new(&settings, Arc::new(RateLimiter::new(100.0, 100))).unwrap();
    let _ = client.time_restrictions("../../x?").await;
    let _token = seen.recv().await.unwrap();
    let (head, _) = seen.recv().await.unwrap();
    let request_line = head.lines().next().unwrap();
    assert!(
        request_line.contains("/sites/..%2f..%2fx%3f/time-restrictions"),
        "{request_line}"
    );
    assert!(client.time_restrictions("..").await.is_err());
}
