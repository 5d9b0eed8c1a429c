//! The operator console: server-rendered HTML (maud) with small progressive enhancement
//! (htmx, vendored), served by the admin service under [`PREFIX`] (`/console`) on its
//! cluster-internal listener. Screens: Connections (with Test connection, enable/disable and
//! the mappings with dropdowns from live look-ups: the vendor's through its worker, BEX
//! administrations and rentables with the tenant's stored API key), Bookings (desired state and
//! what each vendor applied), Sync (buttons, live counts, history), Dead letters (filters,
//! detail, dry-run-first replay, confirmed purge) and Webhooks (URL and secret rotation).
//!
//! Same tokens, roles and tenant scopes as the admin API: the admin service hands in its own
//! token resolution ([`TokenResolver`]); a token is exchanged for a server-side session
//! ([`session`]); every state-changing request needs the session's CSRF token; every
//! change is written to the API's audit log. The console calls the same stores the admin API
//! does (connections, tenants, sync runs, the DLQ, worker look-ups over NATS, the BEX
//! look-ups of [`accesshub_upstreams::lookup`]).

pub mod account;
pub mod audit;
pub mod bookings;
pub mod connections;
pub mod dlq;
pub mod error;
pub mod html;
pub mod login;
pub mod mappings;
pub mod session;
pub mod sync;
pub mod webhooks;

use std::time::Duration;

use accesshub_bus::Bus;
use accesshub_connections::{ConnectionStore, TenantStore};
use accesshub_dlq::Dlq;
use accesshub_upstreams::UpstreamStore;
use axum::{
    Router, middleware,
    response::Redirect,
    routing::{get, post},
};
use sqlx::PgPool;

pub use error::ConsoleError;
pub use session::{Operator, ResolveFuture, Role, Session, TokenResolver};

/// Path prefix the console is served under.
pub const PREFIX: &str = "/console";

/// Settings of the console.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// How long a session lives (`ACCESSHUB_CONSOLE_SESSION_TTL`, seconds; default 8 h),
    /// never longer than its token.
    pub session_ttl: Duration,
    /// Mark the cookie `Secure` (`ACCESSHUB_CONSOLE_SECURE_COOKIE`; set it when a TLS
    /// proxy fronts the console).
    pub secure_cookie: bool,
    /// How long a Test connection or a dropdown waits for the worker.
    pub lookup_timeout: Duration,
    /// How long a dropdown filled from the booking system's API (BEX administrations and
    /// rentables) waits for it, retries included; then the form says so and takes typed ids.
    pub upstream_lookup_timeout: Duration,
    /// Public base URL of booking-ingest, for the webhook URLs operators paste into their
    /// PMS (`ACCESSHUB_PUBLIC_WEBHOOK_URL`, default `http://127.0.0.1:8080`).
    pub webhook_base_url: String,
    /// How long the previous webhook secret stays valid after a rotation (24 h).
    pub secret_grace: Duration,
    /// The trace UI's URL for one trace, `{trace_id}` standing for the id
    /// (`ACCESSHUB_CONSOLE_TRACE_URL`, e.g. `https://jaeger.example/trace/{trace_id}`): trace
    /// ids on the Bookings and Dead letters screens link there. Unset: shown as text only.
    pub trace_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
            lookup_timeout: Duration::from_secs(10),
            upstream_lookup_timeout: Duration::from_secs(10),
            webhook_base_url: "http://127.0.0.1:8080".to_owned(),
            secret_grace: Duration::from_secs(24 * 3600),
            trace_url: None,
        }
    }
}

impl ConsoleConfig {
    /// Reads the `ACCESSHUB_CONSOLE_*` variables and `ACCESSHUB_PUBLIC_WEBHOOK_URL`; an
    /// unparsable value keeps the default.
    pub fn from_env() -> Self {
        let d = ConsoleConfig::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        ConsoleConfig {
            session_ttl: var("ACCESSHUB_CONSOLE_SESSION_TTL")
                .and_then(|v| v.trim().trim_end_matches('s').parse::<u64>().ok())
                .filter(|s| *s > 0)
                .map_or(d.session_ttl, Duration::from_secs),
            secure_cookie: var("ACCESSHUB_CONSOLE_SECURE_COOKIE")
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes")),
            webhook_base_url: var("ACCESSHUB_PUBLIC_WEBHOOK_URL").map_or(d.webhook_base_url, |v| {
                v.trim().trim_end_matches('/').to_owned()
            }),
            trace_url: var("ACCESSHUB_CONSOLE_TRACE_URL")
                .map(|v| v.trim().to_owned())
                .filter(|v| {
                    let ok = v.contains("{trace_id}")
                        && (v.starts_with("https://") || v.starts_with("http://"));
                    if !ok {
                        tracing::warn!(value = %v, "ACCESSHUB_CONSOLE_TRACE_URL ignored: an http(s) URL with {{trace_id}} in it is expected");
                    }
                    ok
                }),
            ..d
        }
    }
}

/// Shared state of the console's handlers. Cheap to clone.
#[derive(Clone)]
pub struct ConsoleState {
    pub(crate) pool: PgPool,
    pub(crate) connections: ConnectionStore,
    pub(crate) tenants: TenantStore,
    /// Upstream API credentials: the BEX look-ups of the mapping forms.
    pub(crate) upstreams: UpstreamStore,
    pub(crate) bus: Bus,
    pub(crate) dlq: Dlq,
    pub(crate) resolver: TokenResolver,
    pub(crate) config: ConsoleConfig,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConsoleState {
    /// The console over the admin service's stores (the same instances, so connection changes
    /// are announced to the workers and the egress policy applies, to BEX look-ups too) and
    /// its token resolution.
    pub fn new(
        connections: ConnectionStore,
        tenants: TenantStore,
        upstreams: UpstreamStore,
        bus: Bus,
        resolver: TokenResolver,
        config: ConsoleConfig,
    ) -> Self {
        let pool = connections.pool().clone();
        ConsoleState {
            dlq: Dlq::new(bus.clone(), pool.clone()),
            pool,
            connections,
            tenants,
            upstreams,
            bus,
            resolver,
            config,
        }
    }
}

/// The console's routes (without prefix).
pub fn router(state: ConsoleState) -> Router {
    let pages = Router::new()
        .route(
            "/",
            get(|| async { Redirect::to(&html::url("/connections")) }),
        )
        .route("/logout", post(login::logout))
        .route("/connections", get(connections::list))
        .route(
            "/connections/new",
            get(connections::new_form).post(connections::create),
        )
        .route(
            "/connections/{tenant}/{vendor}/{name}",
            get(connections::edit_form).post(connections::save),
        )
        .route(
            "/connections/{tenant}/{vendor}/{name}/test",
            post(connections::test),
        )
        .route(
            "/connections/{tenant}/{vendor}/{name}/enabled",
            post(connections::set_enabled),
        )
        .route(
            "/connections/{tenant}/{vendor}/{name}/mappings",
            post(mappings::save),
        )
        .route(
            "/connections/{tenant}/{vendor}/{name}/delete",
            post(connections::delete),
        )
        .route("/bookings", get(bookings::search))
        .route("/sync", get(sync::show).post(sync::request))
        .route("/sync/runs", get(sync::runs_fragment))
        .route("/sync/ignored", get(sync::ignored))
        .route("/dlq", get(dlq::list))
        .route("/dlq/replay", post(dlq::replay))
        .route("/dlq/purge", post(dlq::purge))
        .route("/dlq/{seq}", get(dlq::detail))
        .route("/webhooks", get(webhooks::show))
        .route("/webhooks/rotate", post(webhooks::rotate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ));
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/static/htmx.min.js", get(html::htmx))
        .route("/static/console.css", get(html::css))
        .merge(pages)
        .with_state(state)
}

/// [`router`] nested under [`PREFIX`], ready to merge into the admin service's router.
pub fn mounted(state: ConsoleState) -> Router {
    Router::new()
        .nest(PREFIX, router(state))
        // Nesting serves `/console`; people type the slash too.
        .route(
            "/console/",
            get(|| async { Redirect::to(&html::url("/connections")) }),
        )
}
