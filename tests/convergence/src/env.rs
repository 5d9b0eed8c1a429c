//! One checker environment: a private PostgreSQL and a private nats-server (JetStream on its
//! file store, as in production) that histories restart at random points, the vendor
//! simulators, booking-ingest, the vendor's worker (restarted after each injected crash; it
//! reads its connections from Postgres through the notified cache, as in production) and the
//! reconciler, all in-process. Histories run one after the other, each with its own tenant and
//! a freshly reset simulator.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use accesshub_config::CommonConfig;
use accesshub_connections::{
    Connection, ConnectionCache, ConnectionStore, EgressPolicy, OffboardIntent, Secret,
    TenantStore, offboard,
};
use accesshub_domain::{DeadLetter, ErrorClass, Event, subjects};
use accesshub_e2e::{PrivateNats, PrivatePostgres};
use accesshub_store::SecretBox;
use accesshub_testkit::{TestBus, TestDb};
use booking_ingest::{IngestConfig, IngestHandle};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use reconciler::{
    Reconciler, RunStatus, Scope, Settings, Trigger, connections::conn_ref,
    offboard::OffboardTiming,
};
use tokio::sync::mpsc;
use vendor_sim::{FaultKind, FaultRule, SimConfig, SimHandle, Vendor};
use worker_runtime::{AfterApply, Handler, WorkerConfig, WorkerHandle};

use crate::{
    CheckError,
    history::{History, Offboard, Op},
    model::{Desired, Model, Object},
};

const SECRET: &str = "convergence-webhook-secret";
/// Longest a history may take to settle before it counts as failed.
const SETTLE: Duration = Duration::from_secs(90);

/// What one history came to.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Wanted and not at the vendor.
    pub missing: Vec<Object>,
    /// At the vendor and wanted by no booking.
    pub leaked: Vec<Object>,
    /// At the vendor more often than bookings want it.
    pub duplicates: Vec<Object>,
    /// Dead letters of this history classed permanent (the histories hold only valid events,
    /// so every one is a failure), with their reasons.
    pub permanent_dlq: Vec<String>,
    /// Other ways the history failed: an offboard run that did not finish, a connection that
    /// could not be enabled again.
    pub errors: Vec<String>,
    /// Permanent dead letters the documentation promises (an event meeting a disabled
    /// connection): expected, not failures.
    pub expected_dlq: usize,
    /// NATS and Postgres restarts.
    pub restarts: usize,
    /// Offboard runs that finished.
    pub offboards: usize,
    /// Dead letters of this history classed transient (retries exhausted under faults: the
    /// reconciler must have repaired what they left).
    pub transient_dlq: usize,
    /// Worker crashes injected.
    pub crashes: usize,
    /// Vendor calls answered with an injected fault.
    pub faults_injected: usize,
    /// Of those, the ones the vendor applied before the answer was lost.
    pub faults_after_commit: usize,
    /// Differences the workers alone left (before the reconciler ran).
    pub drift_before_sync: usize,
    /// Objects the reconciler created, updated or removed.
    pub repaired: i64,
}

impl Outcome {
    /// Vendor state equals desired state and nothing failed permanently.
    pub fn converged(&self) -> bool {
        self.missing.is_empty()
            && self.leaked.is_empty()
            && self.duplicates.is_empty()
            && self.permanent_dlq.is_empty()
            && self.errors.is_empty()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, list) in [
            ("missing", &self.missing),
            ("leaked", &self.leaked),
            ("duplicate", &self.duplicates),
            ("permanent dead letter", &self.permanent_dlq),
            ("error", &self.errors),
        ] {
            for o in list {
                writeln!(f, "  {what}: {o}")?;
            }
        }
        write!(
            f,
            "  ({} crashes, {} faults injected ({} after commit), {} restarts, {} offboards, {} expected dead letters, {} differences before the sync, {} repaired by it)",
            self.crashes,
            self.faults_injected,
            self.faults_after_commit,
            self.restarts,
            self.offboards,
            self.expected_dlq,
            self.drift_before_sync,
            self.repaired
        )
    }
}

/// Compares what the bookings want with what the vendor holds: an object required by `n`
/// bookings must be live at least once and at most `n` times; an optional one at most as often
/// as it is listed; anything else live is a leak.
pub fn compare(desired: &Desired, observed: &[Object]) -> (Vec<Object>, Vec<Object>, Vec<Object>) {
    let count = |v: &[Object]| {
        let mut m: BTreeMap<Object, usize> = BTreeMap::new();
        for o in v {
            *m.entry(o.clone()).or_default() += 1;
        }
        m
    };
    let required = count(&desired.required);
    let optional = count(&desired.optional);
    let got = count(observed);
    let mut missing = Vec::new();
    let mut leaked = Vec::new();
    let mut dup = Vec::new();
    for o in required.keys() {
        if got.get(o).copied().unwrap_or(0) == 0 {
            missing.push(o.clone());
        }
    }
    for (o, &g) in &got {
        let allowed = required.get(o).copied().unwrap_or(0) + optional.get(o).copied().unwrap_or(0);
        if allowed == 0 {
            leaked.push(if g > 1 {
                format!("{o} ×{g}")
            } else {
                o.clone()
            });
        } else if g > allowed {
            dup.push(format!("{o} ×{g} (wanted {allowed} times at most)"));
        }
    }
    (missing, leaked, dup)
}

/// A running environment.
pub struct Env {
    db: TestDb,
    bus: TestBus,
    sim: SimHandle,
    sbox: SecretBox,
    ingest: Option<IngestHandle>,
    http: reqwest::Client,
    base: String,
    /// DLQ sequence read up to.
    dlq_seen: u64,
    /// The private servers histories restart (declared after everything that uses them).
    nats: Arc<std::sync::Mutex<PrivateNats>>,
    pg: Arc<PrivatePostgres>,
    /// Connections as the admin API stores them; the worker reads them through `cache`.
    conns: ConnectionStore,
    cache: Arc<ConnectionCache>,
    listener: tokio::task::JoinHandle<()>,
}

/// Offboard runs of the checker: short pauses (the simulator answers at once), and long
/// enough to outlast injected faults and worker crashes.
const OFFBOARD_TIMING: OffboardTiming = OffboardTiming {
    timeout: Duration::from_secs(60),
    poll: Duration::from_millis(300),
    resend_after: Duration::from_secs(3),
    // The workers' connection cache TTL (+2 s), as in production.
    settle: Duration::from_secs(accesshub_connections::DEFAULT_TTL.as_secs() + 2),
};

fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> CheckError {
    move |e| CheckError::Setup(format!("{what}: {e}"))
}

impl Env {
    /// Private servers, database, namespace, simulators and booking-ingest.
    pub async fn new() -> Result<Env, CheckError> {
        accesshub_telemetry::init_for_tests();
        let (pg, nats) = tokio::task::spawn_blocking(|| {
            Ok::<_, accesshub_e2e::HarnessError>((PrivatePostgres::start()?, PrivateNats::start()?))
        })
        .await
        .map_err(err("private servers"))?
        .map_err(err("private servers"))?;
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/convergence?sslmode=disable",
            pg.port
        );
        {
            use sqlx::{Connection as _, Executor as _};
            let mut admin = sqlx::PgConnection::connect(&format!("{}?sslmode=disable", pg.url()))
                .await
                .map_err(err("postgres"))?;
            admin
                .execute("CREATE DATABASE convergence")
                .await
                .map_err(err("create database"))?;
        }
        let pool = accesshub_store::connect_lazy(&url, 20).map_err(err("pool"))?;
        accesshub_store::migrate(&pool)
            .await
            .map_err(err("migrate"))?;
        let db = TestDb {
            name: "convergence".into(),
            url,
            pool,
        };
        let namespace = "conv".to_owned();
        let nats_url = nats.url();
        let cfg = service_config("convergence", &namespace, &db.url, &nats_url);
        let bus = accesshub_bus::connect(&cfg).await.map_err(err("nats"))?;
        bus.ensure_streams().await.map_err(err("streams"))?;
        let bus = TestBus { namespace, bus };
        let sim = vendor_sim::start(SimConfig::ephemeral())
            .await
            .map_err(err("simulator"))?;
        let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).map_err(err("secret box"))?;
        let cfg = IngestConfig::for_test(
            service_config("booking-ingest", &bus.namespace, &db.url, &nats_url),
            sbox.clone(),
        );
        let ingest = booking_ingest::start(cfg)
            .await
            .map_err(err("booking-ingest"))?;
        let base = format!("http://{}", ingest.addr());
        let conns = ConnectionStore::new(db.pool.clone(), sbox.clone())
            .with_bus(bus.bus.clone())
            .with_egress(EgressPolicy::loopback_http());
        let cache = Arc::new(ConnectionCache::new(
            conns.clone(),
            accesshub_connections::DEFAULT_TTL,
        ));
        let listener = cache
            .listen(&bus.bus, None)
            .await
            .map_err(err("connection changes"))?;
        Ok(Env {
            db,
            bus,
            sim,
            sbox,
            ingest: Some(ingest),
            http: reqwest::Client::new(),
            base,
            dlq_seen: 0,
            nats: Arc::new(std::sync::Mutex::new(nats)),
            pg: Arc::new(pg),
            conns,
            cache,
            listener,
        })
    }

    /// Stops everything; the private servers go with their directories.
    pub async fn finish(mut self) {
        if let Some(i) = self.ingest.take() {
            i.shutdown().await;
        }
        self.listener.abort();
        self.sim.shutdown().await;
        self.db.pool.close().await;
        let (nats, pg) = (self.nats, self.pg);
        let _ = tokio::task::spawn_blocking(move || {
            drop(nats);
            drop(pg);
        })
        .await;
    }

    /// Kills NATS, keeps it down for `down`, and starts it again on the same port and store.
    async fn restart_nats(&self, down: Duration) -> Result<(), CheckError> {
        let nats = self.nats.clone();
        tokio::task::spawn_blocking(move || {
            let mut n = nats
                .lock()
                .map_err(|_| CheckError::Setup("nats handle poisoned".into()))?;
            n.kill();
            std::thread::sleep(down);
            n.restart().map_err(err("nats restart"))
        })
        .await
        .map_err(err("nats restart"))?
    }

    /// Shuts Postgres down at once, keeps it down for `down`, and starts it again.
    async fn restart_postgres(&self, down: Duration) -> Result<(), CheckError> {
        let pg = self.pg.clone();
        tokio::task::spawn_blocking(move || pg.restart_after(down))
            .await
            .map_err(err("postgres restart"))?
            .map_err(err("postgres restart"))
    }

    fn worker_config(&self, name: &str) -> WorkerConfig {
        let source: Arc<dyn worker_runtime::ConnectionSource> = self.cache.clone();
        let mut cfg = WorkerConfig::for_test(
            service_config(name, &self.bus.namespace, &self.db.url, &self.nats_url()),
            source,
        );
        // Faults are injected for a while; exhausting retries is not what is checked here
        // (the reconciler repairs it), so allow plenty.
        cfg.max_deliver = 30;
        cfg
    }

    fn nats_url(&self) -> String {
        self.nats
            .lock()
            .map(|n| n.url())
            .unwrap_or_else(|p| p.into_inner().url())
    }

    /// The connections of `model` stored (created, or enabled again), as an admin would;
    /// returns the ones that now act on more than before (created or switched on), for
    /// which the admin API queues a full sync run ([`Connection::widens`]).
    async fn connect<M: Model>(&self, model: &M, tenant: &str) -> Result<Vec<Connection>, String> {
        let mut widened = Vec::new();
        for mut c in model.connections(tenant, &self.sim) {
            let before = self
                .conns
                .get(tenant, c.vendor(), &c.name)
                .await
                .map_err(|e| format!("read connection {}: {e}", c.name))?;
            // Whatever version it has by now: this is "make it so".
            c.version = 0;
            c.enabled = true;
            self.conns
                .upsert(&c)
                .await
                .map_err(|e| format!("enable or create connection {}: {e}", c.name))?;
            if before.is_none_or(|b| c.widens(&b)) {
                widened.push(c);
            }
        }
        Ok(widened)
    }

    /// What the reconciler does with the run the admin API queues when a connection is
    /// switched on again: re-admits the events ingest ignored while it was off, then
    /// compares with the vendor. Run at once, as a reconciler with an empty queue would; its
    /// failures are not the history's (the final sync judges).
    async fn sync_widened(&self, rec: &Reconciler, widened: &[Connection]) -> Result<(), String> {
        for c in widened {
            reconciler::store::request_run(
                &self.db.pool,
                &conn_ref(c),
                Scope::Full,
                Trigger::Api,
                Some("convergence"),
            )
            .await
            .map_err(|e| format!("sync request: {e}"))?;
        }
        rec.drain_queue()
            .await
            .map(|_| ())
            .map_err(|e| format!("sync run: {e}"))
    }

    /// Runs one history and judges the end state.
    pub async fn run<M: Model>(&mut self, model: &M, h: &History) -> Result<Outcome, CheckError> {
        let sim = self.sim.state();
        sim.reset();
        sim.seed_demo();
        model.seed(&self.sim).map_err(err("model fixtures"))?;
        sim.reseed_faults(h.seed);
        // No vendor absorbs a repeated create: a duplicate accesshub causes stays live.
        for v in [
            Vendor::CloudPass,
            Vendor::Tapkey,
            Vendor::IPassan,
            Vendor::Dormakaba,
        ] {
            sim.set_dedupe(v, false);
        }
        let tenants = TenantStore::new(self.db.pool.clone(), self.sbox.clone());
        tenants
            .upsert(&h.tenant, &h.tenant)
            .await
            .map_err(err("tenant"))?;
        tenants
            .set_source_secret(
                &h.tenant,
                "native",
                Some(Secret::new(SECRET)),
                Duration::ZERO,
            )
            .await
            .map_err(err("source secret"))?;
        self.connect(model, &h.tenant)
            .await
            .map_err(CheckError::Setup)?;
        let conns = model.connections(&h.tenant, &self.sim);
        let cfg = self.worker_config(M::WORKER);

        let armed = Arc::new(AtomicUsize::new(0));
        let (crash_tx, mut crash_rx) = mpsc::unbounded_channel();
        let start = |armed: Arc<AtomicUsize>, tx: mpsc::UnboundedSender<()>| {
            worker_runtime::start(cfg.clone(), crashing(model.handler(), armed, tx))
        };
        let mut worker = Some(
            start(armed.clone(), crash_tx.clone())
                .await
                .map_err(err("worker"))?,
        );
        let mut out = Outcome::default();
        let mut rng = StdRng::seed_from_u64(h.seed ^ 0x5eed);
        // The reconciler as deployed: connections from Postgres, offboard runs included.
        let rec = Reconciler::new(
            self.db.pool.clone(),
            self.bus.bus.clone(),
            Arc::new(self.conns.clone()),
            vec![model.inventory()],
            Settings {
                default_schedules: false,
                offboard: OFFBOARD_TIMING,
                ..Settings::default()
            },
        );

        for i in 0..h.ops.len() {
            self.restart_crashed(&mut worker, &mut crash_rx, &mut out, || {
                start(armed.clone(), crash_tx.clone())
            })
            .await?;
            match &h.ops[i] {
                Op::Send { .. } | Op::Resend { .. } => {
                    if let Some(ev) = h.event(i) {
                        self.post(&ev).await?;
                    }
                }
                Op::Crash => {
                    armed.fetch_add(1, Ordering::SeqCst);
                }
                Op::Fail {
                    calls,
                    after_commit,
                } => {
                    let (kind, calls) = fault(&mut rng, *after_commit, *calls);
                    sim.add_fault(FaultRule::next_n(M::SIM, kind, calls));
                }
                Op::RestartNats { down_ms } => {
                    self.restart_nats(Duration::from_millis(u64::from(*down_ms)))
                        .await?;
                    out.restarts += 1;
                }
                Op::RestartPostgres { down_ms } => {
                    self.restart_postgres(Duration::from_millis(u64::from(*down_ms)))
                        .await?;
                    out.restarts += 1;
                }
                Op::Offboard { how } => {
                    let intent = match how {
                        Offboard::Disable => OffboardIntent::Disable,
                        Offboard::Delete => OffboardIntent::Delete,
                    };
                    for c in &conns {
                        match self
                            .offboard(
                                &rec,
                                c,
                                intent,
                                &mut worker,
                                &mut crash_rx,
                                &mut out,
                                || start(armed.clone(), crash_tx.clone()),
                            )
                            .await?
                        {
                            Ok(true) => out.offboards += 1,
                            Ok(false) => {}
                            Err(e) => out.errors.push(format!("op {i}: {e}")),
                        }
                    }
                }
                Op::Reconnect => {
                    let synced = match self.connect(model, &h.tenant).await {
                        Ok(widened) => self.sync_widened(&rec, &widened).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = synced {
                        out.errors.push(format!("op {i}: {e}"));
                    }
                }
            }
        }
        // The history is over; things settle. A crash still armed fires at the next apply
        // of the settling (the worker catches up after the last send: with file-backed
        // streams on private servers it often has not applied anything yet), and settling
        // restarts the crashed worker like any other.
        let name = M::WORKER;
        self.settle(&mut worker, &mut crash_rx, &mut out, name, || {
            start(armed.clone(), crash_tx.clone())
        })
        .await?;

        // Offboarded at the end: the tenant wants nothing at this vendor any more.
        let connected = h.connected_at_end();
        let winners = if connected { h.winners() } else { Vec::new() };
        let (m, l, d) = compare(&model.desired(&winners), &model.observed(&self.sim));
        out.drift_before_sync = m.len() + l.len() + d.len();
        sim.clear_faults();

        // One reconciler run per connection (none is left after an offboarding).
        if connected {
            for c in &conns {
                reconciler::store::request_run(
                    &self.db.pool,
                    &conn_ref(c),
                    Scope::Full,
                    Trigger::Manual,
                    None,
                )
                .await
                .map_err(err("sync request"))?;
            }
            for run in rec.drain_queue().await.map_err(err("sync run"))? {
                out.repaired += run.counts.created + run.counts.updated + run.counts.removed;
                if let Some(e) = run.error
                    && !model.documented_refusal(&e)
                {
                    out.permanent_dlq.push(format!("sync run failed: {e}"));
                }
            }
            self.settle(&mut worker, &mut crash_rx, &mut out, name, || {
                start(armed.clone(), crash_tx.clone())
            })
            .await?;
        }

        let refused = self.read_dlq(model, h, &mut out).await?;
        // A booking the vendor refuses for a documented reason may hold its objects or not.
        let (kept, gone): (Vec<Event>, Vec<Event>) = winners
            .into_iter()
            .partition(|ev| !refused.contains(&ev.booking_key));
        let mut desired = model.desired(&kept);
        let gone = model.desired(&gone);
        desired.optional.extend(gone.required);
        desired.optional.extend(gone.optional);
        let (missing, leaked, mut duplicates) = compare(&desired, &model.observed(&self.sim));
        duplicates.extend(model.live_duplicates(&self.sim));
        out.missing = missing;
        out.leaked = leaked;
        out.duplicates = duplicates;
        let calls = self.sim.state().calls_for(M::SIM);
        out.faults_injected = calls.iter().filter(|c| c.injected_fault).count();
        out.faults_after_commit = calls
            .iter()
            .filter(|c| c.injected_fault && c.committed_status.is_some())
            .count();
        if let Some(w) = worker.take() {
            w.shutdown().await.map_err(err("worker shutdown"))?;
        }
        Ok(out)
    }

    /// Offboards `conn` with its access removed, as `DELETE …?access=remove` (or `PUT
    /// enabled:false …?access=remove`) does through the same library: marks it offboarding,
    /// queues an offboard run, and runs it to its end, replacing crashed workers meanwhile.
    /// `Ok(Ok(false))`: there was no such connection (already deleted); `Ok(Err(_))`: the
    /// offboard run did not finish (a failure of the history).
    #[allow(clippy::too_many_arguments)]
    async fn offboard<F, Fut>(
        &self,
        rec: &Reconciler,
        conn: &Connection,
        intent: OffboardIntent,
        worker: &mut Option<WorkerHandle>,
        crashes: &mut mpsc::UnboundedReceiver<()>,
        out: &mut Outcome,
        start: F,
    ) -> Result<Result<bool, String>, CheckError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<WorkerHandle, worker_runtime::WorkerError>>,
    {
        let vendor = conn.vendor();
        let began = offboard::begin(
            &self.db.pool,
            Some(&self.bus.bus),
            &conn.tenant,
            vendor,
            &conn.name,
            intent,
        )
        .await
        .map_err(err("offboard"))?;
        if !began {
            return Ok(Ok(false));
        }
        reconciler::store::request_run(
            &self.db.pool,
            &conn_ref(conn),
            Scope::Offboard,
            Trigger::Api,
            Some("convergence"),
        )
        .await
        .map_err(err("offboard request"))?;
        let drain = rec.drain_queue();
        tokio::pin!(drain);
        let runs = loop {
            tokio::select! {
                r = &mut drain => break r.map_err(err("offboard run"))?,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    self.restart_crashed(worker, crashes, out, &start).await?;
                }
            }
        };
        let mut done = false;
        for run in runs {
            if run.scope != Scope::Offboard {
                continue;
            }
            if run.status != RunStatus::Succeeded {
                return Ok(Err(format!(
                    "offboard run {:?}: {}",
                    run.status,
                    run.error.unwrap_or_default()
                )));
            }
            done = true;
        }
        if !done {
            return Ok(Err("no offboard run was executed".into()));
        }
        Ok(Ok(true))
    }

    /// Replaces a worker that "crashed" (its handler hangs after a vendor call, unrecorded)
    /// by a fresh one, as a restarted pod would be.
    async fn restart_crashed<F, Fut>(
        &self,
        worker: &mut Option<WorkerHandle>,
        crashes: &mut mpsc::UnboundedReceiver<()>,
        out: &mut Outcome,
        start: F,
    ) -> Result<(), CheckError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<WorkerHandle, worker_runtime::WorkerError>>,
    {
        while crashes.try_recv().is_ok() {
            out.crashes += 1;
            if let Some(w) = worker.take() {
                w.abort().await;
            }
            *worker = Some(start().await.map_err(err("worker restart"))?);
        }
        Ok(())
    }

    /// Waits until nothing is left to do (restarting crashed workers meanwhile).
    async fn settle<F, Fut>(
        &self,
        worker: &mut Option<WorkerHandle>,
        crashes: &mut mpsc::UnboundedReceiver<()>,
        out: &mut Outcome,
        name: &str,
        start: F,
    ) -> Result<(), CheckError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<WorkerHandle, worker_runtime::WorkerError>>,
    {
        let deadline = Instant::now() + SETTLE;
        let mut quiet_in_a_row = 0;
        while quiet_in_a_row < 3 {
            if Instant::now() > deadline {
                return Err(CheckError::Stuck(format!(
                    "nothing settled within {SETTLE:?}"
                )));
            }
            self.restart_crashed(worker, crashes, out, &start).await?;
            if self.quiet(name).await {
                quiet_in_a_row += 1;
            } else {
                quiet_in_a_row = 0;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Nothing in the outbox, nothing pending or unacknowledged for the worker.
    async fn quiet(&self, worker: &str) -> bool {
        let outbox: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.db.pool)
            .await;
        if !matches!(outbox, Ok(0)) {
            return false;
        }
        for (stream, consumer) in [
            (subjects::BOOKINGS_STREAM, worker.to_owned()),
            (subjects::SYNC_STREAM, format!("{worker}-sync")),
        ] {
            let bus = &self.bus.bus;
            let Ok(s) = bus.js.get_stream(bus.stream_name(stream)).await else {
                return false;
            };
            let Ok(mut c) = s
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                    &bus.ns.stream(&consumer),
                )
                .await
            else {
                return false;
            };
            if !c
                .info()
                .await
                .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            {
                return false;
            }
        }
        true
    }

    /// Delivers one event through booking-ingest's webhook, as an upstream would (retrying a
    /// 503 as upstreams do).
    async fn post(&self, ev: &Event) -> Result<(), CheckError> {
        let body = serde_json::to_vec(ev).map_err(err("event json"))?;
        let url = format!("{}/webhooks/native/{}", self.base, ev.tenant);
        for _ in 0..50 {
            let ts = chrono::Utc::now().timestamp();
            let resp = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-accesshub-timestamp", ts.to_string())
                .header(
                    "x-accesshub-signature",
                    booking_ingest::sign(SECRET, ts, &body),
                )
                .body(body.clone())
                .send()
                .await
                .map_err(err("webhook"))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let text = resp.text().await.unwrap_or_default();
            if status.as_u16() != 503 {
                return Err(CheckError::Refused(format!("{status}: {text}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(CheckError::Refused("ingest unavailable".into()))
    }

    /// This history's dead letters, by class; returns the bookings the vendor refused for a
    /// documented reason.
    async fn read_dlq<M: Model>(
        &mut self,
        model: &M,
        h: &History,
        out: &mut Outcome,
    ) -> Result<std::collections::BTreeSet<String>, CheckError> {
        let mut refused = std::collections::BTreeSet::new();
        let bus = &self.bus.bus;
        let mut s = bus
            .js
            .get_stream(bus.stream_name(subjects::DLQ_STREAM))
            .await
            .map_err(err("dlq stream"))?;
        let last = s.info().await.map_err(err("dlq info"))?.state.last_sequence;
        let marker = format!(".{}.", h.tenant);
        let disabled = format!("no enabled {} connection", M::NAME);
        for seq in self.dlq_seen + 1..=last {
            let Ok(msg) = s.get_raw_message(seq).await else {
                continue;
            };
            let Ok(dl) = serde_json::from_slice::<DeadLetter>(&msg.payload) else {
                continue;
            };
            if !dl.original_subject.contains(&marker) {
                continue;
            }
            match dl.class {
                ErrorClass::Permanent if model.documented_refusal(&dl.reason) => {
                    if let Some((_, key)) = dl.original_subject.split_once(&marker) {
                        refused.insert(key.to_owned());
                    }
                }
                ErrorClass::Permanent
                    if dl.reason.contains(&disabled)
                        && dl
                            .payload_bytes()
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Event>(&b).ok())
                            .and_then(|ev| h.op_of_event(&ev))
                            .is_some_and(|i| h.may_meet_a_disabled_connection(i)) =>
                {
                    out.expected_dlq += 1;
                }
                ErrorClass::Permanent => out
                    .permanent_dlq
                    .push(format!("{}: {}", dl.original_subject, dl.reason)),
                _ => out.transient_dlq += 1,
            }
        }
        self.dlq_seen = last;
        Ok(refused)
    }
}

/// The fault of an [`Op::Fail`] and how many calls it hits. Before commit: 500, 503 or 429.
/// After commit (the vendor applied the call, its answer is lost): 500, 503, a reset
/// connection, or a timeout — which costs the client's whole timeout, so it hits one call.
fn fault(rng: &mut StdRng, after_commit: bool, calls: u8) -> (FaultKind, u32) {
    let calls = u32::from(calls);
    if after_commit {
        match rng.random_range(0..4) {
            0 => (FaultKind::Status500AfterCommit, calls),
            1 => (FaultKind::Status503AfterCommit, calls),
            2 => (FaultKind::ResetAfterCommit, calls),
            _ => (FaultKind::TimeoutAfterCommit, 1),
        }
    } else {
        let kind = match rng.random_range(0..3) {
            0 => FaultKind::Status500,
            1 => FaultKind::Status503,
            _ => FaultKind::Status429 {
                retry_after_secs: 1,
            },
        };
        (kind, calls)
    }
}

/// The model's handler, made to "crash" (hang, unrecorded, unacknowledged) right after its
/// next successful apply whenever a crash is armed.
fn crashing<H: Handler>(
    inner: H,
    armed: Arc<AtomicUsize>,
    crashed: mpsc::UnboundedSender<()>,
) -> impl Handler<Ids = H::Ids> {
    AfterApply::new(inner, move |_: &Event| {
        let fire = armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let crashed = crashed.clone();
        async move {
            if fire {
                let _ = crashed.send(());
                std::future::pending::<()>().await;
            }
        }
    })
}

/// A service's configuration against the private servers, with JetStream's file store (the
/// production setting, so that a NATS restart keeps the streams and consumers).
fn service_config(service: &str, namespace: &str, db_url: &str, nats_url: &str) -> CommonConfig {
    let mut cfg = CommonConfig::for_test(service, namespace, db_url);
    cfg.nats_url = nats_url.to_owned();
    cfg.streams.file_storage = true;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_live_copy_is_a_duplicate_and_fails_the_history() {
        let want = |v: &[&str]| Desired::required(v.iter().map(|s| (*s).to_owned()).collect());
        let got = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (m, l, d) = compare(&want(&["a"]), &got(&["a", "a"]));
        assert!(m.is_empty() && l.is_empty());
        assert_eq!(d, ["a ×2 (wanted 1 times at most)"]);
        let out = Outcome {
            duplicates: d,
            ..Outcome::default()
        };
        assert!(!out.converged());
        // Wanted by two bookings: two copies are no duplicate, three are.
        assert!(compare(&want(&["a", "a"]), &got(&["a", "a"])).2.is_empty());
        assert_eq!(
            compare(&want(&["a", "a"]), &got(&["a", "a", "a"])).2.len(),
            1
        );
        // A copy nobody wants is a leak.
        assert_eq!(compare(&want(&[]), &got(&["b", "b"])).1, ["b ×2"]);
    }

    #[test]
    fn timeouts_after_commit_hit_one_call() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let (kind, calls) = fault(&mut rng, true, 4);
            assert!(kind.after_commit(), "{kind:?}");
            if kind == FaultKind::TimeoutAfterCommit {
                assert_eq!(calls, 1);
            }
            let (kind, _) = fault(&mut rng, false, 4);
            assert!(!kind.after_commit(), "{kind:?}");
        }
    }
}
