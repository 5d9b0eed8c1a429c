//! booking-ingest: receives bookings from upstream systems (signed webhooks, or NATS requests
//! inside the trust boundary), normalizes them to [`accesshub_domain::Event`]s, stores the
//! desired state with an outbox row in one transaction (group commit), answers 202 after the
//! commit, and relays the outbox to JetStream (`Nats-Msg-Id` = event id).
//!
//! Library plus a thin binary, so tests and benchmarks start the service in-process with
//! [`start`].

pub mod auth;
pub mod committer;
pub mod error;
pub mod http;
pub mod keyreq_api;
pub mod keyreq_callback;
pub mod limits;
pub mod metrics;
pub mod nats_ingest;
pub mod relay;
pub mod retention;
pub mod scope;
pub mod upstream;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use accesshub_bus::Bus;
use accesshub_config::{CommonConfig, env_duration, env_or};
use accesshub_retry::{Backoff, RetryPolicy, sleep_unless_cancelled};
use accesshub_store::SecretBox;
use accesshub_telemetry::{Registry, ops};
use axum::{Router, middleware, routing::post};
use sqlx::PgPool;
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use auth::sign;
pub use committer::{Answer, AnswerKind};
pub use error::{IngestError, Reject};

/// Service name (logs, metrics, NATS connection name).
pub const SERVICE: &str = "booking-ingest";

/// Everything booking-ingest needs to run.
#[derive(Clone)]
pub struct IngestConfig {
    /// NATS, Postgres, listen address, namespace, streams.
    pub common: CommonConfig,
    /// Opens the sealed webhook secrets (`ACCESSHUB_ENCRYPTION_KEY`).
    pub secrets: SecretBox,
    /// Largest accepted body in bytes (`ACCESSHUB_INGEST_BODY_LIMIT`, default 1 MiB).
    pub body_limit: usize,
    /// Parallel committer tasks, one Postgres connection each (`ACCESSHUB_INGEST_COMMITTERS`,
    /// default 2). Fewer committers make larger batches, and a batch's statement, plan and
    /// commit are paid once: in interleaved ingest-bench runs on 2 cores (2026-11-24), 2
    /// committers used 169 µs of CPU per webhook against 185 µs with 4, for a slightly higher
    /// rate and no worse p99 at 2,000/s (5.0–5.4 ms against 5.3–9.4 ms). 8 had a longer tail
    /// than 4 (2026-11-23).
    pub committers: usize,
    /// Most deliveries per transaction (`ACCESSHUB_INGEST_BATCH`, default 500).
    pub batch_max: usize,
    /// Postgres connections besides the committers' own (one each) and the relay's two:
    /// secrets, readiness (`ACCESSHUB_INGEST_DB_CONNECTIONS`, default 4).
    pub db_connections: u32,
    /// Secret cache: ttl (`ACCESSHUB_INGEST_SECRET_CACHE`, default 30s), size
    /// (`ACCESSHUB_INGEST_SECRET_CACHE_SIZE`, 100000), negative cache
    /// (`ACCESSHUB_INGEST_NEGATIVE_CACHE`, 5s; `ACCESSHUB_INGEST_NEGATIVE_CACHE_SIZE`, 100000)
    /// and uncached look-ups per second (`ACCESSHUB_INGEST_LOOKUP_RATE`, 100).
    pub source_cache: auth::SourceCacheConfig,
    /// Rate, burst and in-flight limits, global and per tenant, and the body timeout
    /// (`ACCESSHUB_INGEST_RATE`, `…_BURST`, `…_MAX_IN_FLIGHT`, `…_TENANT_RATE`,
    /// `…_TENANT_BURST`, `…_TENANT_MAX_IN_FLIGHT`, `…_BODY_TIMEOUT`; see [`limits`]).
    pub limits: limits::LimitsConfig,
    /// Relay settings (`ACCESSHUB_OUTBOX_POLL` default 250ms, `ACCESSHUB_OUTBOX_LINGER`
    /// default 2ms).
    pub relay: relay::RelayConfig,
    /// Receipt retention (`ACCESSHUB_INGEST_RECEIPT_RETENTION`, default 7 days): how long a
    /// repeated delivery still gets its first answer.
    pub retention: retention::RetentionConfig,
    /// Check at start-up that the database holds every migration this binary knows, and
    /// refuse to start otherwise (true outside tests). Services never migrate: the Helm hook
    /// Job and `accessctl migrate` do.
    pub check_schema: bool,
    /// Serve the NATS ingest subjects (`ACCESSHUB_NATS_INGEST`; default false in production,
    /// true in dev mode: see [`nats_ingest_default`]).
    pub nats_ingest: bool,
    /// Delivery of key-request outcomes to callers' callback URLs
    /// ([`keyreq_callback`]; where they may point is `common.egress`).
    pub callbacks: keyreq_callback::CallbackConfig,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("common", &self.common)
            .field("body_limit", &self.body_limit)
            .field("committers", &self.committers)
            .field("batch_max", &self.batch_max)
            .field("source_cache", &self.source_cache)
            .field("limits", &self.limits)
            .field("relay", &self.relay)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl IngestConfig {
    /// Loads the configuration from the environment.
    pub fn from_env() -> Result<Self, IngestError> {
        let common = CommonConfig::from_env(SERVICE)?;
        let nats_ingest = env_or("ACCESSHUB_NATS_INGEST", nats_ingest_default(common.mode))?;
        let secrets = SecretBox::from_env()?;
        let defaults = relay::RelayConfig::default();
        Ok(IngestConfig {
            common,
            secrets,
            body_limit: env_or("ACCESSHUB_INGEST_BODY_LIMIT", 1024 * 1024)?,
            committers: env_or("ACCESSHUB_INGEST_COMMITTERS", 2)?,
            batch_max: env_or("ACCESSHUB_INGEST_BATCH", 500)?,
            db_connections: env_or("ACCESSHUB_INGEST_DB_CONNECTIONS", 4)?,
            source_cache: source_cache_from_env()?,
            limits: limits::LimitsConfig::from_env()?,
            relay: relay::RelayConfig {
                poll: env_duration("ACCESSHUB_OUTBOX_POLL", defaults.poll)?,
                linger: env_duration("ACCESSHUB_OUTBOX_LINGER", defaults.linger)?,
                ..defaults
            },
            retention: retention::RetentionConfig {
                keep: env_duration(
                    "ACCESSHUB_INGEST_RECEIPT_RETENTION",
                    retention::RetentionConfig::default().keep,
                )?,
                ..Default::default()
            },
            check_schema: true,
            nats_ingest,
            callbacks: keyreq_callback::CallbackConfig::default(),
        })
    }

    /// Test configuration: defaults, the given common config (ephemeral port) and key box.
    pub fn for_test(common: CommonConfig, secrets: SecretBox) -> Self {
        IngestConfig {
            common,
            secrets,
            body_limit: 1024 * 1024,
            committers: 2,
            batch_max: 500,
            db_connections: 4,
            source_cache: auth::SourceCacheConfig::default(),
            // Benchmarks and convergence runs drive one tenant at full speed; the limit tests
            // set their own.
            limits: limits::LimitsConfig::unlimited(),
            relay: relay::RelayConfig::default(),
            retention: retention::RetentionConfig::default(),
            check_schema: false,
            nats_ingest: true,
            callbacks: keyreq_callback::CallbackConfig::default(),
        }
    }
}

/// Whether NATS ingest is on when `ACCESSHUB_NATS_INGEST` is unset: only in dev mode. In
/// production it is opt-in: a second way in besides the signed webhooks, for upstreams with a
/// NATS identity bound to their tenant (docs/security.md "NATS identities").
pub fn nats_ingest_default(mode: accesshub_config::Mode) -> bool {
    mode == accesshub_config::Mode::Dev
}

/// The secret cache's settings from the environment (fail fast on zero sizes or rates).
fn source_cache_from_env() -> Result<auth::SourceCacheConfig, IngestError> {
    let d = auth::SourceCacheConfig::default();
    Ok(auth::SourceCacheConfig {
        ttl: env_duration("ACCESSHUB_INGEST_SECRET_CACHE", d.ttl)?,
        capacity: env_or("ACCESSHUB_INGEST_SECRET_CACHE_SIZE", d.capacity)?,
        negative_ttl: env_duration("ACCESSHUB_INGEST_NEGATIVE_CACHE", d.negative_ttl)?,
        negative_capacity: env_or("ACCESSHUB_INGEST_NEGATIVE_CACHE_SIZE", d.negative_capacity)?,
        max_stale: env_duration("ACCESSHUB_INGEST_SECRET_CACHE_MAX_STALE", d.max_stale)?,
        lookup_rate: env_or("ACCESSHUB_INGEST_LOOKUP_RATE", d.lookup_rate)?,
    })
}

/// Shared state of the request handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Database pool.
    pub pool: PgPool,
    /// NATS (namespaced).
    pub bus: Bus,
    /// Registered sources and their secrets.
    pub sources: auth::SourceCache,
    /// Where accepted deliveries go.
    pub committers: committer::Committers,
    /// Ingest metrics.
    pub metrics: metrics::IngestMetrics,
    /// Body limit in bytes.
    pub body_limit: usize,
    /// Rate and in-flight limits of the webhook port.
    pub limits: Arc<limits::Limits>,
    /// The tenants' vendor connections, for the install-per-administration check
    /// ([`scope`]).
    pub connections: Arc<accesshub_connections::ConnectionCache>,
    /// Where callers' callback URLs may point (`ACCESSHUB_EGRESS_ALLOW`).
    pub egress: accesshub_config::EgressPolicy,
}

/// The webhook routes plus `/healthz`, `/readyz`, `/metrics`, with request metrics. Nothing
/// else: the admin API is a service of its own (`accesshub-admin`), never on this public port.
pub fn router(state: AppState, registry: Registry) -> Router {
    let http_metrics = ops::HttpMetrics::new(&registry, SERVICE);
    let ready_pool = state.pool.clone();
    let ready_bus = state.bus.clone();
    let readiness: ops::ReadinessCheck = Arc::new(move || {
        let pool = ready_pool.clone();
        let bus = ready_bus.clone();
        Box::pin(async move {
            if !bus.is_connected() {
                return Err("NATS not connected".to_owned());
            }
            accesshub_store::ping(&pool)
                .await
                .map_err(|_| "PostgreSQL not reachable".to_owned())
        })
    });
    Router::new()
        .route("/webhooks/{source}/{tenant}", post(http::webhook))
        .merge(keyreq_api::routes())
        // One Arc per request instead of a clone of every pool, client and metric handle.
        .with_state(Arc::new(state))
        .merge(ops::ops_router(registry, readiness))
        .layer(middleware::from_fn_with_state(
            http_metrics,
            ops::track_http,
        ))
}

/// The connection cache of the scope check, invalidated by the store's change notifications
/// when NATS is up (its TTL bounds staleness otherwise).
async fn scope_connections(
    pool: &PgPool,
    secrets: &SecretBox,
    bus: &Bus,
    side: &mut Vec<JoinHandle<()>>,
) -> Arc<accesshub_connections::ConnectionCache> {
    let cache = Arc::new(accesshub_connections::ConnectionCache::new(
        accesshub_connections::ConnectionStore::new(pool.clone(), secrets.clone()),
        accesshub_connections::DEFAULT_TTL,
    ));
    match tokio::time::timeout(Duration::from_secs(5), cache.listen(bus, None)).await {
        Ok(Ok(task)) => side.push(task),
        _ => tracing::warn!(
            "connection change notifications not subscribed; the cache expires instead"
        ),
    }
    cache
}

/// A running booking-ingest.
#[derive(Debug)]
pub struct IngestHandle {
    addr: SocketAddr,
    pool: PgPool,
    commit_pool: PgPool,
    relay_pool: PgPool,
    registry: Registry,
    sources: auth::SourceCache,
    stop_http: CancellationToken,
    stop_nats: CancellationToken,
    stop_relay: CancellationToken,
    server: JoinHandle<Result<(), std::io::Error>>,
    nats: Option<JoinHandle<()>>,
    committers: Vec<JoinHandle<()>>,
    relay: JoinHandle<()>,
    side: Vec<JoinHandle<()>>,
}

impl IngestHandle {
    /// Address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The committers' pool (for tests: its plan cache mode).
    pub fn commit_pool(&self) -> &PgPool {
        &self.commit_pool
    }

    /// The relay's and the receipt pruner's pool (for tests: its session settings).
    pub fn relay_pool(&self) -> &PgPool {
        &self.relay_pool
    }

    /// The webhook-secret cache: hand [`auth::SourceCache::change_listener`] to an admin API
    /// running in the same process, so secret changes take effect at once.
    pub fn sources(&self) -> &auth::SourceCache {
        &self.sources
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Resolves when the HTTP server stops on its own (an error).
    pub fn is_finished(&self) -> bool {
        self.server.is_finished()
    }

    /// Graceful stop: stop accepting (HTTP and NATS), let in-flight requests finish, drain the
    /// committers, make a final relay pass.
    pub async fn shutdown(self) {
        self.stop_http.cancel();
        self.stop_nats.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.server).await;
        if let Some(n) = self.nats {
            let _ = tokio::time::timeout(Duration::from_secs(5), n).await;
        }
        // The senders lived in the router and the NATS task; the committers end once drained.
        for c in self.committers {
            let _ = tokio::time::timeout(Duration::from_secs(15), c).await;
        }
        self.stop_relay.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.relay).await;
        for s in self.side {
            s.abort();
        }
    }
}

/// Waiting for NATS in the background (streams, the ingest subscription): until it answers or
/// the service stops.
const NATS_WAIT: RetryPolicy = RetryPolicy::forever(Backoff::new(
    Duration::from_millis(500),
    Duration::from_secs(10),
));

/// Starts booking-ingest: pool (and the schema check), NATS (streams ensured in the background if
/// NATS is down), committers, relay, NATS ingest and the HTTP server.
pub async fn start(cfg: IngestConfig) -> Result<IngestHandle, IngestError> {
    let pool = accesshub_store::connect_lazy_batched(&cfg.common.database_url, cfg.db_connections)?;
    // The relay and the receipt pruner only delete rows whose loss in a crash is harmless (a
    // published outbox row comes back and is re-published, which JetStream's de-duplication
    // absorbs; an expired receipt is pruned again): their commits need not wait for the WAL
    // flush, which is the committers' bottleneck at steady rates (a relay pass every few ms
    // otherwise added one fsync each).
    let relay_pool = accesshub_store::connect_lazy_with(
        &cfg.common.database_url,
        2,
        &[
            ("plan_cache_mode", "force_custom_plan"),
            ("synchronous_commit", "off"),
        ],
    )?;
    // One connection per committer, each running one statement on its generic plan.
    let commit_pool = accesshub_store::connect_lazy_generic(
        &cfg.common.database_url,
        u32::try_from(cfg.committers.max(1)).unwrap_or(u32::MAX),
    )?;
    if cfg.check_schema {
        accesshub_store::check_schema(&pool).await?;
    }
    let bus = accesshub_bus::connect(&cfg.common).await?;
    let mut side = Vec::new();
    // Outside dev mode the streams are only checked (`accessctl streams apply`, the
    // migrations Job, owns them). Webhooks are accepted meanwhile: they wait in the outbox,
    // as while NATS is down.
    let mode = cfg.common.mode;
    let ready = match tokio::time::timeout(Duration::from_secs(5), bus.prepare_streams(mode)).await
    {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out after 5 s".to_owned()),
    };
    if let Some(error) = ready {
        tracing::warn!(%error, "streams not ready yet; retrying in the background (accepted webhooks wait in the outbox)");
        let b = bus.clone();
        // Until they exist (the task is aborted at shutdown).
        side.push(tokio::spawn(async move {
            let mut waits = NATS_WAIT.attempts();
            loop {
                tokio::time::sleep(waits.next_wait().unwrap_or(NATS_WAIT.backoff.max)).await;
                if !b.is_connected() {
                    continue;
                }
                match b.prepare_streams(mode).await {
                    Ok(()) => {
                        tracing::info!("streams ready");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "streams not ready yet"),
                }
            }
        }));
    }
    let registry = Registry::new();
    let metrics = metrics::IngestMetrics::new(&registry);
    let wake = Arc::new(Notify::new());
    let (committers, committer_tasks) = committer::Committers::start(
        commit_pool.clone(),
        cfg.committers,
        cfg.batch_max,
        wake.clone(),
        metrics.clone(),
    );
    let state = AppState {
        pool: pool.clone(),
        bus: bus.clone(),
        sources: auth::SourceCache::with_config(
            pool.clone(),
            cfg.secrets.clone(),
            cfg.source_cache.clone(),
            metrics.source_lookups.clone(),
        )
        .with_decrypt_failures(metrics.decrypt_failures.clone()),
        committers,
        metrics: metrics.clone(),
        body_limit: cfg.body_limit,
        limits: Arc::new(limits::Limits::new(&cfg.limits)),
        connections: scope_connections(&pool, &cfg.secrets, &bus, &mut side).await,
        egress: cfg.common.egress.clone(),
    };
    // Key-request outcomes to callers' callback URLs (aborted at shutdown with the other
    // side tasks; an interrupted POST is repeated after its lease).
    side.push(tokio::spawn(keyreq_callback::run(
        pool.clone(),
        state.sources.clone(),
        cfg.common.egress.clone(),
        cfg.callbacks.clone(),
        CancellationToken::new(),
    )));
    let lim = state.limits.clone();
    // Forget idle tenants' rate state now and then (aborted at shutdown).
    side.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            lim.shrink();
        }
    }));

    let stop_relay = CancellationToken::new();
    let relay = tokio::spawn(
        relay::Relay::new(
            relay_pool.clone(),
            bus.clone(),
            cfg.relay.clone(),
            metrics.clone(),
        )
        .run(wake, stop_relay.clone()),
    );

    side.push(tokio::spawn(retention::run(
        relay_pool.clone(),
        cfg.retention.clone(),
        metrics.clone(),
        stop_relay.clone(),
    )));

    let stop_nats = CancellationToken::new();
    let nats = if cfg.nats_ingest {
        let st = state.clone();
        let stop = stop_nats.clone();
        // Subscribe before returning when NATS is up; otherwise keep trying in the background.
        let first = if bus.is_connected() {
            tokio::time::timeout(Duration::from_secs(5), nats_ingest::subscribe(&st))
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        Some(tokio::spawn(async move {
            let sub = match first {
                Some(sub) => sub,
                None => {
                    let mut waits = NATS_WAIT.attempts();
                    loop {
                        match nats_ingest::subscribe(&st).await {
                            Ok(sub) => break sub,
                            Err(e) => {
                                tracing::warn!(error = %e, "NATS ingest subscribe failed; retrying")
                            }
                        }
                        let wait = waits.next_wait().unwrap_or(NATS_WAIT.backoff.max);
                        if !sleep_unless_cancelled(wait, &stop).await {
                            return;
                        }
                    }
                }
            };
            nats_ingest::run(Arc::new(st), sub, stop).await;
        }))
    } else {
        None
    };

    let sources = state.sources.clone();
    let app = router(state, registry.clone());
    let listener = tokio::net::TcpListener::bind(cfg.common.http_addr).await?;
    let addr = listener.local_addr()?;
    let stop_http = CancellationToken::new();
    let stop = stop_http.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    tracing::info!(%addr, "booking-ingest listening");
    Ok(IngestHandle {
        addr,
        pool,
        commit_pool,
        relay_pool,
        registry,
        sources,
        stop_http,
        stop_nats,
        stop_relay,
        server,
        nats,
        committers: committer_tasks,
        relay,
        side,
    })
}

#[cfg(test)]
mod nats_ingest_default_tests {
    use accesshub_config::Mode;

    /// Issue 23: NATS ingest is a second way in, so production turns it on explicitly.
    #[test]
    fn nats_ingest_is_opt_in_outside_dev_mode() {
        assert!(!super::nats_ingest_default(Mode::Production));
        assert!(!super::nats_ingest_default(Mode::default()));
        assert!(super::nats_ingest_default(Mode::Dev));
    }
}
