//! The long-running service: wakes on `NOTIFY` (or a poll), claims queued runs, fires due
//! schedules, takes over runs whose replica died, and executes runs under the connection lock.

use std::{collections::HashMap, sync::Arc, time::Duration};

use accesshub_bus::Bus;
use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    connections::{ConnectionSource, conn_ref},
    engine::{self, Outcome},
    error::ReconcileError,
    inventory::Inventory,
    lock,
    model::{RunStatus, Scope, SyncRun},
    store,
};

/// Tunables.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name of this replica in `sync_runs.runner`.
    pub runner: String,
    /// Poll for queued runs this often even without a `NOTIFY`.
    pub poll_interval: Duration,
    /// A running row whose heartbeat is older than this is taken over.
    pub lease: Duration,
    /// Runs of different connections executed at once by this replica.
    pub max_concurrent_runs: usize,
    /// Timezone of default schedules (connections carry none of their own).
    pub default_timezone: String,
    /// Create the default nightly schedule for connections without one.
    pub default_schedules: bool,
    /// How long offboard runs keep removing and re-listing.
    pub offboard: crate::offboard::OffboardTiming,
    /// Pruning of long-ended bookings (personal data).
    pub retention: crate::retention::RetentionSettings,
    /// How often upstreams without a usable webhook (Nexudus passes) are polled.
    pub upstream_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            runner: format!("reconciler-{}", uuid::Uuid::new_v4().simple()),
            poll_interval: Duration::from_secs(5),
            lease: Duration::from_secs(60),
            max_concurrent_runs: 2,
            default_timezone: "UTC".into(),
            default_schedules: true,
            offboard: Default::default(),
            retention: Default::default(),
            upstream_poll: Duration::from_secs(60),
        }
    }
}

/// `accesshub_sync_runs_total{vendor,status}` and `accesshub_sync_repairs_total{vendor,action}`
/// (the dashboard shows drift per vendor from the second).
#[derive(Clone, Default)]
pub struct SyncMetrics {
    runs: accesshub_telemetry::metrics::CounterVec,
    repairs: accesshub_telemetry::metrics::CounterVec,
    pruned: accesshub_telemetry::metrics::CounterVec,
}

impl SyncMetrics {
    /// Registers the families on `registry`, with `accesshub_secret_decrypt_failures_total{component=
    /// "reconciler"}`: connections and upstream credentials are unsealed here, so a
    /// key-rotation mistake shows on the reconciler's /metrics too.
    pub fn new(registry: &accesshub_telemetry::Registry) -> Self {
        registry.register(
            accesshub_store::DECRYPT_FAILURES,
            accesshub_store::DECRYPT_FAILURES_HELP,
            accesshub_store::decrypt_failures("reconciler"),
        );
        SyncMetrics {
            runs: registry.counter("accesshub_sync_runs", "Sync runs finished, by vendor and status"),
            repairs: registry.counter(
                "accesshub_sync_repairs",
                "Repair commands sent by sync runs, by vendor and action (created, updated, removed, failed)",
            ),
            pruned: registry.counter(
                "accesshub_retention_pruned",
                "Rows deleted by the retention job, by table (bookings, bindings, vendor_attempts, key_requests, audit_log, ingest_ignored)",
            ),
        }
    }

    fn record_pruned(&self, p: &crate::retention::Pruned) {
        use accesshub_telemetry::metrics::labels;
        for (table, n) in [
            ("bookings", p.bookings),
            ("bindings", p.bindings),
            ("vendor_attempts", p.vendor_attempts),
            ("key_requests", p.key_requests),
            ("audit_log", p.audit_log),
            ("ingest_ignored", p.ingest_ignored),
        ] {
            self.pruned
                .get_or_create(&labels([("table", table)]))
                .inc_by(n);
        }
    }

    fn record(&self, vendor: &str, status: RunStatus, c: &crate::model::Counts) {
        use accesshub_telemetry::metrics::labels;
        self.runs
            .get_or_create(&labels([("vendor", vendor), ("status", status.as_str())]))
            .inc();
        for (action, n) in [
            ("created", c.created),
            ("updated", c.updated),
            ("removed", c.removed),
            ("failed", c.failed),
        ] {
            self.repairs
                .get_or_create(&labels([("vendor", vendor), ("action", action)]))
                .inc_by(u64::try_from(n).unwrap_or(0));
        }
    }
}

/// The reconciler service.
#[derive(Clone)]
pub struct Reconciler {
    metrics: SyncMetrics,
    pool: PgPool,
    bus: Bus,
    connections: Arc<dyn ConnectionSource>,
    inventories: Arc<HashMap<&'static str, Arc<dyn Inventory>>>,
    settings: Settings,
    /// When this replica last ran a retention pass.
    last_retention: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Re-reads the booking systems before each compare (issue 21); `None`: compare only.
    puller: Option<crate::pull::Puller>,
    /// The durable path re-admitted events take ([`crate::readmit`]): the puller's, else one
    /// started at the first run (its committer task needs the runtime).
    storer: Arc<std::sync::OnceLock<crate::pull::Storer>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("runner", &self.settings.runner)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// A reconciler with the given inventories (one per vendor it can sync).
    pub fn new(
        pool: PgPool,
        bus: Bus,
        connections: Arc<dyn ConnectionSource>,
        inventories: Vec<Arc<dyn Inventory>>,
        settings: Settings,
    ) -> Self {
        let inventories = inventories.into_iter().map(|i| (i.vendor(), i)).collect();
        Reconciler {
            metrics: SyncMetrics::default(),
            pool,
            bus,
            connections,
            inventories: Arc::new(inventories),
            settings,
            last_retention: Arc::default(),
            puller: None,
            storer: Arc::default(),
        }
    }

    /// Runs pull from the upstreams first ("Sync" re-reads the source of truth).
    pub fn with_puller(mut self, puller: crate::pull::Puller) -> Self {
        // One committer for pulls and re-admissions (set before any run, so it takes).
        let _ = self.storer.set(puller.storer().clone());
        self.puller = Some(puller);
        self
    }

    fn storer(&self) -> &crate::pull::Storer {
        self.storer
            .get_or_init(|| crate::pull::Storer::start(self.pool.clone(), self.bus.clone()))
    }

    /// Records run and repair counts on `metrics` (registered on the service's registry).
    pub fn with_metrics(mut self, metrics: SyncMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Ready when Postgres answers and NATS is connected (repairs can be published).
    pub fn readiness(&self) -> accesshub_telemetry::ops::ReadinessCheck {
        let pool = self.pool.clone();
        let bus = self.bus.clone();
        Arc::new(move || {
            let pool = pool.clone();
            let connected = bus.is_connected();
            Box::pin(async move {
                if !connected {
                    return Err("NATS not connected".to_owned());
                }
                accesshub_store::ping(&pool)
                    .await
                    .map_err(|e| format!("postgres: {e}"))
            })
        })
    }

    /// The pool (for the API and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims and executes queued runs until none is left. Returns the runs executed.
    pub async fn drain_queue(&self) -> Result<Vec<SyncRun>, ReconcileError> {
        let mut done = Vec::new();
        while let Some(run) = store::claim_next(&self.pool, &self.settings.runner).await? {
            if let Some(r) = self.execute(run).await? {
                done.push(r);
            }
        }
        Ok(done)
    }

    /// Executes one claimed run under the connection lock; `None` if the connection is locked
    /// by another replica (the run is put back in the queue).
    pub async fn execute(&self, run: SyncRun) -> Result<Option<SyncRun>, ReconcileError> {
        let Some(guard) = lock::try_lock(&self.pool, &run.connection).await? else {
            tracing::info!(run = run.id, connection = %run.connection, "connection locked elsewhere; requeued");
            store::requeue(&self.pool, run.id).await?;
            return Ok(None);
        };
        let result = self.execute_locked(&run).await;
        let (status, counts, error) = match &result {
            Ok(o) if o.counts.failed > 0 => (
                RunStatus::Partial,
                o.counts,
                Some(format!(
                    "{} booking(s) failed: {}",
                    o.counts.failed,
                    o.problems.join("; ")
                )),
            ),
            Ok(o) => (RunStatus::Succeeded, o.counts, None),
            Err(e) => (RunStatus::Failed, Default::default(), Some(e.to_string())),
        };
        if let Ok(Outcome { note: Some(n), .. }) = &result
            && let Err(e) = store::set_note(&self.pool, run.id, n).await
        {
            tracing::warn!(run = run.id, error = %e, "record the run's note");
        }
        if let Ok(Outcome { pull: Some(p), .. }) = &result
            && let Err(e) = store::set_pull_counts(&self.pool, run.id, p).await
        {
            tracing::warn!(run = run.id, error = %e, "record the run's pull counts");
        }
        let fin = store::finish(&self.pool, run.id, status, &counts, error.as_deref()).await;
        self.metrics.record(&run.connection.vendor, status, &counts);
        guard.release().await;
        fin?;
        match &result {
            Ok(o) => {
                tracing::info!(run = run.id, connection = %run.connection, status = status.as_str(),
                checked = o.counts.checked, in_sync = o.counts.in_sync, created = o.counts.created,
                updated = o.counts.updated, removed = o.counts.removed, failed = o.counts.failed,
                "sync run finished")
            }
            Err(e) => {
                tracing::warn!(run = run.id, connection = %run.connection, error = %e, "sync run failed")
            }
        }
        Ok(store::get_run(&self.pool, run.id).await?)
    }

    async fn execute_locked(&self, run: &SyncRun) -> Result<Outcome, ReconcileError> {
        let conn = self
            .connections
            .get(&run.connection)
            .await?
            .ok_or_else(|| ReconcileError::NoConnection {
                tenant: run.connection.tenant.clone(),
                vendor: run.connection.vendor.clone(),
                name: run.connection.name.clone(),
            })?;
        let inv = self
            .inventories
            .get(run.connection.vendor.as_str())
            .ok_or_else(|| ReconcileError::Unsupported(run.connection.vendor.clone()))?;
        // An offboarding connection wants nothing: any run of it (a scheduled one too) removes
        // everything of ours, never re-creates access.
        if self
            .connections
            .offboarding(&run.connection)
            .await?
            .is_some()
        {
            return self.offboard(run, &conn, inv.as_ref()).await;
        }
        if run.scope == Scope::Offboard {
            return Err(ReconcileError::invalid(
                "connection",
                "is not being offboarded: delete or disable it with --remove-access",
            ));
        }
        if !conn.enabled {
            return Err(ReconcileError::invalid("connection", "disabled"));
        }
        // The tenant's other connections to this vendor: a booking that moved to one of them
        // leaves objects here that only this run can see.
        let peers = self
            .connections
            .list_for(&conn.tenant, conn.vendor())
            .await?;
        // First what ingest ignored while access control was off and this connection now
        // acts on (issues 20/21), then the upstream itself.
        let readmitted = crate::readmit::readmit(&self.pool, self.storer(), &conn).await?;
        let mut pulled = match &self.puller {
            Some(p) => p.pull(&conn, run, Utc::now()).await?,
            None => None,
        };
        if readmitted.counts.readmitted > 0 || readmitted.failed > 0 {
            pulled
                .get_or_insert_with(Default::default)
                .absorb(readmitted);
        }
        if let Some(p) = &pulled {
            tracing::info!(run = run.id, connection = %run.connection, fetched = p.counts.fetched,
                new = p.counts.new, changed = p.counts.changed, vanished = p.counts.vanished,
                readmitted = p.counts.readmitted, failed = p.failed, "pulled from the upstream");
        }
        let mut outcome = engine::sync_connection(
            &self.pool,
            &self.bus,
            inv.as_ref(),
            &conn,
            &peers,
            run,
            Utc::now(),
        )
        .await?;
        if let Some(p) = pulled {
            outcome.counts.failed += p.failed;
            outcome.problems.extend(p.problems);
            outcome.pull = Some(p.counts);
        }
        Ok(outcome)
    }

    /// Removes everything of ours `conn` created, then deletes or disables it (and deletes
    /// its tenant when that was being deleted and this was its last connection).
    async fn offboard(
        &self,
        run: &SyncRun,
        conn: &accesshub_connections::Connection,
        inv: &dyn Inventory,
    ) -> Result<Outcome, ReconcileError> {
        let vendor = conn.vendor();
        let siblings: Vec<_> = self
            .connections
            .list()
            .await?
            .into_iter()
            .filter(|c| c.tenant == conn.tenant && c.vendor() == vendor)
            .collect();
        let mut out = crate::offboard::offboard_connection(
            &self.pool,
            &self.bus,
            inv,
            conn,
            &siblings,
            run,
            self.settings.offboard,
        )
        .await?;
        use accesshub_connections::offboard::{self as ob, Finished};
        let conn_err =
            |e: accesshub_connections::ConnectionError| ReconcileError::Connections(e.to_string());
        ob::settle_bindings(&self.pool, &siblings, conn)
            .await
            .map_err(conn_err)?;
        let fate = ob::finish(
            &self.pool,
            Some(&self.bus),
            &conn.tenant,
            vendor,
            &conn.name,
        )
        .await
        .map_err(conn_err)?;
        let mut note = match fate {
            Finished::Deleted => {
                "nothing of ours left at the vendor; connection deleted".to_owned()
            }
            Finished::Disabled => {
                "nothing of ours left at the vendor; connection disabled".to_owned()
            }
            Finished::NotOffboarding => {
                "nothing of ours left at the vendor; the connection was no longer offboarding"
                    .to_owned()
            }
        };
        if ob::finish_tenant(&self.pool, &conn.tenant)
            .await
            .map_err(conn_err)?
        {
            note.push_str("; tenant deleted with its bookings");
        }
        tracing::info!(run = run.id, connection = %run.connection, %note, "offboarded");
        out.note = Some(note);
        Ok(out)
    }

    /// Requeues running runs whose lease expired and whose connection lock is free (their
    /// replica is gone). Returns how many were taken over.
    pub async fn take_over_stale(&self) -> Result<usize, ReconcileError> {
        let mut n = 0;
        for run in store::stale_running(&self.pool, self.settings.lease).await? {
            if let Some(g) = lock::try_lock(&self.pool, &run.connection).await? {
                store::requeue(&self.pool, run.id).await?;
                g.release().await;
                tracing::warn!(run = run.id, connection = %run.connection, "took over a run whose replica stopped");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Gives every connection without a schedule the default nightly one.
    pub async fn ensure_default_schedules(&self) -> Result<(), ReconcileError> {
        for c in self.connections.list().await? {
            if !self.inventories.contains_key(c.vendor().as_str()) {
                continue;
            }
            store::ensure_default_schedule(
                &self.pool,
                &conn_ref(&c),
                &self.settings.default_timezone,
                Utc::now(),
            )
            .await?;
        }
        Ok(())
    }

    /// A retention pass when the interval has passed since the last one (and retention is
    /// on). A failure is logged and retried next interval: pruning is housekeeping, never a
    /// reason to stop syncing.
    pub async fn retention_if_due(&self) {
        let r = self.settings.retention;
        let now = Utc::now();
        let (cutoff, audit_cutoff) = (r.cutoff(now), r.audit_cutoff(now));
        if cutoff.is_none() && audit_cutoff.is_none() {
            return;
        }
        {
            let mut last = self
                .last_retention
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < r.interval) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Some(audit_cutoff) = audit_cutoff {
            match crate::retention::prune_audit(&self.pool, audit_cutoff, r.batch, r.max_batches)
                .await
            {
                Ok(n) => {
                    self.metrics.record_pruned(&crate::retention::Pruned {
                        audit_log: n,
                        ..Default::default()
                    });
                    tracing::info!(audit_log = n, %audit_cutoff, audit_days = r.audit_days,
                        "retention: pruned audit entries");
                }
                Err(e) => tracing::warn!(error = %e, "audit retention pass failed"),
            }
        }
        let Some(cutoff) = cutoff else {
            return;
        };
        match crate::retention::prune(&self.pool, cutoff, r.batch, r.max_batches).await {
            Ok(p) => {
                self.metrics.record_pruned(&p);
                tracing::info!(
                    bookings = p.bookings,
                    bindings = p.bindings,
                    vendor_attempts = p.vendor_attempts,
                    key_requests = p.key_requests,
                    ingest_ignored = p.ingest_ignored,
                    %cutoff,
                    retention_days = r.days,
                    "retention: pruned ended bookings"
                );
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }

    /// One pass of the housekeeping and the queue.
    pub async fn tick(&self) -> Result<(), ReconcileError> {
        self.retention_if_due().await;
        self.take_over_stale().await?;
        store::fire_due_schedules(&self.pool, Utc::now()).await?;
        self.drain_queue_concurrently().await
    }

    async fn drain_queue_concurrently(&self) -> Result<(), ReconcileError> {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < self.settings.max_concurrent_runs.max(1) {
                match store::claim_next(&self.pool, &self.settings.runner).await? {
                    Some(run) => {
                        let me = self.clone();
                        tasks.spawn(async move { me.execute(run).await });
                    }
                    None => break,
                }
            }
            match tasks.join_next().await {
                Some(Ok(Err(e))) => tracing::warn!(error = %e, "sync run bookkeeping failed"),
                Some(Err(e)) => tracing::error!(error = %e, "sync run task panicked"),
                Some(Ok(Ok(_))) => {}
                None => return Ok(()),
            }
        }
    }

    /// One incremental poll of every enabled connection's pollable upstream (Nexudus passes
    /// for Tapkey), each under the connection's lock (skipped while a run holds it).
    pub async fn poll_upstreams(&self) -> Result<(), ReconcileError> {
        let Some(puller) = &self.puller else {
            return Ok(());
        };
        for conn in self.connections.list().await? {
            if !conn.enabled || conn.vendor() != accesshub_connections::Vendor::Tapkey {
                continue;
            }
            let cref = conn_ref(&conn);
            if self.connections.offboarding(&cref).await?.is_some() {
                continue;
            }
            let Some(guard) = lock::try_lock(&self.pool, &cref).await? else {
                continue;
            };
            let result = puller.poll(&conn, Utc::now()).await;
            guard.release().await;
            match result {
                Ok(Some(p)) if p.counts.new + p.counts.changed > 0 || p.failed > 0 => {
                    tracing::info!(connection = %cref, fetched = p.counts.fetched, new = p.counts.new,
                        changed = p.counts.changed, failed = p.failed, problems = ?p.problems,
                        "polled upstream");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(connection = %cref, error = %e, "upstream poll failed"),
            }
        }
        Ok(())
    }

    /// Runs until `shutdown`: LISTEN for new runs, poll as a fallback; polls the upstreams
    /// every `upstream_poll` when pulling.
    pub async fn serve(self, shutdown: CancellationToken) {
        if self.puller.is_some() {
            let this = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = this.poll_upstreams().await {
                        tracing::warn!(error = %e, "upstream polls failed");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(this.settings.upstream_poll) => {}
                    }
                }
            });
        }
        if self.settings.default_schedules
            && let Err(e) = self.ensure_default_schedules().await
        {
            tracing::warn!(error = %e, "default schedules");
        }
        let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(store::NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; polling only");
                None
            }
        };
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "reconciler tick failed");
            }
            let wait = tokio::time::sleep(self.settings.poll_interval);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wait => {}
                n = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|_| ()),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(e) = n {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                    }
                }
            }
        }
    }
}
