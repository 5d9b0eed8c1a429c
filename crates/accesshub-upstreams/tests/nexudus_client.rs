//! The Nexudus client authenticates as Nexudus documents it: a bearer token from
//! `POST /api/token` (form-encoded password grant), kept for its lifetime and renewed once
//! when a call is answered 401; HTTP Basic stays available (`auth = basic`).

#![allow(clippy::unwrap_used)]

use accesshub_upstreams::nexudus::client::{Auth, NexudusClient, PassQuery};
use chrono::Utc;
use serde_json::json;
use vendor_sim::nexudus as nx;

fn pass(unique: &str) -> serde_json::Value {
    let now = Utc::now();
    json!({
        "Id": 1, "UniqueId": unique, "CoworkerId": 101, "BusinessId": 7,
        "TimePassId": 31, "TimePassName": "Day pass",
        "ExpireDate": (now + chrono::Duration::days(3)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "Used": false, "UsedDate": null, "RemainingUses": 1,
        "CreatedOn": now.to_rfc3339(), "UpdatedOn": now.to_rfc3339(),
    })
}

fn secret(password: &str) -> String {
    format!("{}:{password}", nx::DEMO_USER)
}

#[tokio::test]
async fn a_bearer_token_is_fetched_once_and_renewed_after_a_401() {
    let sim = nx::start_ephemeral().await.unwrap();
    sim.put_pass(pass("p-1"));
    sim.put_coworker("101", "Ana Alves", "ana@example.com");
    let c = NexudusClient::new(&sim.url(), &secret(nx::DEMO_PASSWORD), 100.0, 10).unwrap();

    let passes = c.time_passes(&PassQuery::default()).await.unwrap();
    assert_eq!(passes.len(), 1);
    assert_eq!(
        c.coworker("101").await.unwrap().email.as_deref(),
        Some("ana@example.com")
    );
    assert_eq!(sim.token_calls(), 1, "one token for both calls");

    // The token expires: the call answered 401 is made again with a fresh token.
    sim.expire_tokens();
    assert_eq!(c.time_passes(&PassQuery::default()).await.unwrap().len(), 1);
    assert_eq!(sim.token_calls(), 2);

    // A wrong password is refused at the token endpoint, permanently.
    let bad = NexudusClient::new(&sim.url(), &secret("wrong"), 100.0, 10).unwrap();
    let e = bad.time_passes(&PassQuery::default()).await.unwrap_err();
    assert!(
        e.to_string().contains("400") || e.to_string().contains("invalid_grant"),
        "{e}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn basic_auth_stays_available() {
    let sim = nx::start_ephemeral().await.unwrap();
    sim.put_pass(pass("p-1"));
    let c = NexudusClient::with_auth(
        &sim.url(),
        &secret(nx::DEMO_PASSWORD),
        100.0,
        10,
        Auth::Basic,
    )
    .unwrap();
    assert_eq!(c.time_passes(&PassQuery::default()).await.unwrap().len(), 1);
    assert_eq!(sim.token_calls(), 0);
    assert_eq!("basic".parse::<Auth>().unwrap(), Auth::Basic);
    assert!("digest".parse::<Auth>().is_err());
    sim.shutdown().await;
}
