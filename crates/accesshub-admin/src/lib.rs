//! The admin HTTP API of accesshub as an axum [`Router`]: tenants and their webhook secrets,
//! vendor connections (idempotent apply with dry-run diffs), API tokens, and vendor lookups
//! answered by the workers over NATS, sync runs (queued for the reconciler) and per-source
//! site defaults, under `/admin/v1` ([`mounted`]). It runs as its own cluster-internal service
//! ([`service`], binary `accesshub-admin`); `accessctl` is its client.
//!
//! Secrets are never returned (`***`) and never logged. Every request carries a token with a
//! role (viewer, operator, admin) and a tenant scope ([`auth`]); every change is recorded in
//! the audit log ([`audit`], `GET /audit`). Dead letters, bookings and the status view are
//! here too ([`dlq`]): `accessctl` and the console reach them with a token, not with NATS or
//! database credentials of their own.

pub mod audit;
pub mod auth;
pub mod dlq;
pub mod error;
mod handlers;
pub mod openapi;
pub mod scope;
pub mod service;
mod upstreams;

use std::time::Duration;

use accesshub_bus::Bus;
use accesshub_connections::{ConnectionStore, TenantStore};
use accesshub_store::SecretBox;
use axum::{
    Router, middleware,
    routing::{get, post, put},
};
use sqlx::PgPool;

pub use auth::{Principal, Role, Scope, Tenants, TokenInfo, TokenPolicy};
pub use error::{ApiError, Problem, ProblemField};
pub use handlers::{
    ApplyResponse, CreateTokenRequest, CreatedToken, OffboardResponse, OffboardState,
    SecretRequest, SourceSecretResponse, SyncQueued, SyncRequest, TenantBody, TenantDetail,
    TokenSelf,
};

/// Path prefix the API is served under.
pub const PREFIX: &str = "/admin/v1";

/// Settings of the admin API.
#[derive(Clone, Default)]
pub struct AdminConfig {
    /// Bootstrap admin token (`ACCESSHUB_ADMIN_TOKEN`); only its hash is kept.
    pub bootstrap_token: Option<String>,
    /// How long a lookup waits for the worker (`ACCESSHUB_LOOKUP_TIMEOUT`, default 10 s).
    pub lookup_timeout: Option<Duration>,
    /// Lifetimes of minted tokens (`ACCESSHUB_TOKEN_DEFAULT_TTL_DAYS`, default 90, and
    /// `ACCESSHUB_TOKEN_MAX_TTL_DAYS`, default 365).
    pub tokens: TokenPolicy,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field(
                "bootstrap_token",
                &self.bootstrap_token.as_ref().map(|_| "***"),
            )
            .field("lookup_timeout", &self.lookup_timeout)
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl AdminConfig {
    /// Reads `ACCESSHUB_ADMIN_TOKEN`, `ACCESSHUB_LOOKUP_TIMEOUT` (humantime-free: seconds) and
    /// the token lifetimes in days (an unparsable value keeps the default).
    pub fn from_env() -> Self {
        let days = |var: &str| {
            std::env::var(var)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|d| *d > 0)
                .map(|d| Duration::from_secs(d.saturating_mul(86_400)))
        };
        let defaults = TokenPolicy::default();
        let max_ttl = days("ACCESSHUB_TOKEN_MAX_TTL_DAYS").unwrap_or(defaults.max_ttl);
        let default_ttl = days("ACCESSHUB_TOKEN_DEFAULT_TTL_DAYS")
            .unwrap_or(defaults.default_ttl)
            .min(max_ttl);
        AdminConfig {
            bootstrap_token: std::env::var("ACCESSHUB_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
            lookup_timeout: std::env::var("ACCESSHUB_LOOKUP_TIMEOUT")
                .ok()
                .and_then(|s| s.trim().trim_end_matches('s').parse::<u64>().ok())
                .map(Duration::from_secs),
            tokens: TokenPolicy {
                default_ttl,
                max_ttl,
            },
        }
    }
}

/// Shared state of the handlers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub(crate) connections: ConnectionStore,
    pub(crate) tenants: TenantStore,
    /// Upstream API credentials (issue 21).
    pub(crate) upstreams: accesshub_upstreams::UpstreamStore,
    pub(crate) bus: Bus,
    /// The DLQ (read, replay, purge) over the same bus and pool.
    pub(crate) dlq: accesshub_dlq::Dlq,
    pub(crate) bootstrap_hash: Option<String>,
    pub(crate) lookup_timeout: Duration,
    pub(crate) tokens: TokenPolicy,
}

impl AdminState {
    /// Builds the state. Connection changes are announced on `bus` so workers reload.
    pub fn new(pool: PgPool, secrets: SecretBox, bus: Bus, config: AdminConfig) -> Self {
        AdminState {
            connections: ConnectionStore::new(pool.clone(), secrets.clone()).with_bus(bus.clone()),
            upstreams: accesshub_upstreams::UpstreamStore::new(pool.clone(), secrets.clone()),
            dlq: accesshub_dlq::Dlq::new(bus.clone(), pool.clone()),
            tenants: TenantStore::new(pool, secrets),
            bus,
            bootstrap_hash: config.bootstrap_token.as_deref().map(auth::hash_token),
            lookup_timeout: config.lookup_timeout.unwrap_or(Duration::from_secs(10)),
            tokens: config.tokens,
        }
    }

    /// Where connections may point (`ACCESSHUB_EGRESS_ALLOW`, see
    /// [`accesshub_connections::EgressPolicy`]); strict unless set: a connection whose
    /// endpoint is not https to a public address is refused with 422.
    pub fn with_egress(mut self, egress: accesshub_connections::EgressPolicy) -> Self {
        self.connections = self.connections.with_egress(egress);
        self
    }

    /// Tells `listener` about every webhook-secret change and tenant deletion: booking-ingest
    /// running in the same process passes its secret cache's `change_listener`, so a set,
    /// rotated or revoked secret takes effect at once there (other processes: within the
    /// cache's ttl + max stale, see docs/security.md).
    pub fn with_source_listener(
        mut self,
        listener: accesshub_connections::tenants::SourceListener,
    ) -> Self {
        self.tenants = self.tenants.on_source_change(listener);
        self
    }
}

/// The API routes (without prefix), authenticated.
pub fn router(state: AdminState) -> Router {
    use handlers::*;
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/tenants/{tenant}",
            get(get_tenant).put(put_tenant).delete(delete_tenant),
        )
        .route(
            "/tenants/{tenant}/sources/{source}/secret",
            put(set_source_secret),
        )
        .route(
            "/tenants/{tenant}/sources/{source}/rotate",
            post(rotate_source_secret),
        )
        .route(
            "/tenants/{tenant}/sources/{source}/site-defaults",
            put(put_site_defaults),
        )
        .route(
            "/tenants/{tenant}/sources/{source}/organization",
            put(scope::put_organization),
        )
        .route("/tenants/{tenant}/ignored", get(scope::list_ignored))
        .route(
            "/tenants/{tenant}/sources/{source}/api",
            get(upstreams::get_upstream_api)
                .put(upstreams::put_upstream_api)
                .delete(upstreams::delete_upstream_api),
        )
        .route(
            "/tenants/{tenant}/sources/{source}/auth",
            put(upstreams::put_source_auth),
        )
        .route("/syncs", get(list_syncs).post(request_sync))
        .route("/connections", get(list_connections))
        .route(
            "/connections/{tenant}/{vendor}/{name}",
            get(get_connection)
                .put(put_connection)
                .delete(delete_connection),
        )
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/self", get(token_self))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/audit", get(list_audit))
        .route("/dlq", get(dlq::list_dlq))
        .route("/dlq/replay", post(dlq::replay_dlq))
        .route("/dlq/purge", post(dlq::purge_dlq))
        .route("/dlq/{seq}", get(dlq::get_dlq))
        .route("/bookings", get(dlq::list_bookings))
        .route("/bookings/{tenant}/{key}", get(dlq::get_booking))
        .route("/status", get(dlq::status))
        .route("/lookups/{vendor}/{tenant}/{what}", get(lookup))
        .route("/lookups/bex/{tenant}/{what}", get(upstreams::bex_lookup))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
}

/// [`router`] nested under [`PREFIX`] (`/admin/v1`) with the OpenAPI document at
/// `/admin/v1/openapi.json` (no token needed), ready to merge into a service's router. Every
/// error under the prefix is `application/problem+json`, axum's own rejections included.
pub fn mounted(state: AdminState) -> Router {
    let api = router(state).route("/openapi.json", get(openapi::serve));
    Router::new()
        .nest(PREFIX, api)
        .layer(middleware::from_fn(openapi::problem_for_plain_errors))
}

/// The operator console (crate `accesshub-console`, under `/console`) over this state's
/// stores, with exactly this API's tokens, roles and tenant scopes.
pub fn console(state: &AdminState) -> Router {
    let config = accesshub_console::ConsoleConfig {
        lookup_timeout: state.lookup_timeout,
        ..accesshub_console::ConsoleConfig::from_env()
    };
    accesshub_console::mounted(accesshub_console::ConsoleState::new(
        state.connections.clone(),
        state.tenants.clone(),
        state.upstreams.clone(),
        state.bus.clone(),
        auth::console_resolver(state),
        config,
    ))
}
