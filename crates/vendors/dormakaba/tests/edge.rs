//! The edge as deployed (docs/deploy.md "On-premises lock servers"), all on loopback: a
//! "cluster" nats-server (JetStream, TLS leaf-node port with the hotel's user from
//! permissions.yaml), the hotel's leaf-node nats-server dialling out to it over TLS, the
//! relay (`dormakaba-worker edge`) on the leaf, the Saflok simulator behind the relay, and the
//! cloud worker with Postgres on the cluster side. Certificates are made at test time.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accesshub_connections::{Connection, DormakabaProduct, VendorSettings};
use accesshub_domain::{
    Event, EventBody, KeyAction, KeyRequest, KeyResultStatus, Reservation, ReservationStatus,
    Source, subjects,
};
use accesshub_natsauth::edge::{EdgeBinding, LeafOptions, LeafTls, edge_identity, hub_leafnodes};
use chrono::Utc;
use dormakaba_adapter::client::SoapConfig;
use dormakaba_adapter::edge::{EdgeLink, RelayConfig, SiteState, run_relay};
use dormakaba_adapter::{DormakabaHandler, StoredStatus, WORKER, key_request_status};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vendor_sim::dormakaba::Product;
use vendor_sim::{SimConfig, SimHandle};
use worker_runtime::{StaticConnections, WorkerConfig, WorkerHandle};

mod common;

const TENANT: &str = "acme";
const SITE: &str = "hotel-ams";
const LEAF_USER: &str = "edge-acme-ams";

/// A free port below the kernel's ephemeral range (32768+), so that no outgoing connection of
/// a parallel test can take it between this probe and nats-server binding it.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + (Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A throw-away CA and a server certificate for 127.0.0.1 (never committed).
fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut a = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=accesshub test CA",
    ];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &a);
    let mut a = vec!["req", "-nodes", "-subj", "/CN=127.0.0.1"];
    a.extend(ec);
    a.extend(["-keyout", "hub.key", "-out", "hub.csr"]);
    openssl(dir, &a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "hub.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "hub.pem",
        ],
    );
}

struct NatsServer {
    child: Child,
    conf: PathBuf,
    port: u16,
}

impl NatsServer {
    fn start(conf: PathBuf, port: u16) -> NatsServer {
        let log = std::fs::File::create(conf.with_extension("log")).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        NatsServer { child, conf, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        *self = NatsServer::start(self.conf.clone(), self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until a nats-server answers on `port` with its `INFO` line: a listening socket is not
/// enough (a port handed out by `free_port` can be taken by another process meanwhile, and
/// a server still starting may close a connection before greeting it).
async fn wait_port(port: u16, log: &Path) {
    use tokio::io::AsyncBufReadExt;
    let start = Instant::now();
    loop {
        let mut greeting = String::new();
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut reader = tokio::io::BufReader::new(stream);
            let read = reader.read_line(&mut greeting);
            let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
        }
        if greeting.starts_with("INFO ") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "port {port} (greeting {greeting:?}): {}",
            std::fs::read_to_string(log.with_extension("log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Edge {
    dir: PathBuf,
    hub: NatsServer,
    leaf: NatsServer,
    leaf_conf: String,
    ns: String,
}

impl Edge {
    /// Cluster NATS (JetStream + TLS leaf port) and the hotel's leaf node, for namespace `ns`.
    async fn start(ns: &str) -> Edge {
        let dir = std::env::temp_dir().join(format!("accesshub-edge-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        make_certs(&dir);
        let (hub_port, leaf_port, local_port) = (free_port(), free_port(), free_port());
        // The cluster's NATS as deployed: one user per identity of permissions.yaml plus the
        // hotel's leaf user, and a test-only operator user for the test's own bus.
        let mut ids = accesshub_natsauth::identities(ns).unwrap();
        ids.push(
            edge_identity(
                &format!("{LEAF_USER}:{TENANT}:{SITE}")
                    .parse::<EdgeBinding>()
                    .unwrap(),
                ns,
            )
            .unwrap(),
        );
        let users = accesshub_natsauth::server_config(
            &ids,
            |u| Some(format!("pw-{u}")),
            &accesshub_natsauth::ServerOptions {
                listen: format!("127.0.0.1:{hub_port}"),
                store_dir: dir.join("js").display().to_string(),
                tls: None,
            },
        )
        .unwrap()
        .replacen(
            "  users = [\n",
            "  users = [\n    {user: \"test-operator\", password: \"pw-test-operator\"}\n",
            1,
        );
        let leafnodes = hub_leafnodes(
            &format!("127.0.0.1:{leaf_port}"),
            &LeafTls {
                cert_file: Some(dir.join("hub.pem").display().to_string()),
                key_file: Some(dir.join("hub.key").display().to_string()),
                ca_file: None,
            },
        );
        let hub_conf = dir.join("hub.conf");
        std::fs::write(&hub_conf, format!("{users}{leafnodes}")).unwrap();
        let leaf_conf = accesshub_natsauth::edge::leaf_config(&LeafOptions {
            listen: format!("127.0.0.1:{local_port}"),
            hub_url: format!("tls://127.0.0.1:{leaf_port}"),
            user: LEAF_USER.into(),
            password: format!("pw-{LEAF_USER}"),
            tls: LeafTls {
                ca_file: Some(dir.join("ca.pem").display().to_string()),
                ..LeafTls::default()
            },
        });
        assert!(!leaf_conf.contains("jetstream"), "{leaf_conf}");
        let leaf_path = dir.join("leaf.conf");
        std::fs::write(&leaf_path, &leaf_conf).unwrap();
        let hub = NatsServer::start(hub_conf.clone(), hub_port);
        wait_port(hub_port, &hub_conf).await;
        wait_port(leaf_port, &hub_conf).await;
        let leaf = NatsServer::start(leaf_path.clone(), local_port);
        wait_port(local_port, &leaf_path).await;
        Edge {
            dir,
            hub,
            leaf,
            leaf_conf,
            ns: ns.to_owned(),
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.leaf.stop();
        self.hub.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn reservation(nights: u64) -> Reservation {
    Reservation {
        rooms: vec!["101".into()],
        common_areas: vec![],
        ..common::reservation(ReservationStatus::Confirmed, "Jansen, Eva", nights)
    }
}

struct Env {
    edge: Edge,
    sim: SimHandle,
    db: accesshub_testkit::TestDb,
    bus: accesshub_bus::Bus,
    link: Arc<EdgeLink>,
    worker: Option<WorkerHandle>,
    stop: CancellationToken,
    watcher: CancellationToken,
    common: accesshub_config::CommonConfig,
    conn: Connection,
    revs: std::collections::HashMap<String, i64>,
}

impl Env {
    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
        sim.state().seed_demo();
        let (db, tb) = accesshub_testkit::isolated().await;
        let ns = tb.namespace.clone();
        tb.cleanup().await;
        let edge = Edge::start(&ns).await;
        let mut operator = tb.config("test", &db.url);
        operator.nats_url = edge.hub.url();
        operator.nats_user = Some(("test-operator".into(), "pw-test-operator".into()));
        let bus = accesshub_bus::connect(&operator).await.unwrap();
        bus.ensure_streams().await.unwrap();
        // The worker as deployed: its own NATS identity; its replies come back to its own
        // inbox, the only one the hotel's leaf user may publish to.
        let mut common = tb.config(WORKER, &db.url);
        common.nats_url = edge.hub.url();
        common.nats_user = Some((WORKER.into(), format!("pw-{WORKER}")));
        common.nats_inbox_prefix = Some(accesshub_natsauth::inbox_prefix(WORKER));

        // The hotel: the relay on the leaf node, the lock server behind it.
        let mut settings = common::sim_settings(&sim, DormakabaProduct::Saflok);
        let lock_url = SoapConfig::from_settings(&settings).endpoint;
        settings.edge_site = Some(SITE.into());
        settings.encoders = vec![accesshub_connections::Encoder {
            name: "Front desk".into(),
            id: "1".into(),
            kind: accesshub_connections::EncoderKind::Network,
        }];
        // What the cluster would dial if it could: an address it must never reach.
        settings.host = "10.255.255.1".into();
        let stop = CancellationToken::new();
        let relay_client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None::<usize>)
            .connect(edge.leaf.url())
            .await
            .unwrap();
        let relay = RelayConfig {
            tenant: TENANT.into(),
            site: SITE.into(),
            lock_url,
            namespace: ns.clone(),
            timeout: Duration::from_secs(10),
        };
        tokio::spawn(run_relay(relay_client, relay, stop.clone()));

        let conn = Connection {
            tenant: TENANT.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Dormakaba(settings),
            version: 1,
        };
        let registry = accesshub_telemetry::Registry::default();
        let link = EdgeLink::new(common.clone(), &registry);
        let mut env = Env {
            edge,
            sim,
            db,
            bus,
            link,
            worker: None,
            stop,
            watcher: CancellationToken::new(),
            common,
            conn,
            revs: Default::default(),
        };
        env.start_worker().await;
        env
    }

    /// The cloud worker and its site watcher, with a fresh edge link (nothing remembered).
    async fn start_worker(&mut self) {
        let registry = accesshub_telemetry::Registry::default();
        self.link = EdgeLink::new(self.common.clone(), &registry);
        let mut cfg = WorkerConfig::for_test(
            self.common.clone(),
            Arc::new(StaticConnections::new(vec![self.conn.clone()])),
        );
        cfg.max_deliver = 4;
        // The circuit breaker on, as in production: a site offline is its own state (parked
        // reservations, the site pinged), not failures that open the connection's breaker.
        cfg.breaker_threshold = 2;
        cfg.registry = registry;
        self.worker = Some(
            worker_runtime::start(cfg, DormakabaHandler::with_edge(self.link.clone()))
                .await
                .unwrap(),
        );
        self.watcher = CancellationToken::new();
        let pool = accesshub_store::connect_lazy(&self.db.url, 2).unwrap();
        tokio::spawn(dormakaba_adapter::resume::watch(
            self.link.clone(),
            pool,
            self.bus.clone(),
            Duration::from_millis(200),
            self.watcher.clone(),
        ));
    }

    /// A worker restart: everything in memory is gone.
    async fn restart_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await.unwrap();
        }
        self.watcher.cancel();
        self.start_worker().await;
    }

    /// The leaf link is up and the relay's interest has reached the cluster.
    async fn wait_online(&self) {
        let target = dormakaba_adapter::edge::EdgeTarget {
            tenant: TENANT.into(),
            site: SITE.into(),
            upstream_sites: vec![],
        };
        let start = Instant::now();
        while self.link.ping(&target).await != SiteState::Online {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "relay never answered through the leaf node: {}",
                std::fs::read_to_string(self.edge.hub.conf.with_extension("log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn publish(&self, ev: &Event) {
        common::publish(&self.bus, ev).await;
    }

    /// Stores the reservation as booking-ingest would and publishes it; its revision.
    async fn reservation(&mut self, key: &str, nights: u64) -> i64 {
        let rev = self.revs.entry(key.to_owned()).or_default();
        *rev += 1;
        let rev = *rev;
        let ev = Event::new(
            TENANT,
            "hotel",
            key,
            rev,
            Source::Native,
            Utc::now(),
            EventBody::Reservation(reservation(nights)),
        );
        common::store_booking(&self.db.pool, &ev).await;
        self.publish(&ev).await;
        rev
    }

    async fn key_request(&self, reservation_key: &str, count: u32) -> Uuid {
        let req = KeyRequest {
            request_id: Uuid::now_v7(),
            reservation_key: reservation_key.into(),
            action: KeyAction::NewKey,
            encoder_id: Some("1".into()),
            key_count: count,
            requested_by: Some("desk".into()),
            mobile_phone: None,
            mobile_key: false,
        };
        let ev = Event::new(
            TENANT,
            "hotel",
            req.request_id.to_string(),
            1,
            Source::Native,
            Utc::now(),
            EventBody::KeyRequest(req.clone()),
        );
        self.publish(&ev).await;
        req.request_id
    }

    async fn binding(&self, kind: &str, key: &str) -> Option<worker_runtime::Binding> {
        let key = worker_runtime::BindingKey {
            tenant: TENANT.into(),
            vendor: "dormakaba".into(),
            kind: kind.into(),
            booking_key: key.into(),
        };
        worker_runtime::get_binding(&self.db.pool, &key)
            .await
            .unwrap()
    }

    /// The key request's final outcome and how long it took from publish.
    async fn outcome(&self, id: Uuid, since: Instant) -> (KeyResultStatus, String, Duration) {
        loop {
            if let Some(s) = self
                .binding("keyreq", &id.to_string())
                .await
                .as_ref()
                .and_then(key_request_status)
                && s.status.is_final()
                && let StoredStatus::Result(r) = s.status
            {
                return (r, s.message.unwrap_or_default(), since.elapsed());
            }
            assert!(
                since.elapsed() < Duration::from_secs(20),
                "key request {id}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn eventually(&self, what: &str, mut f: impl AsyncFnMut(&Env) -> bool) {
        let start = Instant::now();
        while !f(self).await {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_out_of(&self, rid: &str) -> Option<chrono::DateTime<Utc>> {
        self.sim
            .state()
            .dormakaba_bookings(Product::Saflok)
            .iter()
            .find(|b| b.reservation_id == rid)
            .map(|b| b.check_out)
    }

    /// Whether `accessctl status` (its collector) shows the site in this state.
    async fn status_says(&self, online: bool) -> bool {
        let st = accesshub_dlq::collect_status(&self.bus, &self.db.pool).await;
        st.edge_sites
            .iter()
            .any(|s| s.tenant == TENANT && s.site == SITE && s.online == online)
    }

    async fn dlq_depth(&self) -> u64 {
        common::dlq_depth(&self.bus).await
    }

    async fn finish(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await.unwrap();
        }
        self.stop.cancel();
        self.watcher.cancel();
        self.bus.delete_streams().await;
        self.db.drop_db().await;
        drop(self.edge);
    }
}

/// Booking, key request with its result, the leaf link cut during a burst and restored:
/// nothing lost, nothing dead-lettered, keys made once, latest state applied in order.
#[tokio::test]
async fn edge_over_a_leaf_node_survives_a_cut_link() {
    let mut env = Env::new().await;
    env.wait_online().await;
    let keys = ["E1", "E2", "E3"];
    // Bookings exist at the lock system once a key is cut (through the edge).
    for k in keys {
        env.reservation(k, 2).await;
    }
    for k in keys {
        let t = Instant::now();
        let id = env.key_request(k, 1).await;
        let (status, msg, took) = env.outcome(id, t).await;
        assert_eq!(status, KeyResultStatus::Encoded, "{msg}");
        assert!(msg.contains("1 card(s) encoded on encoder 1"), "{msg}");
        eprintln!("key request answered in {} ms", took.as_millis());
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    assert_eq!(env.sim.state().dormakaba_keys(Product::Saflok).len(), 3);
    assert_eq!(env.link.state(TENANT, SITE), Some(SiteState::Online));

    // The hotel's link goes down; a burst of changes arrives meanwhile.
    env.edge.leaf.stop();
    let mut last = 0;
    for nights in 3..=5 {
        for k in keys {
            last = env.reservation(k, nights).await;
        }
    }
    for k in keys {
        env.eventually("parked", async |e: &Env| {
            e.binding("reservation", k)
                .await
                .is_some_and(|b| b.applied_revision == last && b.status == "pending")
        })
        .await;
    }
    assert_eq!(env.link.state(TENANT, SITE), Some(SiteState::Offline));
    // Parked once, by the site's state: nothing in the breaker's table, the breaker closed.
    let breaker_parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_events")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(
        breaker_parked, 0,
        "the site's reservations reached the breaker"
    );
    env.eventually(
        "accessctl status shows the site offline",
        async |e: &Env| e.status_says(false).await,
    )
    .await;
    // A key request is answered at once: site offline, no retries, no dead letter.
    let t = Instant::now();
    let id = env.key_request("E1", 1).await;
    let (status, msg, took) = env.outcome(id, t).await;
    assert_eq!(status, KeyResultStatus::Failed);
    assert!(msg.starts_with("site offline"), "{msg}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        env.dlq_depth().await,
        0,
        "nothing dead-lettered while offline"
    );
    let before = env.check_out_of("acme-E1");
    // The worker restarts meanwhile: what it knew of the site is gone, edge_sites is not.
    env.restart_worker().await;

    // The link returns: the parked reservations are applied, latest revision each.
    env.edge.leaf.restart();
    wait_port(env.edge.leaf.port, &env.edge.leaf.conf).await;
    let want = reservation(5).check_out().unwrap();
    for k in keys {
        let rid = format!("acme-{k}");
        env.eventually("applied after return", async |e: &Env| {
            e.check_out_of(&rid) == Some(want)
        })
        .await;
        env.eventually("recorded after return", async |e: &Env| {
            e.binding("reservation", k)
                .await
                .is_some_and(|b| b.status == "booked" && b.applied_revision == last)
        })
        .await;
    }
    assert_ne!(before, Some(want));
    env.eventually("accessctl status shows the site online", async |e: &Env| {
        e.status_says(true).await
    })
    .await;
    assert_eq!(env.link.state(TENANT, SITE), Some(SiteState::Online));
    // Keys made once: three cards before the cut, none since (no re-create, no re-encode).
    assert_eq!(env.sim.state().dormakaba_keys(Product::Saflok).len(), 3);
    assert_eq!(env.sim.state().dormakaba_bookings(Product::Saflok).len(), 3);
    assert_eq!(env.dlq_depth().await, 0, "nothing dead-lettered");
    let _ = env.edge.leaf_conf.len();
    env.finish().await;
}

/// The hotel's leaf user receives its own relay subject and nothing else of the cluster, and
/// can push nothing into the cluster but answers to the dormakaba worker.
#[tokio::test]
async fn edge_credentials_cannot_read_other_tenants_subjects() {
    let env = Env::new().await;
    let ns = accesshub_domain::subjects::Namespace::new(&env.edge.ns);
    let at_hotel = async_nats::connect(env.edge.leaf.url()).await.unwrap();
    let in_cluster = async_nats::ConnectOptions::with_user_and_password(
        "test-operator".into(),
        "pw-test-operator".into(),
    )
    .connect(env.edge.hub.url())
    .await
    .unwrap();
    let own = ns.subject(&dormakaba_adapter::edge::relay_subject(TENANT, SITE));
    let other = ns.subject(&dormakaba_adapter::edge::relay_subject("globex", SITE));
    let other_site = ns.subject(&dormakaba_adapter::edge::relay_subject(TENANT, "hotel-rtm"));
    let bookings = ns.subject(&subjects::booking(
        accesshub_domain::EventKind::Reservation,
        "globex",
        "R1",
    ));
    // Request/reply as the worker does it: its own identity and inbox.
    let worker =
        async_nats::ConnectOptions::with_user_and_password(WORKER.into(), format!("pw-{WORKER}"))
            .custom_inbox_prefix(accesshub_natsauth::inbox_prefix(WORKER))
            .connect(env.edge.hub.url())
            .await
            .unwrap();
    let mut responder = at_hotel.subscribe(own.clone()).await.unwrap();
    at_hotel.flush().await.unwrap();
    let answer = at_hotel.clone();
    let task = tokio::spawn(async move {
        if let Some(m) = responder.next().await {
            answer
                .publish(m.reply.unwrap(), "pong".into())
                .await
                .unwrap();
            answer.flush().await.unwrap();
        }
    });
    let start = Instant::now();
    let reply = loop {
        match worker.request(own.clone(), "ping".into()).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(5), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Answered (by this responder or the relay, both at the hotel): the worker's request
    // reached the site and the answer came back into the worker's inbox.
    drop(reply);
    task.abort();
    // The hotel cannot answer into another identity's inbox.
    let booking_ingest = async_nats::ConnectOptions::with_user_and_password(
        "booking-ingest".into(),
        "pw-booking-ingest".into(),
    )
    .custom_inbox_prefix(accesshub_natsauth::inbox_prefix("booking-ingest"))
    .connect(env.edge.hub.url())
    .await
    .unwrap();
    let mut inbox = booking_ingest
        .subscribe(format!(
            "{}.x",
            accesshub_natsauth::inbox_prefix("booking-ingest")
        ))
        .await
        .unwrap();
    booking_ingest.flush().await.unwrap();
    at_hotel
        .publish(
            format!("{}.x", accesshub_natsauth::inbox_prefix("booking-ingest")),
            "forged".into(),
        )
        .await
        .unwrap();
    at_hotel.flush().await.unwrap();
    assert!(
        !got(&mut inbox).await,
        "the hotel wrote into booking-ingest's inbox"
    );
    let mut subs = Vec::new();
    for s in [&own, &other, &other_site, &bookings] {
        subs.push(at_hotel.subscribe(s.clone()).await.unwrap());
    }
    at_hotel.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in [&own, &other, &other_site, &bookings] {
        in_cluster
            .publish(s.clone(), "secret".into())
            .await
            .unwrap();
    }
    in_cluster.flush().await.unwrap();
    assert!(
        got(&mut subs[0]).await,
        "control: the site's own relay subject arrives"
    );
    for (i, what) in [(1, "another tenant"), (2, "another site"), (3, "bookings")] {
        assert!(!got(&mut subs[i]).await, "{what} reached the hotel");
    }
    // Nor can the hotel publish into the cluster's streams.
    let mut watch = in_cluster
        .subscribe(ns.subject("bookings.>"))
        .await
        .unwrap();
    in_cluster.flush().await.unwrap();
    at_hotel
        .publish(bookings.clone(), "forged".into())
        .await
        .unwrap();
    at_hotel.flush().await.unwrap();
    assert!(
        !got(&mut watch).await,
        "the hotel published into bookings.>"
    );
    env.finish().await;
}

/// Whether a message arrives on `sub` within half a second.
async fn got(sub: &mut async_nats::Subscriber) -> bool {
    tokio::time::timeout(Duration::from_millis(500), sub.next())
        .await
        .ok()
        .flatten()
        .is_some()
}
