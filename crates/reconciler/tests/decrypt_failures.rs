//! A connection no configured key opens (a key removed before every row was resealed) fails
//! the reconciler's sync run and shows on its /metrics as
//! `accesshub_secret_decrypt_failures_total{component="reconciler"}` (issue 23 item 4): the
//! operator hears of it whichever service met it first. Its own test binary, because the
//! metric's component label is per process.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use accesshub_connections::{ConnectionStore, EgressPolicy, TenantStore};
use accesshub_store::SecretBox;
use accesshub_sync_runs::{RunStatus, Scope};
use cloudpass_adapter::inventory::CloudpassInventory;
use reconciler::service::SyncMetrics;

fn decrypt_failures(text: &str) -> f64 {
    text.lines()
        .find(|l| {
            l.starts_with("accesshub_secret_decrypt_failures_total")
                && l.contains(r#"component="reconciler""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn a_sync_run_whose_connection_no_key_opens_fails_and_is_counted() {
    let (db, tb, sim) = common::setup().await;
    let conn = common::cloudpass_connection("acme", "1001", &sim.cloudpass_url());
    // Stored under key k1 ...
    let k1 = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), k1.clone())
        .create("acme", "Acme")
        .await
        .unwrap();
    ConnectionStore::new(db.pool.clone(), k1)
        .with_egress(EgressPolicy::loopback_http())
        .upsert(&conn)
        .await
        .unwrap();
    // ... the reconciler runs with k2 only, its metrics registered as in main.
    let k2 = SecretBox::from_spec(&SecretBox::generate_spec().replace("k1:", "k2:")).unwrap();
    let registry = accesshub_telemetry::Registry::new();
    let rec = common::reconciler_from(
        &db,
        &tb,
        Arc::new(ConnectionStore::new(db.pool.clone(), k2)),
        Arc::new(CloudpassInventory::new().unwrap()),
    )
    .with_metrics(SyncMetrics::new(&registry));
    assert_eq!(decrypt_failures(&registry.encode()), 0.0, "present at 0");

    let run = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert!(
        decrypt_failures(&registry.encode()) >= 1.0,
        "{}",
        registry.encode()
    );

    common::teardown(db, tb, sim).await;
}
