//! vendor-http against the in-process simulators: classification, Retry-After, token cache.

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

use std::time::Duration;

use accesshub_domain::{Classify as _, ErrorClass};
use vendor_http::{AuthedClient, HttpSettings, Method, TokenSourceConfig, VendorClient};
use vendor_sim::{FaultKind, FaultRule, SimConfig, Vendor};

async fn tapkey() -> (vendor_sim::SimHandle, AuthedClient) {
    let sim = vendor_sim::start(SimConfig {
        tapkey_token_ttl: Duration::from_secs(3600),
        ..SimConfig::ephemeral()
    })
    .await
    .unwrap();
    sim.state().seed_demo();
    let client = VendorClient::new(
        "tapkey",
        HttpSettings {
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
        },
    )
    .unwrap();
    let authed = AuthedClient::new(
        client,
        TokenSourceConfig {
            token_url: format!("{}/connect/token", sim.tapkey_url()),
            client_id: vendor_sim::tapkey::DEMO_CLIENT_ID.into(),
            client_secret: vendor_sim::tapkey::DEMO_CLIENT_SECRET.into(),
            scope: None,
        },
    );
    (sim, authed)
}

#[tokio::test]
async fn token_is_cached_refreshed_on_expiry_and_401_retried_once() {
    let (sim, c) = tapkey().await;
    let url = format!("{}/api/v1/Owners", sim.tapkey_url());
    for _ in 0..3 {
        let v: serde_json::Value = c
            .send_json("owners", |h| h.request(Method::GET, &url))
            .await
            .unwrap();
        assert!(v.as_array().is_some_and(|a| !a.is_empty()));
    }
    assert_eq!(
        sim.state()
            .count_calls(Vendor::Tapkey, "POST", "/connect/token"),
        1
    );
    // The vendor's clock moves past expiry: our cached token is rejected with 401,
    // refreshed once, and the call succeeds.
    sim.state().advance_clock(Duration::from_secs(7200));
    let _: serde_json::Value = c
        .send_json("owners", |h| h.request(Method::GET, &url))
        .await
        .unwrap();
    assert_eq!(
        sim.state()
            .count_calls(Vendor::Tapkey, "POST", "/connect/token"),
        2
    );
    assert_eq!(sim.state().count_calls(Vendor::Tapkey, "GET", "/Owners"), 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn statuses_timeouts_and_retry_after_are_classified() {
    let (sim, c) = tapkey().await;
    let url = format!("{}/api/v1/Owners", sim.tapkey_url());
    let st = sim.state();
    st.add_fault(
        FaultRule::next_n(
            Vendor::Tapkey,
            FaultKind::Status429 {
                retry_after_secs: 7,
            },
            1,
        )
        .on_path("/Owners"),
    );
    let e = c
        .send("owners", |h| h.request(Method::GET, &url))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    st.add_fault(FaultRule::next_n(Vendor::Tapkey, FaultKind::Status503, 1).on_path("/Owners"));
    let e = c
        .send("owners", |h| h.request(Method::GET, &url))
        .await
        .unwrap_err();
    assert_eq!((e.class(), e.status()), (ErrorClass::Transient, Some(503)));
    st.add_fault(FaultRule::next_n(Vendor::Tapkey, FaultKind::Hang, 1).on_path("/Owners"));
    let e = c
        .send("owners", |h| h.request(Method::GET, &url))
        .await
        .unwrap_err();
    assert!(matches!(e, vendor_http::VendorError::Timeout { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
    st.add_fault(
        FaultRule::next_n(Vendor::Tapkey, FaultKind::DropConnection, 1).on_path("/Owners"),
    );
    let e = c
        .send("owners", |h| h.request(Method::GET, &url))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    let missing = format!("{}/api/v1/Owners/nope/BoundLocks", sim.tapkey_url());
    let e = c
        .send("locks", |h| h.request(Method::GET, &missing))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.body().is_some_and(|b| !b.is_empty()));
    // Unreachable host: a connect error, transient.
    let plain = VendorClient::new("x", HttpSettings::default()).unwrap();
    let e = plain
        .send("x", plain.request(Method::GET, "http://127.0.0.1:9/"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    // Metrics were recorded.
    let reg = accesshub_telemetry::Registry::new();
    vendor_http::register_metrics(&reg);
    let text = reg.encode();
    assert!(
        text.contains("accesshub_vendor_request_duration_seconds"),
        "{text}"
    );
    assert!(
        text.contains("accesshub_vendor_errors_total{vendor=\"tapkey\",class=\"transient\"}"),
        "{text}"
    );
    sim.shutdown().await;
}
