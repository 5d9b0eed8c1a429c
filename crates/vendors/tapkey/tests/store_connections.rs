//! Connections saved in Postgres (admin API / `accessctl apply` → `ConnectionStore`) reach the
//! worker without a file and without a restart: the worker reads them through the
//! `ConnectionCache` and drops its copy when the store announces a change. Also the `locks`
//! lookup answered with those connections.

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_connections::{
    Connection, ConnectionCache, ConnectionStore, Secret, TapkeySettings, TenantStore, Vendor,
    VendorSettings,
    lookup::{LookupFailureKind, LookupRequest, LookupResponse, request},
};
use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source, headers};
use accesshub_store::SecretBox;
use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use tapkey_adapter::TapkeyHandler;
use vendor_sim::{SimConfig, SimHandle, tapkey as tk};
use worker_runtime::{ConnectionSource, WorkerConfig};

fn connection(sim: &SimHandle, locks: &[&str]) -> Connection {
    let mut pass_types = BTreeMap::new();
    pass_types.insert(
        "day".to_owned(),
        locks.iter().map(|l| (*l).to_owned()).collect(),
    );
    Connection {
        tenant: "cowork".into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Tapkey(TapkeySettings {
            authority_url: sim.tapkey_url(),
            base_url: sim.tapkey_url(),
            client_id: tk::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(tk::DEMO_CLIENT_SECRET),
            owner_account_id: tk::DEMO_OWNER_ID.into(),
            pass_types,
        }),
        version: 0,
    }
}

fn pass_event(key: &str, rev: i64) -> Event {
    Event::new(
        "cowork",
        "hq",
        key,
        rev,
        Source::Nexudus,
        Utc::now(),
        EventBody::Pass(Pass {
            status: PassStatus::Active,
            holder: PassHolder {
                id: format!("cw-{key}"),
                email: format!("{key}@example.com"),
                name: None,
            },
            pass_type: "day".into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: Utc::now() + chrono::Duration::days(2),
        }),
    )
}

async fn publish(bus: &accesshub_bus::Bus, ev: &Event) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::MSG_ID, ev.id.to_string().as_str());
    let msg = PublishMessage::build()
        .payload(serde_json::to_vec(ev).unwrap().into())
        .headers(h);
    bus.js
        .send_publish(bus.subject(&ev.subject()), msg)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Locks on which `email` holds an active grant, sorted.
fn locks_of(sim: &SimHandle, email: &str) -> Vec<String> {
    let contacts = sim.state().tapkey_contacts();
    let Some(c) = contacts.iter().find(|c| c.identifier == email) else {
        return vec![];
    };
    let mut v: Vec<String> = sim
        .state()
        .tapkey_grants()
        .into_iter()
        .filter(|g| g.contact_id == c.id && g.active)
        .map(|g| g.bound_lock_id)
        .collect();
    v.sort();
    v
}

async fn wait_for_locks(sim: &SimHandle, email: &str, want: &[&str]) {
    let start = Instant::now();
    loop {
        let got = locks_of(sim, email);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{email}: grants on {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connection_changed_in_the_store_applies_without_restart() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
    sim.state().seed_demo();
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), secrets.clone())
        .create("cowork", "Cowork")
        .await
        .unwrap();
    // The admin API's store: writes and announces changes on NATS.
    let admin = ConnectionStore::new(db.pool.clone(), secrets.clone())
        .with_bus(tb.bus.clone())
        .with_egress(accesshub_connections::EgressPolicy::loopback_http());
    admin
        .upsert(&connection(&sim, &[tk::DEMO_LOCK_FRONT]))
        .await
        .unwrap();

    // The worker's side, as serve_main wires it without ACCESSHUB_CONNECTIONS_FILE. The TTL
    // is an hour, so only the change notification can make the worker see the new mapping.
    let cache = Arc::new(ConnectionCache::new(
        ConnectionStore::new(db.pool.clone(), secrets),
        Duration::from_secs(3600),
    ));
    let listener = cache.listen(&tb.bus, Some(Vendor::Tapkey)).await.unwrap();
    let source: Arc<dyn ConnectionSource> = cache.clone();
    let cfg = WorkerConfig::for_test(tb.config(tapkey_adapter::NAME, &db.url), source.clone());
    let worker = worker_runtime::start(cfg, TapkeyHandler::new())
        .await
        .unwrap();
    let lookups = worker_runtime::lookups::serve(
        &tb.bus,
        Vendor::Tapkey,
        source,
        tapkey_adapter::lookup::answer,
    )
    .await
    .unwrap();

    publish(&tb.bus, &pass_event("m1", 1)).await;
    wait_for_locks(&sim, "m1@example.com", &[tk::DEMO_LOCK_FRONT]).await;

    // Operator remaps the pass type to the meeting room through the store.
    let stored = admin
        .upsert(&connection(&sim, &[tk::DEMO_LOCK_MEETING]))
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    let start = Instant::now();
    while cache
        .get("cowork", Vendor::Tapkey, "default")
        .await
        .unwrap()
        .map(|c| c.version)
        != Some(2)
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "change notification did not invalidate the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The next events use the new mapping: a new member gets the meeting room only, and the
    // first member's next revision moves from the front door to the meeting room.
    publish(&tb.bus, &pass_event("m2", 1)).await;
    wait_for_locks(&sim, "m2@example.com", &[tk::DEMO_LOCK_MEETING]).await;
    publish(&tb.bus, &pass_event("m1", 2)).await;
    wait_for_locks(&sim, "m1@example.com", &[tk::DEMO_LOCK_MEETING]).await;

    // Lookups read the same connections.
    let ask = |connection: &str| LookupRequest {
        tenant: "cowork".into(),
        connection: connection.into(),
        what: "locks".into(),
        params: BTreeMap::new(),
    };
    let answer = request(
        &tb.bus,
        Vendor::Tapkey,
        &ask("default"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let LookupResponse::Items { items } = answer else {
        panic!("{answer:?}")
    };
    let mut ids: Vec<_> = items.iter().map(|i| i.id.as_str()).collect();
    ids.sort_unstable();
    assert!(ids.contains(&tk::DEMO_LOCK_FRONT) && ids.contains(&tk::DEMO_LOCK_MEETING));
    let LookupResponse::Error { error } = request(
        &tb.bus,
        Vendor::Tapkey,
        &ask("other"),
        Duration::from_secs(5),
    )
    .await
    .unwrap() else {
        panic!("unknown connection answered")
    };
    assert_eq!(error.kind, LookupFailureKind::NoConnection);

    lookups.abort();
    worker.shutdown().await.unwrap();
    listener.abort();
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}
