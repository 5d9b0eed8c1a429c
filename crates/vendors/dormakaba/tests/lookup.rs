//! `encoder-test` lookups over NATS request/reply, answered from the Postgres connection store.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use accesshub_connections::lookup::{LookupRequest, LookupResponse, request};
use accesshub_connections::{
    Connection, ConnectionStore, DormakabaProduct, Encoder, EncoderKind, Secret, Vendor,
    VendorSettings,
};
use accesshub_store::SecretBox;

#[tokio::test]
async fn encoder_test_lookup() {
    accesshub_telemetry::init_for_tests();
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
        .await
        .unwrap();
    sim.state().seed_demo();
    let (db, tb) = accesshub_testkit::isolated().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let store = ConnectionStore::new(db.pool.clone(), secrets)
        .with_egress(accesshub_connections::EgressPolicy::loopback_http());
    let mut s = common::sim_settings(&sim, DormakabaProduct::Saflok);
    s.encoders = vec![
        Encoder {
            name: "Front desk 1".into(),
            id: "1".into(),
            kind: EncoderKind::Network,
        },
        Encoder {
            name: "Front desk 2".into(),
            id: "2".into(),
            kind: EncoderKind::Network,
        },
    ];
    // (The store itself refuses USB encoders; the worker refuses them again per request.)
    let mut conn = Connection {
        tenant: "acme".into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Dormakaba(s.clone()),
        version: 0,
    };
    sqlx::query("INSERT INTO tenants (id, name) VALUES ('acme', 'Acme Hotels')")
        .execute(&db.pool)
        .await
        .unwrap();
    store.upsert(&conn).await.unwrap();
    // As the worker binary serves lookups, from the store (TTL zero: a saved change is seen
    // at once).
    let connections = std::sync::Arc::new(accesshub_connections::ConnectionCache::new(
        store.clone(),
        std::time::Duration::ZERO,
    ));
    let task = worker_runtime::lookups::serve(
        &tb.bus,
        accesshub_connections::Vendor::Dormakaba,
        connections,
        dormakaba_adapter::lookup::answer,
    )
    .await
    .unwrap();
    let ask = |what: &str| LookupRequest {
        tenant: "acme".into(),
        connection: "default".into(),
        what: what.into(),
        params: Default::default(),
    };
    let answer = request(
        &tb.bus,
        Vendor::Dormakaba,
        &ask("encoder-test"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let LookupResponse::Items { items } = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(items.len(), 3);
    assert!(items[0].detail.as_deref().unwrap().contains("Hello World"));
    assert_eq!(items[2].name, "Front desk 2");
    assert_eq!(items[2].detail.as_deref(), Some("network encoder"));

    let bad = request(
        &tb.bus,
        Vendor::Dormakaba,
        &ask("rooms"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(matches!(bad, LookupResponse::Error { .. }));

    s.password = Secret::new("wrong");
    conn.settings = VendorSettings::Dormakaba(s);
    store.upsert(&conn).await.unwrap();
    let LookupResponse::Error { error } = request(
        &tb.bus,
        Vendor::Dormakaba,
        &ask("encoder-test"),
        Duration::from_secs(5),
    )
    .await
    .unwrap() else {
        panic!("wrong password accepted")
    };
    assert!(
        error.message.contains("AuthHeaderNotRecognized"),
        "{}",
        error.message
    );

    task.abort();
    tb.cleanup().await;
    db.drop_db().await;
    sim.shutdown().await;
}
