//! Webhook authentication: HMAC-SHA256 over `timestamp + "." + body`, per tenant and source,
//! with two valid secrets during a rotation. Secrets are stored sealed with
//! [`accesshub_store::SecretBox`] and cached decrypted for a short time.

use std::{
    num::{NonZeroU32, NonZeroUsize},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use accesshub_store::{SecretBox, SecretError, source_aad};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};
use hmac::{Hmac, KeyInit as _, Mac};
use lru::LruCache;
use prometheus_client::metrics::counter::Counter;
use sha2::Sha256;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::error::Reject;

/// Header carrying the unix timestamp (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-accesshub-timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-accesshub-signature";
/// How far a timestamp may be from our clock (replay window).
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], ts: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// The `X-Accesshub-Signature` value an upstream sends: `sha256=<hex of HMAC-SHA256(secret,
/// "<ts>.<body>")>`. For clients, tests and the dev tools.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    sign_bytes(secret.as_bytes(), ts, body)
}

/// [`sign`] with the secret as stored (bytes): what accesshub sends when it calls back.
pub fn sign_bytes(secret: &[u8], ts: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, ts, body)))
}

/// Header BEX signs App webhooks with: `sha1=<hex of HMAC-SHA1(raw body)>`, keyed with the
/// App's OAuth client secret (stored as the tenant's `bex` webhook secret). BEX sends no
/// timestamp: a replayed body is a repeated delivery (its receipt answers it) or an older
/// revision (superseded), never a new effect.
pub const BEX_SIGNATURE_HEADER: &str = "x-be-signature";

fn mac_sha1(secret: &[u8], body: &[u8]) -> Vec<u8> {
    match Hmac::<sha1::Sha1>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(body);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The `X-BE-Signature` value BEX sends for `body` (tests, dev tools).
pub fn sign_bex(secret: &str, body: &[u8]) -> String {
    format!("sha1={}", hex::encode(mac_sha1(secret.as_bytes(), body)))
}

/// The MAC of an `X-BE-Signature` header (`sha1=` and 40 hex digits); `None` when absent.
pub fn bex_signature(headers: &HeaderMap) -> Result<Option<Vec<u8>>, AuthFailure> {
    let Some(v) = headers.get(BEX_SIGNATURE_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("sha1="))
        .filter(|h| h.len() == 40)
        .and_then(|h| hex::decode(h).ok())
        .map(Some)
        .ok_or(AuthFailure::InvalidSignature)
}

/// Checks a BEX MAC against every valid secret, in constant time per secret and without
/// stopping at the first match.
pub fn verify_bex(secrets: &[Vec<u8>], mac: &[u8], body: &[u8]) -> Result<(), AuthFailure> {
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        ok |= mac_sha1(s, body).ct_eq(mac);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(AuthFailure::SignatureMismatch)
    }
}

/// Header Nexudus signs webhooks with (apps with a shared secret): the uppercase hex
/// HMAC-SHA256 of the raw body, no timestamp.
pub const NEXUDUS_SIGNATURE_HEADER: &str = "x-nexudus-hook-signature";

/// The `X-Nexudus-Hook-Signature` value Nexudus sends for `body` (tests, dev tools).
pub fn sign_nexudus(secret: &str, body: &[u8]) -> String {
    let mut m = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    m.update(body);
    hex::encode_upper(m.finalize().into_bytes())
}

/// The MAC of an `X-Nexudus-Hook-Signature` header (64 uppercase hex digits); `None` when
/// absent.
pub fn nexudus_signature(headers: &HeaderMap) -> Result<Option<Vec<u8>>, AuthFailure> {
    let Some(v) = headers.get(NEXUDUS_SIGNATURE_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(str::trim)
        .filter(|h| h.len() == 64 && !h.chars().any(|c| c.is_ascii_lowercase()))
        .and_then(|h| hex::decode(h).ok())
        .map(Some)
        .ok_or(AuthFailure::InvalidSignature)
}

/// Checks a Nexudus MAC against every valid secret, in constant time per secret.
pub fn verify_nexudus(secrets: &[Vec<u8>], mac: &[u8], body: &[u8]) -> Result<(), AuthFailure> {
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        if let Ok(mut m) = HmacSha256::new_from_slice(s) {
            m.update(body);
            ok |= m.finalize().into_bytes().as_slice().ct_eq(mac);
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(AuthFailure::SignatureMismatch)
    }
}

/// Header carrying the source's secret itself, for a source whose operator chose token
/// authentication (senders that cannot sign; `?token=` in the URL works too).
pub const TOKEN_HEADER: &str = "x-accesshub-token";

/// Whether `token` is one of the valid secrets, compared in constant time per secret (a
/// length difference is all that shows).
pub fn verify_token(secrets: &[Vec<u8>], token: &[u8]) -> Result<(), AuthFailure> {
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        ok |= s.as_slice().ct_eq(token);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(AuthFailure::SignatureMismatch)
    }
}

/// Why a webhook was not authenticated. The reason is returned to the caller (401 body) and
/// counted: it says what is wrong with the *headers*, never which secret or tenant exists
/// (an unknown tenant and a wrong MAC both answer [`AuthFailure::SignatureMismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No `X-Accesshub-Timestamp`.
    #[error("missing timestamp")]
    MissingTimestamp,
    /// The timestamp is not a decimal integer.
    #[error("invalid timestamp")]
    InvalidTimestamp,
    /// The timestamp is outside the replay window (or so extreme that the distance overflows).
    #[error("stale timestamp")]
    StaleTimestamp,
    /// No `X-Accesshub-Signature`.
    #[error("missing signature")]
    MissingSignature,
    /// The signature is not `sha256=` and 64 hex digits.
    #[error("invalid signature format")]
    InvalidSignature,
    /// Unknown tenant/source, or no valid secret produces this MAC.
    #[error("signature mismatch")]
    SignatureMismatch,
}

impl AuthFailure {
    /// Stable snake_case name (401 body `reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MissingTimestamp => "missing_timestamp",
            AuthFailure::InvalidTimestamp => "invalid_timestamp",
            AuthFailure::StaleTimestamp => "stale_timestamp",
            AuthFailure::MissingSignature => "missing_signature",
            AuthFailure::InvalidSignature => "invalid_signature",
            AuthFailure::SignatureMismatch => "signature_mismatch",
        }
    }
}

/// Signature headers that are well-formed and fresh, checked before the body is read: what
/// the scheme allows us to refuse without buffering anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    ts: i64,
    mac: Vec<u8>,
}

/// Longest timestamp header we parse (an i64 has at most 20 characters with its sign).
const MAX_TIMESTAMP_LEN: usize = 20;

impl SignedHeaders {
    /// Parses and checks the timestamp (within [`TOLERANCE_SECS`] of `now`, with checked
    /// arithmetic: an extreme timestamp must not wrap into the window) and the signature's
    /// format.
    pub fn parse(headers: &HeaderMap, now: i64) -> Result<Self, AuthFailure> {
        let raw = headers
            .get(TIMESTAMP_HEADER)
            .ok_or(AuthFailure::MissingTimestamp)?
            .to_str()
            .map_err(|_| AuthFailure::InvalidTimestamp)?
            .trim();
        if raw.len() > MAX_TIMESTAMP_LEN {
            return Err(AuthFailure::InvalidTimestamp);
        }
        let ts = raw
            .parse::<i64>()
            .map_err(|_| AuthFailure::InvalidTimestamp)?;
        let fresh = now
            .checked_sub(ts)
            .map(i64::unsigned_abs)
            .is_some_and(|d| d <= TOLERANCE_SECS.unsigned_abs());
        if !fresh {
            return Err(AuthFailure::StaleTimestamp);
        }
        let mac = headers
            .get(SIGNATURE_HEADER)
            .ok_or(AuthFailure::MissingSignature)?
            .to_str()
            .ok()
            .and_then(|v| v.trim().strip_prefix("sha256="))
            .filter(|h| h.len() == 64)
            .and_then(|h| hex::decode(h).ok())
            .ok_or(AuthFailure::InvalidSignature)?;
        Ok(SignedHeaders { ts, mac })
    }

    /// Checks the MAC against every valid secret, in constant time per secret and without
    /// stopping at the first match (which secret matched is not observable).
    pub fn verify(&self, secrets: &[Vec<u8>], body: &[u8]) -> Result<(), AuthFailure> {
        let mut ok = subtle::Choice::from(0u8);
        for s in secrets {
            let expected = mac(s, self.ts, body);
            ok |= expected.ct_eq(&self.mac);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthFailure::SignatureMismatch)
        }
    }
}

/// Checks the signature headers and the body against every valid secret (both steps of
/// [`SignedHeaders`] at once, for callers that already hold the body).
pub fn verify(
    secrets: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), AuthFailure> {
    SignedHeaders::parse(headers, now)?.verify(secrets, body)
}

/// What a site needs but a PMS does not send: one definition, in accesshub-upstreams (the
/// mappings live there).
pub use accesshub_upstreams::SiteDefaults;

/// One tenant's registration for one source, decrypted.
#[derive(Clone)]
pub struct SourceEntry {
    current: Vec<u8>,
    previous: Option<(Vec<u8>, Option<DateTime<Utc>>)>,
    /// The `site_defaults` document.
    pub site_defaults: serde_json::Value,
    /// The operator chose token authentication for this source (`tenant_sources.auth =
    /// 'token'`): the secret itself may come in `X-Accesshub-Token` or `?token=`.
    pub token_auth: bool,
    /// The upstream organization the tenant's source is tied to
    /// (`tenant_sources.organization_id`): a BEX webhook naming another one is ignored.
    pub organization: Option<String>,
}

impl std::fmt::Debug for SourceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEntry").finish_non_exhaustive()
    }
}

impl SourceEntry {
    /// The current secret: what accesshub signs its callbacks to this source with.
    pub fn current_secret(&self) -> &[u8] {
        &self.current
    }

    /// The secrets a signature may be made with at `now`: the current one, and the previous
    /// one until it expires.
    pub fn secrets(&self, now: DateTime<Utc>) -> Vec<Vec<u8>> {
        let mut out = vec![self.current.clone()];
        if let Some((prev, expires)) = &self.previous
            && expires.is_none_or(|e| e > now)
        {
            out.push(prev.clone());
        }
        out
    }
}

/// `secret_enc, previous_enc, previous_expires, site_defaults, auth, organization_id`.
type SourceRow = (
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    serde_json::Value,
    String,
    Option<String>,
);

/// (tenant, source).
type Key = (String, String);

/// Told `(tenant, Some(source))` when a webhook secret changed, `(tenant, None)` when a tenant
/// was deleted (the same type as accesshub-connections' `tenants::SourceListener`).
pub type SourceListener = Arc<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// A known registration: when it was loaded, and whether a refresh is under way.
struct Known {
    at: Instant,
    entry: Arc<SourceEntry>,
    refreshing: bool,
}

/// Both caches behind one lock (an LRU lookup reorders, so even a read needs `&mut`).
struct Maps {
    known: LruCache<Key, Known>,
    /// Unknown (tenant, source) → when the database said so.
    unknown: LruCache<Key, Instant>,
}

/// Sizes and lifetimes of a [`SourceCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCacheConfig {
    /// How long a known registration is served before a background refresh
    /// (`ACCESSHUB_INGEST_SECRET_CACHE`).
    pub ttl: Duration,
    /// Most known registrations kept; the least recently used goes first
    /// (`ACCESSHUB_INGEST_SECRET_CACHE_SIZE`).
    pub capacity: NonZeroUsize,
    /// How long "no such tenant/source" is believed (`ACCESSHUB_INGEST_NEGATIVE_CACHE`):
    /// a tenant registered meanwhile waits at most this long.
    pub negative_ttl: Duration,
    /// Most unknown keys remembered (`ACCESSHUB_INGEST_NEGATIVE_CACHE_SIZE`).
    pub negative_capacity: NonZeroUsize,
    /// How long past `ttl` an entry is still served while its refresh runs
    /// (`ACCESSHUB_INGEST_SECRET_CACHE_MAX_STALE`). Beyond it (a refresh that failed or
    /// hangs) the request loads synchronously, so a changed or revoked secret is accepted by
    /// other replicas for at most `ttl + max_stale`; it used to be unbounded while refreshes
    /// failed (security review L3).
    pub max_stale: Duration,
    /// Database look-ups per second for keys in neither cache (`ACCESSHUB_INGEST_LOOKUP_RATE`),
    /// burst twice that: a flood of made-up tenants costs at most this many queries, the
    /// rest are answered 429 without one.
    pub lookup_rate: NonZeroU32,
}

impl Default for SourceCacheConfig {
    fn default() -> Self {
        SourceCacheConfig {
            ttl: Duration::from_secs(30),
            capacity: NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
            negative_ttl: Duration::from_secs(5),
            negative_capacity: NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
            max_stale: Duration::from_secs(5),
            lookup_rate: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Why a registration could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The database failed (transient: 503, the sender retries).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Too many look-ups of uncached keys right now (429).
    #[error("too many registration look-ups; retry after {0:?}")]
    Throttled(Duration),
    /// The stored webhook secret does not open with the configured keys: our configuration
    /// is wrong (a key removed before the reseal, a wrong key), not the sender's request, so
    /// 503 (the sender retries) rather than a 401 a PMS may treat as final (review M14).
    #[error("webhook secret of {tenant}/{upstream} cannot be decrypted: {error}")]
    Decrypt {
        /// Tenant.
        tenant: String,
        /// Source (`source` would make thiserror take it for the cause).
        upstream: String,
        /// What failed (no key material, no plaintext).
        error: SecretError,
    },
}

impl From<LookupError> for Reject {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Db(e) => {
                tracing::warn!(error = %e, "tenant lookup failed");
                Reject::Unavailable
            }
            LookupError::Throttled(wait) => Reject::TooManyRequests {
                scope: "lookup",
                retry_after_secs: crate::limits::retry_after(wait),
            },
            // Logged and counted where it happened (`SourceCache::load`).
            LookupError::Decrypt { .. } => Reject::Unavailable,
        }
    }
}

/// Decrypted registrations cached for `ttl` in a bounded LRU, so a webhook costs no database
/// round trip for its secret, and a flood of keys cannot evict the busy ones all at once (the
/// map used to be wiped whole at 100,000 entries). A known registration past its `ttl` is
/// served once more while one background load refreshes it: without that, every request in
/// flight when it expired (hundreds under load) queued for its own load at once.
///
/// Unknown keys are remembered in a second bounded LRU for `negative_ttl`, and look-ups of
/// keys in neither cache are rate-limited: each made-up tenant of a flood would otherwise
/// cost a query on the small pool that also serves secrets and readiness.
#[derive(Clone)]
pub struct SourceCache {
    pool: PgPool,
    secrets: SecretBox,
    cfg: SourceCacheConfig,
    map: Arc<Mutex<Maps>>,
    lookups: Arc<DefaultDirectRateLimiter>,
    loads: Counter,
    decrypt_failures: Counter,
}

impl std::fmt::Debug for SourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCache")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What the cache holds for a key.
#[derive(Debug)]
enum Cached {
    Fresh(Option<Arc<SourceEntry>>),
    /// A known registration past its ttl; `refresh` when this caller should start the reload.
    Stale {
        entry: Arc<SourceEntry>,
        refresh: bool,
    },
    Missing,
}

impl SourceCache {
    /// A cache over the `tenant_sources` table with default sizes and `ttl`.
    pub fn new(pool: PgPool, secrets: SecretBox, ttl: Duration) -> Self {
        let cfg = SourceCacheConfig {
            ttl,
            ..SourceCacheConfig::default()
        };
        Self::with_config(pool, secrets, cfg, Counter::default())
    }

    /// A cache with explicit sizes; `loads` counts database look-ups.
    pub fn with_config(
        pool: PgPool,
        secrets: SecretBox,
        cfg: SourceCacheConfig,
        loads: Counter,
    ) -> Self {
        let burst = cfg
            .lookup_rate
            .saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let quota = Quota::per_second(cfg.lookup_rate).allow_burst(burst);
        SourceCache {
            pool,
            secrets,
            map: Arc::new(Mutex::new(Maps {
                known: LruCache::new(cfg.capacity),
                unknown: LruCache::new(cfg.negative_capacity),
            })),
            lookups: Arc::new(RateLimiter::direct(quota)),
            cfg,
            loads,
            decrypt_failures: Counter::default(),
        }
    }

    /// Counts stored secrets that do not open
    /// (`accesshub_secret_decrypt_failures_total{component="booking-ingest"}`).
    pub fn with_decrypt_failures(mut self, counter: Counter) -> Self {
        self.decrypt_failures = counter;
        self
    }

    fn lookup(&self, key: &Key) -> Cached {
        let Ok(mut maps) = self.map.lock() else {
            return Cached::Missing;
        };
        if let Some(k) = maps.known.get_mut(key) {
            let age = k.at.elapsed();
            if age < self.cfg.ttl {
                return Cached::Fresh(Some(k.entry.clone()));
            }
            if age >= self.cfg.ttl.saturating_add(self.cfg.max_stale) {
                // Too old to serve while refreshing: load it now (bounded staleness).
                maps.known.pop(key);
                return Cached::Missing;
            }
            // Claim the refresh under the lock: exactly one caller starts it.
            let refresh = !k.refreshing;
            k.refreshing = true;
            return Cached::Stale {
                entry: k.entry.clone(),
                refresh,
            };
        }
        let fresh = maps
            .unknown
            .get(key)
            .map(|at| at.elapsed() < self.cfg.negative_ttl);
        match fresh {
            Some(true) => Cached::Fresh(None),
            Some(false) => {
                maps.unknown.pop(key);
                Cached::Missing
            }
            None => Cached::Missing,
        }
    }

    fn store(&self, key: Key, entry: Option<Arc<SourceEntry>>) {
        if let Ok(mut maps) = self.map.lock() {
            match entry {
                Some(entry) => {
                    maps.unknown.pop(&key);
                    maps.known.put(
                        key,
                        Known {
                            at: Instant::now(),
                            entry,
                            refreshing: false,
                        },
                    );
                }
                None => {
                    maps.known.pop(&key);
                    maps.unknown.put(key, Instant::now());
                }
            }
        }
    }

    /// The registration of `tenant` for `source`, `None` when there is none;
    /// [`LookupError::Decrypt`] when its current secret does not open with the configured keys.
    pub async fn get(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<Arc<SourceEntry>>, LookupError> {
        let key = (tenant.to_owned(), source.to_owned());
        match self.lookup(&key) {
            Cached::Fresh(entry) => Ok(entry),
            Cached::Stale { entry, refresh } => {
                if refresh {
                    let this = self.clone();
                    tokio::spawn(async move {
                        match this.load(&key.0, &key.1).await {
                            Ok(e) => this.store(key, e.map(Arc::new)),
                            Err(e) => {
                                tracing::warn!(error = %e, "refreshing a source registration failed");
                                // Let the next request past the ttl try again.
                                if let Ok(mut maps) = this.map.lock()
                                    && let Some(k) = maps.known.peek_mut(&key)
                                {
                                    k.refreshing = false;
                                }
                            }
                        }
                    });
                }
                Ok(Some(entry))
            }
            Cached::Missing => {
                if let Err(not_until) = self.lookups.check() {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    return Err(LookupError::Throttled(wait));
                }
                let entry = self.load(tenant, source).await?.map(Arc::new);
                // A decrypt failure returned above is not cached: it is retried (at the lookup
                // rate) until the keys are fixed.
                self.store(key, entry.clone());
                Ok(entry)
            }
        }
    }

    /// Forgets cached registrations (after a registration change in this process).
    pub fn invalidate(&self) {
        if let Ok(mut maps) = self.map.lock() {
            maps.known.clear();
            maps.unknown.clear();
        }
    }

    /// Forgets one registration (`source: None`: every source of the tenant), so its next
    /// webhook reads the database: called when its secret is set, rotated or deleted in
    /// this process (`TenantStore::on_source_change` of accesshub-connections).
    pub fn invalidate_key(&self, tenant: &str, source: Option<&str>) {
        let Ok(mut maps) = self.map.lock() else {
            return;
        };
        match source {
            Some(source) => {
                let key = (tenant.to_owned(), source.to_owned());
                maps.known.pop(&key);
                maps.unknown.pop(&key);
            }
            None => {
                let stale: Vec<Key> = maps
                    .known
                    .iter()
                    .map(|(k, _)| k)
                    .chain(maps.unknown.iter().map(|(k, _)| k))
                    .filter(|k| k.0 == tenant)
                    .cloned()
                    .collect();
                for k in stale {
                    maps.known.pop(&k);
                    maps.unknown.pop(&k);
                }
            }
        }
    }

    /// A listener for `TenantStore::on_source_change` (accesshub-connections) that
    /// invalidates this cache.
    pub fn change_listener(&self) -> SourceListener {
        let this = self.clone();
        Arc::new(move |tenant: &str, source: Option<&str>| this.invalidate_key(tenant, source))
    }

    /// An undecryptable stored secret: error log for the operator (row and key id, never
    /// the secret) and the metric to alert on.
    fn decrypt_failed(
        &self,
        tenant: &str,
        source: &str,
        column: &str,
        sealed: &str,
        e: &SecretError,
    ) {
        self.decrypt_failures.inc();
        let key_id = SecretBox::inspect(sealed).map(|i| i.key_id);
        tracing::error!(
            tenant, source, column, key_id = key_id.as_deref().unwrap_or("?"),
            configured = ?self.secrets.key_ids(), error = %e,
            "webhook secret cannot be decrypted with the configured keys; check \
             ACCESSHUB_ENCRYPTION_KEYS and run `accessctl secrets reseal --dry-run`"
        );
    }

    async fn load(&self, tenant: &str, source: &str) -> Result<Option<SourceEntry>, LookupError> {
        self.loads.inc();
        let row: Option<SourceRow> = sqlx::query_as(
            "SELECT secret_enc, previous_enc, previous_expires, site_defaults, auth, \
                    organization_id \
                 FROM tenant_sources WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        let Some((cur, prev, prev_exp, defaults, auth, organization)) = row else {
            return Ok(None);
        };
        let aad = source_aad(tenant, source);
        let current = match self.secrets.open(&cur, &aad) {
            Ok(s) => s.into_bytes(),
            Err(error) => {
                self.decrypt_failed(tenant, source, "secret_enc", &cur, &error);
                return Err(LookupError::Decrypt {
                    tenant: tenant.to_owned(),
                    upstream: source.to_owned(),
                    error,
                });
            }
        };
        // An expired previous secret is never used: not worth a decrypt (nor an alert).
        let live_prev = prev.filter(|_| prev_exp.is_none_or(|e| e > Utc::now()));
        // A previous secret that does not open is counted and logged, but the current one
        // still serves: senders already on it must not get 503s for an old secret's sake.
        let previous = live_prev.and_then(|p| match self.secrets.open(&p, &aad) {
            Ok(s) => Some((s.into_bytes(), prev_exp)),
            Err(e) => {
                self.decrypt_failed(tenant, source, "previous_enc", &p, &e);
                None
            }
        });
        Ok(Some(SourceEntry {
            current,
            previous,
            site_defaults: defaults,
            token_auth: auth == "token",
            organization,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bex_signatures_are_hmac_sha1_of_the_body() {
        let body = br#"{"event":"reservation|confirmed"}"#;
        let mut h = HeaderMap::new();
        h.insert(
            BEX_SIGNATURE_HEADER,
            sign_bex("client-secret", body).parse().unwrap(),
        );
        let mac = bex_signature(&h).unwrap().unwrap();
        assert_eq!(mac.len(), 20);
        assert_eq!(verify_bex(&[b"client-secret".to_vec()], &mac, body), Ok(()));
        assert_eq!(
            verify_bex(&[b"other".to_vec()], &mac, body),
            Err(AuthFailure::SignatureMismatch)
        );
        assert_eq!(
            verify_bex(&[b"client-secret".to_vec()], &mac, b"{}"),
            Err(AuthFailure::SignatureMismatch)
        );
        h.insert(BEX_SIGNATURE_HEADER, "sha256=00".parse().unwrap());
        assert_eq!(bex_signature(&h), Err(AuthFailure::InvalidSignature));
        assert_eq!(bex_signature(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn sign_and_verify() {
        let body = br#"{"a":1}"#;
        let now = 1_750_000_000;
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, now.to_string().parse().unwrap());
        h.insert(SIGNATURE_HEADER, sign("s3cret", now, body).parse().unwrap());
        assert_eq!(verify(&[b"s3cret".to_vec()], &h, body, now), Ok(()));
        assert_eq!(
            verify(&[b"x".to_vec(), b"s3cret".to_vec()], &h, body, now + 299),
            Ok(())
        );
        assert_eq!(
            verify(&[b"s3cret".to_vec()], &h, body, now + 301),
            Err(AuthFailure::StaleTimestamp)
        );
        assert_eq!(
            verify(&[b"other".to_vec()], &h, body, now),
            Err(AuthFailure::SignatureMismatch)
        );
        assert_eq!(
            verify(&[b"s3cret".to_vec()], &h, b"{}", now),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    /// `now - ts` overflowed for extreme timestamps: a panic in debug builds, and in release a
    /// wrap to `i64::MIN`, whose `abs()` stays negative and so passed the window.
    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let body = br#"{"a":1}"#;
        for (now, ts) in [
            (1_750_000_000, i64::MIN),
            (1_750_000_000, i64::MIN + 1_750_000_000),
            (-1, i64::MAX),
            (1_750_000_000, i64::MAX),
        ] {
            let mut h = HeaderMap::new();
            h.insert(TIMESTAMP_HEADER, ts.to_string().parse().unwrap());
            h.insert(SIGNATURE_HEADER, sign("s3cret", ts, body).parse().unwrap());
            assert_eq!(
                verify(&[b"s3cret".to_vec()], &h, body, now),
                Err(AuthFailure::StaleTimestamp),
                "now {now}, ts {ts}"
            );
        }
    }

    #[test]
    fn header_problems_have_reasons() {
        let now = 1_750_000_000;
        let sig = sign("s", now, b"{}");
        let cases: [(&[(&str, &str)], AuthFailure); 6] = [
            (&[], AuthFailure::MissingTimestamp),
            (&[(TIMESTAMP_HEADER, "soon")], AuthFailure::InvalidTimestamp),
            (
                &[(TIMESTAMP_HEADER, "123456789012345678901234")],
                AuthFailure::InvalidTimestamp,
            ),
            (
                &[(TIMESTAMP_HEADER, "1750000000")],
                AuthFailure::MissingSignature,
            ),
            (
                &[
                    (TIMESTAMP_HEADER, "1750000000"),
                    (SIGNATURE_HEADER, "sha256=zz"),
                ],
                AuthFailure::InvalidSignature,
            ),
            (
                &[
                    (TIMESTAMP_HEADER, "1750000000"),
                    (SIGNATURE_HEADER, &sig[..20]),
                ],
                AuthFailure::InvalidSignature,
            ),
        ];
        for (headers, expected) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, v.parse().unwrap());
            }
            assert_eq!(SignedHeaders::parse(&h, now), Err(expected), "{headers:?}");
        }
    }

    fn test_cache(cfg: SourceCacheConfig) -> SourceCache {
        let pool = PgPool::connect_lazy("postgres://postgres@127.0.0.1:1/none").unwrap();
        let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
        SourceCache::with_config(pool, sbox, cfg, Counter::default())
    }

    fn entry() -> Arc<SourceEntry> {
        Arc::new(SourceEntry {
            current: b"s".to_vec(),
            previous: None,
            site_defaults: serde_json::json!({}),
            token_auth: false,
            organization: None,
        })
    }

    fn key(t: &str) -> Key {
        (t.to_owned(), "bex".to_owned())
    }

    /// The cache used to be wiped whole at 100,000 entries: a flood of keys made every busy
    /// registration a database look-up again. Now the least recently used go, one by one.
    #[tokio::test]
    async fn a_flood_of_keys_does_not_evict_a_busy_registration() {
        let cache = test_cache(SourceCacheConfig::default());
        cache.store(key("acme"), Some(entry()));
        for i in 0..150_000 {
            cache.store(key(&format!("flood-{i}")), Some(entry()));
            if i % 1_000 == 0 {
                assert!(
                    matches!(cache.lookup(&key("acme")), Cached::Fresh(Some(_))),
                    "evicted after {i} other keys"
                );
            }
        }
        assert!(matches!(cache.lookup(&key("acme")), Cached::Fresh(Some(_))));
        // Bounded: the oldest flood keys are gone.
        assert!(matches!(cache.lookup(&key("flood-0")), Cached::Missing));
    }

    #[tokio::test]
    async fn unknown_keys_are_remembered_briefly_and_boundedly() {
        let cache = test_cache(SourceCacheConfig {
            negative_ttl: Duration::from_millis(200),
            negative_capacity: NonZeroUsize::new(2).unwrap(),
            ..SourceCacheConfig::default()
        });
        cache.store(key("ghost"), None);
        assert!(matches!(cache.lookup(&key("ghost")), Cached::Fresh(None)));
        // A registration replaces the negative entry at once.
        cache.store(key("ghost"), Some(entry()));
        assert!(matches!(
            cache.lookup(&key("ghost")),
            Cached::Fresh(Some(_))
        ));
        // Bounded: the third unknown key pushes out the first.
        for t in ["u1", "u2", "u3"] {
            cache.store(key(t), None);
        }
        assert!(matches!(cache.lookup(&key("u1")), Cached::Missing));
        assert!(matches!(cache.lookup(&key("u3")), Cached::Fresh(None)));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(matches!(cache.lookup(&key("u3")), Cached::Missing));
    }

    /// L3: a registration past its ttl used to be served while a refresh ran, and for as long
    /// as refreshes failed. Past `ttl + max_stale` it is loaded again before use.
    #[tokio::test]
    async fn stale_entries_are_served_for_a_bounded_time_only() {
        let cache = test_cache(SourceCacheConfig {
            ttl: Duration::from_millis(100),
            max_stale: Duration::from_millis(100),
            ..SourceCacheConfig::default()
        });
        cache.store(key("acme"), Some(entry()));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(
            cache.lookup(&key("acme")),
            Cached::Stale { refresh: true, .. }
        ));
        // The refresh failed (it never stored): no longer served once past the bound.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(cache.lookup(&key("acme")), Cached::Missing));
    }

    #[tokio::test]
    async fn invalidate_key_forgets_one_source_or_a_whole_tenant() {
        let cache = test_cache(SourceCacheConfig::default());
        for t in ["acme", "beta"] {
            cache.store(key(t), Some(entry()));
        }
        cache.store(("acme".into(), "clock".into()), None);
        cache.invalidate_key("beta", Some("bex"));
        assert!(matches!(cache.lookup(&key("beta")), Cached::Missing));
        assert!(matches!(cache.lookup(&key("acme")), Cached::Fresh(Some(_))));
        (cache.change_listener())("acme", None);
        assert!(matches!(cache.lookup(&key("acme")), Cached::Missing));
        assert!(matches!(
            cache.lookup(&("acme".into(), "clock".into())),
            Cached::Missing
        ));
    }
}
