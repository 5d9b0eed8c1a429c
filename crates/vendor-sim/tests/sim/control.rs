use std::time::Duration;

use serde_json::{Value, json};
use vendor_sim::{FaultKind, FaultRule, SimConfig, Vendor};

use crate::{http, sim};

#[tokio::test]
async fn next_n_faults_429_500_503_and_latency() {
    let sim = sim().await;
    let c = http();
    let url = format!("{}/api/v1/sites", sim.cloudpass_url());
    let st = sim.state();
    st.add_fault(FaultRule::next_n(
        Vendor::CloudPass,
        FaultKind::Status429 {
            retry_after_secs: 7,
        },
        1,
    ));
    st.add_fault(FaultRule::next_n(
        Vendor::CloudPass,
        FaultKind::Status503,
        1,
    ));
    st.add_fault(
        FaultRule::next_n(Vendor::CloudPass, FaultKind::Status500, 1).on_path("/nothing-matches"),
    );
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        401,
        "faults used up: normal answer"
    );
    assert_eq!(st.faults().len(), 1, "only the unmatched rule is left");
    st.clear_faults();

    st.add_fault(FaultRule::next_n(
        Vendor::Tapkey,
        FaultKind::Latency(Duration::from_millis(300)),
        1,
    ));
    let t = std::time::Instant::now();
    let r = c
        .get(format!("{}/api/v1/Owners", sim.tapkey_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn hang_and_drop_connection() {
    let sim = sim().await;
    let st = sim.state();
    let url = format!("{}/api/v1/admin/base", sim.ipassan_url());
    st.add_fault(FaultRule::next_n(Vendor::IPassan, FaultKind::Hang, 1));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = quick.get(&url).send().await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    st.add_fault(FaultRule::next_n(
        Vendor::IPassan,
        FaultKind::DropConnection,
        1,
    ));
    let e = http().get(&url).send().await.unwrap_err();
    assert!(!e.is_timeout(), "dropped, not timed out: {e}");
    assert_eq!(http().get(&url).send().await.unwrap().status(), 401);
    let calls = st.calls_for(Vendor::IPassan);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].status, 0);
    assert_eq!(calls[1].status, 0);
    assert!(calls[0].injected_fault && calls[1].injected_fault);
}

async fn pattern(seed: u64) -> Vec<u16> {
    let sim = vendor_sim::start(SimConfig {
        seed,
        ..SimConfig::ephemeral()
    })
    .await
    .unwrap();
    sim.state().add_fault(FaultRule::probability(
        Vendor::CloudPass,
        FaultKind::Status500,
        0.5,
    ));
    let c = http();
    let mut out = Vec::new();
    for _ in 0..32 {
        out.push(
            c.get(format!("{}/api/v1/sites", sim.cloudpass_url()))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn probability_faults_are_deterministic_per_seed() {
    let a = pattern(7).await;
    let b = pattern(7).await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&401));
    assert_ne!(a, pattern(8).await);
}

#[tokio::test]
async fn control_api_over_http() {
    let sim = sim().await;
    let c = http();
    let ctl = sim.control_url();
    assert_eq!(
        c.get(format!("{ctl}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let cp: Value = c
        .get(format!("{ctl}/state/cloudpass"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cp["sites"].as_array().unwrap().len() >= 2);
    assert_eq!(
        c.get(format!("{ctl}/state/acme"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Seed a CloudPass site over HTTP, see it in the state.
    let r = c
        .post(format!("{ctl}/seed/cloudpass"))
        .json(&json!({"sites": [{"id": "s-new", "name": "New", "time_restrictions": [{"id": "tr-new", "name": "Always"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .post(format!("{ctl}/seed/tapkey"))
        .json(&json!({"boundLocks": [{"id": "l", "ownerAccountId": "nobody", "title": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Faults over HTTP (JSON shape documented in docs/simulators.md).
    let r = c
        .post(format!("{ctl}/faults"))
        .json(&json!({"vendor": "tapkey", "kind": {"type": "status503"}, "mode": {"next_n": 1}, "path_contains": "/Owners"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        c.get(format!("{}/api/v1/Owners", sim.tapkey_url()))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let calls: Vec<vendor_sim::CallRecord> = c
        .get(format!("{ctl}/calls?vendor=tapkey"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 503);
    assert_eq!(calls[0].path, "/api/v1/Owners");
    assert_eq!(
        c.delete(format!("{ctl}/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // Reset empties everything; ?seed=demo brings the fixtures back.
    assert_eq!(
        c.post(format!("{ctl}/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let cp: Value = c
        .get(format!("{ctl}/state/cloudpass"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cp["sites"].as_array().unwrap().is_empty());
    assert!(sim.state().calls().is_empty());
    assert_eq!(
        c.post(format!("{ctl}/reset?seed=demo"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let cp: Value = c
        .get(format!("{ctl}/state/cloudpass"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cp["sites"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}
