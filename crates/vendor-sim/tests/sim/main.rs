//! Integration tests: real HTTP against the in-process simulators.
#![allow(clippy::unwrap_used)]

mod cloudpass;
mod control;
mod dormakaba;
mod duplicates;
mod ipassan;
mod tapkey;

use std::time::Duration;

use vendor_sim::{SimConfig, SimHandle};

/// Starts a simulator on ephemeral ports with the demo fixtures.
pub async fn sim() -> SimHandle {
    let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
    sim.state().seed_demo();
    sim
}

/// A client with a short timeout (hang faults must not stall the suite).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// POSTs a client-credentials form and returns the access token.
pub async fn token(c: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    let r = c.post(url).form(form).send().await.unwrap();
    assert_eq!(r.status(), 200, "token request failed");
    let v: serde_json::Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}
