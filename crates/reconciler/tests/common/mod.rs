//! Helpers shared by the reconciler's end-to-end tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use accesshub_connections::{Connection, ConnectionStore, EgressPolicy, Secret, TenantStore};
use accesshub_store::SecretBox;
use reconciler::{
    Reconciler, Scope, Settings, SyncRun, Trigger,
    connections::{StaticConnections, conn_ref},
    inventory::Inventory,
    store,
};
use serde_json::{Value, json};

/// A CloudPass connection of `tenant` mapping administration `admin` to the simulator's
/// Amsterdam site with its 24/7 time restriction.
pub fn cloudpass_connection(tenant: &str, admin: &str, base: &str) -> Connection {
    use accesshub_connections::{
        CloudpassAdministration, CloudpassSettings, Secret, VendorSettings,
    };
    use vendor_sim::cloudpass as cp;
    let mut administrations = std::collections::BTreeMap::new();
    administrations.insert(
        admin.to_owned(),
        CloudpassAdministration {
            site_id: cp::DEMO_SITE_AMSTERDAM.into(),
            time_restriction_id: None,
        },
    );
    Connection {
        tenant: tenant.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Cloudpass(CloudpassSettings {
            base_url: base.into(),
            client_id: cp::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(cp::DEMO_CLIENT_SECRET),
            administrations,
            default_time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
            reapply_time_restriction: false,
            window_before_minutes: 30,
            window_after_minutes: 30,
        }),
        version: 1,
    }
}

/// A Saflok connection of `tenant` to the simulator's dormakaba port (demo site, mobile keys
/// on, rooms by identity).
pub fn dormakaba_connection(tenant: &str, sim: &vendor_sim::SimHandle) -> Connection {
    use accesshub_connections::{DormakabaProduct, DormakabaSettings, Secret, VendorSettings};
    let port = sim
        .dormakaba_url()
        .rsplit(':')
        .next()
        .and_then(|s| s.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    Connection {
        tenant: tenant.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Dormakaba(DormakabaSettings {
            product: DormakabaProduct::Saflok,
            host: "127.0.0.1".into(),
            port,
            scheme: "http".into(),
            path: None,
            namespace: None,
            username: "pms-demo".into(),
            password: Secret::new("pms-demo-secret"),
            site_name: "DEMO-HOTEL".into(),
            pms_terminal_id: "accesshub".into(),
            encoders: vec![],
            rooms: Default::default(),
            common_areas: Default::default(),
            mobile_keys: true,
            key_size: 0,
            edge_site: None,
        }),
        version: 1,
    }
}

/// dormakaba-worker in-process for `conns`.
pub async fn dormakaba_worker(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conns: Vec<Connection>,
) -> worker_runtime::WorkerHandle {
    worker(
        db,
        tb,
        dormakaba_adapter::WORKER,
        conns,
        dormakaba_adapter::DormakabaHandler::new(),
    )
    .await
}

/// cloudpass-worker in-process for `conns`.
pub async fn cloudpass_worker(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conns: Vec<Connection>,
) -> worker_runtime::WorkerHandle {
    worker(
        db,
        tb,
        cloudpass_adapter::NAME,
        conns,
        cloudpass_adapter::CloudpassHandler::new(),
    )
    .await
}

/// ipassan-worker in-process for `conns`.
pub async fn ipassan_worker(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conns: Vec<Connection>,
) -> worker_runtime::WorkerHandle {
    worker(
        db,
        tb,
        ipassan_adapter::WORKER,
        conns,
        ipassan_adapter::IpassanHandler::default(),
    )
    .await
}

/// Worker `name` with `handler` in-process for `conns`.
async fn worker<H: worker_runtime::Handler>(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    name: &str,
    conns: Vec<Connection>,
    handler: H,
) -> worker_runtime::WorkerHandle {
    worker_runtime::start(
        worker_runtime::WorkerConfig::for_test(
            tb.config(name, &db.url),
            Arc::new(worker_runtime::StaticConnections::new(conns)),
        ),
        handler,
    )
    .await
    .unwrap()
}

/// Installs `tenant` with its `source` API credentials at `base_url` (sealed with a fresh key
/// box, fast client rate): the upstream store and the key box.
pub async fn install_upstream(
    db: &accesshub_testkit::TestDb,
    tenant: &str,
    source: &str,
    base_url: String,
    secret: String,
) -> (
    accesshub_upstreams::UpstreamStore,
    accesshub_store::SecretBox,
) {
    let sbox = accesshub_store::SecretBox::from_spec(&accesshub_store::SecretBox::generate_spec())
        .unwrap();
    accesshub_connections::TenantStore::new(db.pool.clone(), sbox.clone())
        .upsert(tenant, tenant)
        .await
        .unwrap();
    let upstreams = accesshub_upstreams::UpstreamStore::new(db.pool.clone(), sbox.clone());
    upstreams
        .set(
            tenant,
            source,
            &accesshub_upstreams::UpstreamCredentials {
                base_url,
                secret,
                options: serde_json::json!({"rate_per_sec": 1000.0, "burst": 1000}),
            },
        )
        .await
        .unwrap();
    (upstreams, sbox)
}

/// `accesshub_testkit::eventually` for a synchronous check, up to 15 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    accesshub_testkit::eventually(what, Duration::from_secs(15), || std::future::ready(f())).await;
}

/// A reconciler for one connection and one inventory, without default schedules.
pub fn reconciler(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conn: &Connection,
    inv: Arc<dyn Inventory>,
) -> Reconciler {
    reconciler_with(db, tb, vec![conn.clone()], inv)
}

/// A reconciler for a tenant's connections (a run's peers) and one inventory.
pub fn reconciler_with(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conns: Vec<Connection>,
    inv: Arc<dyn Inventory>,
) -> Reconciler {
    reconciler_from(db, tb, Arc::new(StaticConnections::new(conns)), inv)
}

/// A reconciler reading its connections from `conns` (e.g. the connection store, as
/// deployed), without default schedules.
pub fn reconciler_from(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conns: Arc<dyn reconciler::connections::ConnectionSource>,
    inv: Arc<dyn Inventory>,
) -> Reconciler {
    Reconciler::new(
        db.pool.clone(),
        tb.bus.clone(),
        conns,
        vec![inv],
        Settings {
            default_schedules: false,
            ..Settings::default()
        },
    )
}

/// An isolated database and bus, and the simulators with their demo fixtures.
pub async fn setup() -> (
    accesshub_testkit::TestDb,
    accesshub_testkit::TestBus,
    vendor_sim::SimHandle,
) {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
        .await
        .unwrap();
    sim.state().seed_demo();
    (db, tb, sim)
}

/// Undoes [`setup`].
pub async fn teardown(
    db: accesshub_testkit::TestDb,
    tb: accesshub_testkit::TestBus,
    sim: vendor_sim::SimHandle,
) {
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}

/// Queues a manual run of `scope` for `conn` and executes it.
pub async fn run(
    rec: &Reconciler,
    db: &accesshub_testkit::TestDb,
    conn: &Connection,
    scope: Scope,
) -> SyncRun {
    store::request_run(&db.pool, &conn_ref(conn), scope, Trigger::Manual, None)
        .await
        .unwrap();
    rec.drain_queue().await.unwrap().pop().unwrap()
}

/// Publishes `ev` on the namespaced BOOKINGS subject (Msg-Id = event id), as the relay does.
pub async fn publish(tb: &accesshub_testkit::TestBus, ev: &accesshub_domain::Event) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        accesshub_domain::headers::MSG_ID,
        ev.id.to_string().as_str(),
    );
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(ev).unwrap().into())
        .headers(h);
    tb.bus
        .js
        .send_publish(tb.bus.subject(&ev.subject()), msg)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The tenant registered for `sources`, its connections `conns` stored, then booking-ingest
/// in-process (so its connection cache starts from them); the connection store.
pub async fn ingest(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    tenant: &str,
    sources: &[&str],
    conns: &[Connection],
) -> (booking_ingest::IngestHandle, ConnectionStore) {
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let tenants = TenantStore::new(db.pool.clone(), sbox.clone());
    tenants.upsert(tenant, tenant).await.unwrap();
    for source in sources {
        tenants
            .set_source_secret(tenant, source, Some(Secret::new("s3cret")), Duration::ZERO)
            .await
            .unwrap();
        tenants
            .set_site_defaults(
                tenant,
                source,
                &json!({"*": {"check_in_time": "15:00", "check_out_time": "11:00",
                              "timezone": "Europe/Amsterdam"}}),
            )
            .await
            .unwrap()
            .unwrap();
    }
    let store = ConnectionStore::new(db.pool.clone(), sbox.clone())
        .with_egress(EgressPolicy::loopback_http())
        .with_bus(tb.bus.clone());
    for c in conns {
        store.upsert(c).await.unwrap();
    }
    let handle = booking_ingest::start(booking_ingest::IngestConfig::for_test(
        tb.config("booking-ingest", &db.url),
        sbox,
    ))
    .await
    .unwrap();
    (handle, store)
}

/// Sends `body` as `source` would over NATS ingest; the reply. Ingest may still be
/// subscribing in the background when it started before its NATS connection was up: "no
/// responders" is retried.
pub async fn send(
    tb: &accesshub_testkit::TestBus,
    source: &str,
    tenant: &str,
    body: &Value,
) -> Value {
    let subject = tb.bus.subject(&format!("ingest.{source}.{tenant}"));
    let payload = serde_json::to_vec(body).unwrap();
    for _ in 0..100 {
        match tb
            .bus
            .client
            .request(subject.clone(), payload.clone().into())
            .await
        {
            Ok(reply) => return serde_json::from_slice(&reply.payload).unwrap(),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("ingest request: {e}"),
        }
    }
    panic!("booking-ingest never subscribed to {subject}");
}
