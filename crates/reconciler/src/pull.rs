//! The pull phase of a sync run (issue 21, ARCHITECTURE.md principle 9: the upstream is the
//! source of truth, our database a copy). Before comparing with the vendor, a run re-reads the
//! booking system for its scope, turns every record into the event booking-ingest would make
//! of its webhook (the ONE mapping of `accesshub-upstreams`), and stores it through
//! booking-ingest's durable path (its group committer: desired state + outbox row + receipt in
//! one statement, revision rules as for any delivery). Bookings in scope that the upstream no
//! longer has are marked gone (a cancellation at a newer revision). Then the vendor compare
//! repairs whatever the vendor lacks — a lost webhook, or, on the first sync of a new
//! connection, everything booked before the integration was installed (backfill).
//!
//! Which upstream a connection reads:
//! - CloudPass: BEX PMS, for the administrations mapped in the connection (and listed in its
//!   `sites`, when it has any), with the tenant's `bex` credentials (`upstream_credentials`).
//!   Scope: reservations arriving from today through today + N days (N = the run's
//!   `upcoming` days, else 5) by the administration's local date (the `bex` site defaults'
//!   timezone), and guests in house (arrived up to `lookback_days` ago, default 30, not yet
//!   departed). BEX filters by arrival date only, so the in-house part is a look-back window.
//! - Tapkey: Nexudus coworker time passes, with the tenant's `nexudus` credentials, of the
//!   businesses in the connection's `sites` (all when empty), whose pass type the connection
//!   maps to locks. Sync Now lists every non-expired pass and marks stored passes Nexudus no
//!   longer lists as removed; between runs [`Puller::poll`] fetches the changes since the last
//!   poll (`UpdatedOn`; the mark kept in Postgres, so a restart goes on from it), every
//!   `RECONCILER_UPSTREAM_POLL` (default 60 s). Holders' e-mail and
//!   name come from the coworkers API, cached for ten minutes.
//! - dormakaba: Clock PMS+ bookings, with the tenant's `clock` credentials (API user + key,
//!   HTTP Digest; the base URL names the account, which is the bookings' site), unless the
//!   connection's `sites` leave that account out. Scope as for BEX: arrivals from today −
//!   `lookback_days` through today + N days (the `clock` site defaults' timezone), minus the
//!   departed; stored Clock bookings of the account in that window Clock no longer lists are
//!   marked gone. Clock serves a booking's room and guest profile as references: each is
//!   looked up once per run (`GET …/rooms/{id}`, `…/guests/{id}`) before the mapping.
//! - Other vendors: no pull yet (the run compares the stored state, as before).
//!
//! Nothing is marked gone on the strength of a failed listing: an administration whose
//! listing fails is counted as a problem and its stored bookings are left alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use accesshub_bus::Bus;
use accesshub_connections::{Connection, VendorSettings};
use accesshub_domain::{Event, EventBody, ReservationStatus, Source};
use accesshub_upstreams::{
    Context, SiteDefaults, UpstreamCredentials, UpstreamStore,
    bex::{self, BexClient, ReservationQuery, ReservationResource},
    clock::{self, BookingQuery, ClockClient, client::References},
    nexudus::{self, Coworker, NexudusClient, client::PassQuery},
};
use booking_ingest::{AnswerKind, committer::Committers, upstream::Normalized};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::{StreamExt as _, stream};
use sqlx::{PgPool, Row as _};

use crate::{
    error::ReconcileError,
    model::{PullCounts, Scope, SyncRun},
};

/// Look-back for guests in house when the credentials' options do not say (`lookback_days`).
pub const DEFAULT_LOOKBACK_DAYS: i64 = 30;
/// How long a Nexudus pass holder (e-mail, name) is reused before it is read again.
const HOLDER_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// Most holders cached (then the cache starts over).
const HOLDER_CACHE_MAX: usize = 100_000;
/// Pulled records waiting for their commit at once (the committer batches them).
const STORE_CONCURRENCY: usize = 256;
/// Guest look-ups in flight at once (each is one API call).
const GUEST_CONCURRENCY: usize = 8;

/// (tenant, coworker id).
type TenantKey = (String, String);

/// Stores events through booking-ingest's durable path: its group committer (desired state +
/// outbox row + receipt in one statement, revision rules as for any delivery) on one Postgres
/// connection of the pool; booking-ingest's relay publishes the outbox rows it writes. Shared
/// by the pull phase and re-admission ([`crate::readmit`]). Cheap to clone.
#[derive(Clone)]
pub struct Storer {
    pool: PgPool,
    bus: Bus,
    committers: Committers,
}

impl std::fmt::Debug for Storer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storer").finish_non_exhaustive()
    }
}

impl Storer {
    /// Starts its committer task (within a Tokio runtime).
    pub fn start(pool: PgPool, bus: Bus) -> Self {
        let metrics =
            booking_ingest::metrics::IngestMetrics::new(&accesshub_telemetry::Registry::new());
        let (committers, _tasks) = Committers::start(
            pool.clone(),
            1,
            500,
            Arc::new(tokio::sync::Notify::new()),
            metrics,
        );
        Storer {
            pool,
            bus,
            committers,
        }
    }

    /// Stores one mapped upstream record, keyed by its source as booking-ingest keys its
    /// webhook (`<source>:<key>` when another upstream of the tenant holds the plain key:
    /// the pulled record and the webhook of one booking are one booking); the answer's
    /// kind. `tag` names the pull (`run:<id>`, `poll:<ms>`) in the delivery key.
    pub async fn store(&self, tag: &str, event: Event) -> Result<AnswerKind, String> {
        let normalized = self.keyed(event.source, event).await?;
        let ev = &normalized.event;
        let key = format!("pull:{tag}:{}:{}", ev.booking_key, ev.revision);
        self.submit(key, normalized).await
    }

    /// Stores an event booking-ingest ignored and recorded (see [`crate::readmit`]), keyed by
    /// its source as ingest would key it now (another upstream may have taken the plain key
    /// since); the delivery key is the event's id, so a repeat is a duplicate.
    pub async fn readmit(&self, source: Source, event: Event) -> Result<AnswerKind, String> {
        let normalized = self.keyed(source, event).await?;
        let key = format!("readmit:{}", normalized.event.id);
        self.submit(key, normalized).await
    }

    /// Checks `event` and keys it by `source` as booking-ingest does
    /// ([`booking_ingest::scope::key_by_source`]).
    async fn keyed(&self, source: Source, event: Event) -> Result<Normalized, String> {
        let normalized = booking_ingest::upstream::check(event).map_err(|e| e.to_string())?;
        booking_ingest::scope::key_by_source(&self.pool, source, normalized)
            .await
            .map(|(n, _)| n)
            .map_err(|e| e.to_string())
    }

    async fn submit(&self, key: String, normalized: Normalized) -> Result<AnswerKind, String> {
        let ev = &normalized.event;
        let source = ev.source.as_str();
        let subject = self.bus.subject(&ev.subject());
        self.committers
            .submit(
                normalized,
                source,
                key,
                subject,
                accesshub_telemetry::propagation::current_traceparent(),
            )
            .await
            .map(|a| a.kind)
            .map_err(|e| e.to_string())
    }
}

/// Pulls upstreams into the desired state. Cheap to clone.
#[derive(Clone)]
pub struct Puller {
    pool: PgPool,
    upstreams: UpstreamStore,
    storer: Storer,
    /// Nexudus pass holders by (tenant, coworker id), looked up through the coworkers API.
    holders: Arc<Mutex<HashMap<TenantKey, (Coworker, Instant)>>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").finish_non_exhaustive()
    }
}

/// What a pull did, for the run.
#[derive(Debug, Clone, Default)]
pub struct Pulled {
    /// Counts.
    pub counts: PullCounts,
    /// Records or listings that failed (first few reasons).
    pub problems: Vec<String>,
    /// How many failed.
    pub failed: i64,
}

impl Pulled {
    pub(crate) fn problem(&mut self, p: String) {
        self.failed += 1;
        if self.problems.len() < 5 {
            self.problems.push(p);
        }
    }

    /// Adds `other`'s counts and problems (re-admission and pull make one run's counts).
    pub(crate) fn absorb(&mut self, other: Pulled) {
        let (c, o) = (&mut self.counts, other.counts);
        c.fetched += o.fetched;
        c.new += o.new;
        c.changed += o.changed;
        c.vanished += o.vanished;
        c.readmitted += o.readmitted;
        self.failed += other.failed;
        let room = 5usize.saturating_sub(self.problems.len());
        self.problems.extend(other.problems.into_iter().take(room));
    }
}

impl Puller {
    /// A puller storing through its own booking-ingest committer (one Postgres connection of
    /// `pool`); booking-ingest's relay publishes the outbox rows it writes.
    pub fn new(pool: PgPool, bus: Bus, upstreams: UpstreamStore) -> Self {
        Puller {
            storer: Storer::start(pool.clone(), bus),
            pool,
            upstreams,
            holders: Arc::default(),
        }
    }

    /// Its durable path (re-admission shares it).
    pub fn storer(&self) -> &Storer {
        &self.storer
    }

    /// Pulls what `conn` serves; `None` when it has no upstream to pull (no pull mapping for
    /// its vendor, or no credentials for it).
    pub async fn pull(
        &self,
        conn: &Connection,
        run: &SyncRun,
        now: DateTime<Utc>,
    ) -> Result<Option<Pulled>, ReconcileError> {
        match &conn.settings {
            VendorSettings::Cloudpass(cp) => self.pull_bex(conn, cp, run, now).await,
            VendorSettings::Tapkey(tk) => {
                let tag = format!("run:{}", run.id);
                self.pull_nexudus(conn, tk, &tag, None, now).await
            }
            VendorSettings::Dormakaba(_) => self.pull_clock(conn, run, now).await,
            _ => Ok(None),
        }
    }

    /// One incremental poll of the Nexudus passes `conn` serves (changes since the last
    /// successful poll, minus a minute of overlap; the very first poll of a connection lists
    /// everything). The mark is kept in Postgres (`upstream_poll_marks`), so a restarted
    /// reconciler goes on where it stopped. Finds no deletions: Sync Now does. `None` when
    /// `conn` has no Nexudus pull.
    pub async fn poll(
        &self,
        conn: &Connection,
        now: DateTime<Utc>,
    ) -> Result<Option<Pulled>, ReconcileError> {
        let VendorSettings::Tapkey(tk) = &conn.settings else {
            return Ok(None);
        };
        let since = self.poll_mark(conn, "nexudus").await?;
        let tag = format!("poll:{}", now.timestamp_millis());
        let out = self
            .pull_nexudus(
                conn,
                tk,
                &tag,
                Some(since.map(|t| t - Duration::minutes(1))),
                now,
            )
            .await?;
        if out.as_ref().is_some_and(|p| p.failed == 0) {
            self.set_poll_mark(conn, "nexudus", now).await?;
        }
        Ok(out)
    }

    /// Where the last successful poll of `conn`'s `source` started.
    async fn poll_mark(
        &self,
        conn: &Connection,
        source: &str,
    ) -> Result<Option<DateTime<Utc>>, ReconcileError> {
        Ok(sqlx::query_scalar(
            "SELECT polled_at FROM upstream_poll_marks
              WHERE tenant_id = $1 AND vendor = $2 AND connection = $3 AND source = $4",
        )
        .bind(&conn.tenant)
        .bind(conn.vendor().as_str())
        .bind(&conn.name)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a successful poll of `conn`'s `source` that started at `at` (never moving the
    /// mark back).
    async fn set_poll_mark(
        &self,
        conn: &Connection,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ReconcileError> {
        sqlx::query(
            "INSERT INTO upstream_poll_marks (tenant_id, vendor, connection, source, polled_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, vendor, connection, source) DO UPDATE
               SET polled_at = GREATEST(upstream_poll_marks.polled_at, EXCLUDED.polled_at),
                   updated_at = now()",
        )
        .bind(&conn.tenant)
        .bind(conn.vendor().as_str())
        .bind(&conn.name)
        .bind(source)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pull_bex(
        &self,
        conn: &Connection,
        cp: &accesshub_connections::CloudpassSettings,
        run: &SyncRun,
        now: DateTime<Utc>,
    ) -> Result<Option<Pulled>, ReconcileError> {
        let Some(creds) = self.upstreams.get(&conn.tenant, "bex").await? else {
            return Ok(None);
        };
        let admins: Vec<&String> = cp
            .administrations
            .keys()
            .filter(|a| conn.sites.is_empty() || conn.sites.contains(a))
            .collect();
        let defaults = self.site_defaults(&conn.tenant, "bex").await?;
        let client = bex_client(&creds)?;
        let guests = creds
            .options
            .get("guests")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        let mut out = Pulled::default();
        // A tenant tied to its BEX organization pulls no administration of another (the API
        // key may reach more): each is a problem of the run, naming both organizations.
        let mut admins = admins;
        if let Some(org) = self.organization(&conn.tenant, "bex").await? {
            let listed = match client.administrations().await {
                Ok(l) => l,
                Err(e) => {
                    out.problem(format!(
                        "bex administrations (to check organization {org}): {e}"
                    ));
                    return Ok(Some(out));
                }
            };
            let foreign = bex::foreign_administrations(&listed, Some(&org), admins.iter().copied());
            for (admin, theirs) in &foreign {
                out.problem(format!(
                    "bex administration {admin} belongs to organization {theirs}, not the tenant's {org}: not pulled"
                ));
            }
            admins.retain(|a| !foreign.iter().any(|(f, _)| f == a));
        }
        for admin in admins {
            let site = SitePull::new(self, conn, admin, "bex", &defaults, &creds, run, now);
            let job = AdminPull {
                site,
                client: &client,
                guests,
            };
            if let Err(e) = job.run(&mut out).await {
                out.problem(format!("bex administration {admin}: {e}"));
            }
        }
        Ok(Some(out))
    }

    /// Lists the Clock PMS+ account's bookings in scope (arrivals of the window, guests in
    /// house) and stores them; stored Clock bookings of the account in that window that Clock
    /// no longer lists are marked gone. The account is the credentials' (its base URL's last
    /// segment); a connection whose `sites` leave it out pulls nothing.
    async fn pull_clock(
        &self,
        conn: &Connection,
        run: &SyncRun,
        now: DateTime<Utc>,
    ) -> Result<Option<Pulled>, ReconcileError> {
        let Some(creds) = self.upstreams.get(&conn.tenant, "clock").await? else {
            return Ok(None);
        };
        let client = clock_client(&creds)?;
        let Some(account) = client.account() else {
            return Err(accesshub_upstreams::UpstreamError::Config(
                "clock base_url names no account (…/pms_api/{subscription}/{account})".into(),
            )
            .into());
        };
        let mut out = Pulled::default();
        if !conn.sites.is_empty() && !conn.sites.contains(&account) {
            return Ok(Some(out));
        }
        let defaults = self.site_defaults(&conn.tenant, "clock").await?;
        let site = SitePull::new(self, conn, &account, "clock", &defaults, &creds, run, now);
        if let Err(e) = (AccountPull {
            site,
            client: &client,
        })
        .run(&mut out)
        .await
        {
            out.problem(format!("clock account {account}: {e}"));
        }
        Ok(Some(out))
    }

    /// Lists the Nexudus passes `conn` serves and stores them. `since`: `None` for a full
    /// listing of the non-expired passes (Sync Now), which also marks stored passes Nexudus no
    /// longer has as removed; `Some(t)` for an incremental poll of changes since `t` (`Some(None)`:
    /// the first poll, everything, nothing marked removed).
    async fn pull_nexudus(
        &self,
        conn: &Connection,
        tk: &accesshub_connections::TapkeySettings,
        tag: &str,
        since: Option<Option<DateTime<Utc>>>,
        now: DateTime<Utc>,
    ) -> Result<Option<Pulled>, ReconcileError> {
        let Some(creds) = self.upstreams.get(&conn.tenant, "nexudus").await? else {
            return Ok(None);
        };
        let client = nexudus_client(&creds)?;
        if since.is_none() {
            // Sync Now re-reads the holders too (an e-mail may have changed).
            self.forget_holders(&conn.tenant);
        }
        let defaults = self.site_defaults(&conn.tenant, "nexudus").await?;
        let cx = Context {
            tenant: &conn.tenant,
            site_defaults: &defaults,
        };
        let businesses: Vec<Option<String>> = if conn.sites.is_empty() {
            vec![None]
        } else {
            conn.sites.iter().cloned().map(Some).collect()
        };
        let mut out = Pulled::default();
        for business in businesses {
            let q = PassQuery {
                business: business.clone(),
                updated_since: since.flatten(),
                expiring_after: since.is_none().then_some(now),
                coworker: None,
            };
            let passes = match client.time_passes(&q).await {
                Ok(p) => p,
                Err(e) => {
                    out.problem(format!(
                        "nexudus business {}: {e}",
                        business.as_deref().unwrap_or("*")
                    ));
                    continue;
                }
            };
            let known = self
                .known_passes(&conn.tenant, business.as_deref(), now)
                .await?;
            let mut seen = HashSet::with_capacity(passes.len());
            for pass in passes {
                let key = pass.unique_id.clone();
                if !tk.pass_types.is_empty()
                    && !tk.pass_types.contains_key(&pass.time_pass_id.to_string())
                {
                    // No locks for this pass type: access control is off for it.
                    continue;
                }
                out.counts.fetched += 1;
                seen.insert(key.clone());
                let holder = match self
                    .holder(&client, &conn.tenant, &pass.coworker_id.to_string())
                    .await
                {
                    Ok(h) => h,
                    Err(e) => {
                        out.problem(format!("pass {key}: coworker: {e}"));
                        continue;
                    }
                };
                let event = match nexudus::map_pass(pass, &holder, false, cx, "pass") {
                    Ok(e) => *e,
                    Err(e) => {
                        out.problem(format!("pass {key}: {e}"));
                        continue;
                    }
                };
                match self.store(tag, event).await {
                    Ok(AnswerKind::Accepted) if known.contains_key(&key) => out.counts.changed += 1,
                    Ok(AnswerKind::Accepted) => out.counts.new += 1,
                    Ok(_) => {}
                    Err(e) => out.problem(format!("pass {key}: store: {e}")),
                }
            }
            if since.is_some() {
                continue;
            }
            for (key, stored) in known {
                if seen.contains(&key) {
                    continue;
                }
                let Some(mut ev) = stored else { continue };
                let EventBody::Pass(p) = &mut ev.body else {
                    continue;
                };
                p.status = accesshub_domain::PassStatus::Removed;
                let revision = (ev.revision + 1).max(now.timestamp_millis());
                let gone = Event::new(
                    ev.tenant,
                    ev.site,
                    ev.booking_key,
                    revision,
                    ev.source,
                    now,
                    ev.body,
                );
                match self.store(tag, gone).await {
                    Ok(AnswerKind::Accepted) => out.counts.vanished += 1,
                    Ok(_) => {}
                    Err(e) => out.problem(format!("pass {key}: mark removed: {e}")),
                }
            }
        }
        Ok(Some(out))
    }

    /// The stored Nexudus passes of a tenant (of one business) that still grant access, by
    /// upstream id (`UniqueId`).
    async fn known_passes(
        &self,
        tenant: &str,
        business: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Option<Event>>, ReconcileError> {
        let rows = sqlx::query(
            "SELECT tenant_id, booking_key, site, revision, source, event_id, payload::text AS payload,
                    updated_at
               FROM bookings
              WHERE tenant_id = $1 AND kind = 'pass' AND source = 'nexudus'
                AND ($2::text IS NULL OR site = $2) AND NOT ends_access AND ends_at >= $3",
        )
        .bind(tenant)
        .bind(business)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        // By upstream id, as the listing names them: a key qualified as `nexudus:<id>`
        // (another source had the plain one) is read back as `<id>`.
        let qualified = format!("{}:", Source::Nexudus.as_str());
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("booking_key")?;
            let id = key
                .strip_prefix(&qualified)
                .map_or(key.clone(), str::to_owned);
            out.insert(id, crate::engine::event_from_row(tenant, "pass", &row).ok());
        }
        Ok(out)
    }

    /// A pass holder, from the cache (10 minutes) or the coworkers API.
    async fn holder(
        &self,
        client: &NexudusClient,
        tenant: &str,
        id: &str,
    ) -> Result<Coworker, accesshub_upstreams::UpstreamError> {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some((c, at)) = self
            .holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < HOLDER_TTL
        {
            return Ok(c.clone());
        }
        let c = client.coworker(id).await?;
        let mut cache = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= HOLDER_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (c.clone(), Instant::now()));
        Ok(c)
    }

    /// Forgets cached holders of `tenant` (a coworker's e-mail changed).
    pub fn forget_holders(&self, tenant: &str) {
        self.holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _), _| t != tenant);
    }

    /// The upstream organization `tenant`'s `source` is tied to, if any
    /// (`PUT /tenants/{t}/sources/{s}/organization`).
    async fn organization(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<String>, ReconcileError> {
        let org: Option<Option<String>> = sqlx::query_scalar(
            "SELECT organization_id FROM tenant_sources WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        Ok(org.flatten())
    }

    async fn site_defaults(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<serde_json::Value, ReconcileError> {
        let doc: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT site_defaults FROM tenant_sources WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        Ok(doc.unwrap_or_else(|| serde_json::json!({})))
    }

    /// Stores one event through the durable path ([`Storer::store`]).
    async fn store(&self, tag: &str, event: Event) -> Result<AnswerKind, String> {
        self.storer.store(tag, event).await
    }
}

/// A Nexudus client from stored credentials (`user:password`); `rate_per_sec` / `burst` in
/// the options as for BEX, `auth`: `token` (default: a bearer token from `POST /api/token`,
/// as Nexudus recommends) or `basic`.
pub fn nexudus_client(
    creds: &UpstreamCredentials,
) -> Result<NexudusClient, accesshub_upstreams::UpstreamError> {
    let (rate, burst) = rate_options(creds, nexudus::client::DEFAULT_RATE_PER_SEC);
    let auth = match creds
        .options
        .get("auth")
        .and_then(serde_json::Value::as_str)
    {
        Some(a) => a.parse()?,
        None => nexudus::client::Auth::default(),
    };
    NexudusClient::with_auth(&creds.base_url, &creds.secret, rate, burst, auth)
}

/// `rate_per_sec` and `burst` from the options.
fn rate_options(creds: &UpstreamCredentials, default_rate: f64) -> (f64, u32) {
    creds.rate_options(default_rate)
}

/// A BEX client from stored credentials; `rate_per_sec` / `burst` in the options override
/// the documented throttle (simulators, benchmarks).
pub fn bex_client(
    creds: &UpstreamCredentials,
) -> Result<BexClient, accesshub_upstreams::UpstreamError> {
    BexClient::from_credentials(creds)
}

/// A Clock PMS+ client from stored credentials (`user:api key`); `rate_per_sec` / `burst` in
/// the options override the documented 5 calls per second.
pub fn clock_client(
    creds: &UpstreamCredentials,
) -> Result<ClockClient, accesshub_upstreams::UpstreamError> {
    let (rate, burst) = rate_options(creds, clock::client::DEFAULT_RATE_PER_SEC);
    let burst = if creds.options.get("burst").is_some() {
        burst
    } else {
        clock::client::DEFAULT_BURST
    };
    ClockClient::new(&creds.base_url, &creds.secret, rate, burst)
}

/// The arrival dates a pull lists, and the day that decides "in house".
#[derive(Debug, Clone, Copy)]
struct Window {
    from: NaiveDate,
    today: NaiveDate,
    to: NaiveDate,
}

/// What the pull of one site (a BEX administration, a Clock account) shares whatever the
/// upstream: the window, the stored bookings of the site and source, storing what was listed
/// and marking gone what no longer is.
struct SitePull<'a> {
    puller: &'a Puller,
    tenant: &'a str,
    site: &'a str,
    /// The upstream (`bex`, `clock`): stored bookings of other sources are never touched.
    source: &'static str,
    defaults: &'a serde_json::Value,
    tz: chrono_tz::Tz,
    window: Window,
    tag: String,
}

impl<'a> SitePull<'a> {
    /// The site's window: arrivals from today − `lookback_days` (options, default 30) to
    /// today + the run's days, today in the site's timezone.
    #[allow(clippy::too_many_arguments)]
    fn new(
        puller: &'a Puller,
        conn: &'a Connection,
        site: &'a str,
        source: &'static str,
        defaults: &'a serde_json::Value,
        creds: &UpstreamCredentials,
        run: &SyncRun,
        now: DateTime<Utc>,
    ) -> Self {
        let days = match run.scope {
            Scope::Upcoming(d) => i64::from(d),
            Scope::Active => 0,
            Scope::Full | Scope::Offboard => i64::from(Scope::DEFAULT_DAYS),
        };
        let lookback = creds
            .options
            .get("lookback_days")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(DEFAULT_LOOKBACK_DAYS)
            .clamp(0, 3650);
        let tz = SiteDefaults::for_site(defaults, site).tz();
        let today = now.with_timezone(&tz).date_naive();
        SitePull {
            puller,
            tenant: &conn.tenant,
            site,
            source,
            defaults,
            tz,
            window: Window {
                from: today - Duration::days(lookback),
                today,
                to: today + Duration::days(days),
            },
            tag: format!("run:{}", run.id),
        }
    }

    fn cx(&self) -> Context<'a> {
        Context {
            tenant: self.tenant,
            site_defaults: self.defaults,
        }
    }

    /// Stores every `(upstream id, mapped event)` of `records` (many commits in flight; the
    /// committer batches them), counting fetched / new / changed and problems; then marks the
    /// stored bookings of the window that were not among them as gone.
    async fn store_all(
        &self,
        records: impl futures::Stream<Item = (String, Result<Event, String>)>,
        out: &mut Pulled,
    ) -> Result<(), ReconcileError> {
        let known = self.known().await?;
        let mut seen: HashSet<String> = HashSet::new();
        let mut stores = futures::stream::FuturesUnordered::new();
        let mut records = std::pin::pin!(records);
        while let Some((id, event)) = records.next().await {
            out.counts.fetched += 1;
            seen.insert(id.clone());
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    out.problem(format!("{} {id}: {e}", self.source));
                    continue;
                }
            };
            let was_known = known.contains_key(&id);
            let (tag, puller) = (&self.tag, self.puller);
            stores.push(async move { (id, was_known, puller.store(tag, event).await) });
            if stores.len() >= STORE_CONCURRENCY
                && let Some(done) = stores.next().await
            {
                tally(out, self.source, done);
            }
        }
        while let Some(done) = stores.next().await {
            tally(out, self.source, done);
        }
        for (key, row) in known {
            if seen.contains(&key) || !row.in_window {
                continue;
            }
            match self.gone(row.event).await {
                Ok(AnswerKind::Accepted) => out.counts.vanished += 1,
                Ok(_) => {}
                Err(e) => out.problem(format!("{} {key}: mark gone: {e}", self.source)),
            }
        }
        Ok(())
    }

    /// The site's stored reservations of this source by upstream id (a key qualified as
    /// `<source>:<id>` because another source had the plain one is read back as `<id>`), and
    /// whether each still wants access within the pulled window (candidates for "gone").
    async fn known(&self) -> Result<HashMap<String, Known>, ReconcileError> {
        let w = self.window;
        let local = |d: NaiveDate| {
            accesshub_domain::local_to_utc(self.tz, d.and_hms_opt(0, 0, 0).unwrap_or_default())
        };
        let (from, today, until) = (
            local(w.from),
            local(w.today),
            local(w.to + Duration::days(1)),
        );
        let rows = sqlx::query(
            "SELECT tenant_id, booking_key, site, revision, source, event_id, payload::text AS payload,
                    updated_at,
                    (NOT ends_access AND starts_at >= $3 AND starts_at < $4 AND ends_at >= $5)
                        AS in_window
               FROM bookings
              WHERE tenant_id = $1 AND kind = 'reservation' AND site = $2 AND source = $6",
        )
        .bind(self.tenant)
        .bind(self.site)
        .bind(from)
        .bind(until)
        .bind(today)
        .bind(self.source)
        .fetch_all(&self.puller.pool)
        .await?;
        let qualified = format!("{}:", self.source);
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("booking_key")?;
            let in_window: Option<bool> = row.try_get("in_window")?;
            let event = crate::engine::event_from_row(self.tenant, "reservation", &row).ok();
            let id = key
                .strip_prefix(&qualified)
                .map_or(key.clone(), str::to_owned);
            out.insert(
                id,
                Known {
                    in_window: in_window.unwrap_or(false) && event.is_some(),
                    event,
                },
            );
        }
        Ok(out)
    }

    /// Marks a stored reservation gone: cancelled, at a revision newer than the stored one
    /// (the upstream has no time for a deletion it no longer shows).
    async fn gone(&self, stored: Option<Event>) -> Result<AnswerKind, String> {
        let Some(stored) = stored else {
            return Ok(AnswerKind::Superseded);
        };
        let EventBody::Reservation(mut r) = stored.body else {
            return Ok(AnswerKind::Superseded);
        };
        r.status = ReservationStatus::Cancelled;
        let now = Utc::now();
        let revision = (stored.revision + 1).max(now.timestamp_millis());
        let ev = Event::new(
            stored.tenant,
            stored.site,
            stored.booking_key,
            revision,
            stored.source,
            now,
            EventBody::Reservation(r),
        );
        self.puller.store(&self.tag, ev).await
    }
}

/// A BEX administration: its reservations of the window (and each one's guests).
struct AdminPull<'a> {
    site: SitePull<'a>,
    client: &'a BexClient,
    guests: bool,
}

impl AdminPull<'_> {
    async fn run(&self, out: &mut Pulled) -> Result<(), ReconcileError> {
        let w = self.site.window;
        let mut listed: Vec<ReservationResource> = Vec::new();
        self.client
            .reservations(
                self.site.site,
                &ReservationQuery {
                    start_date: Some((w.from, w.to)),
                    page_size: 100,
                },
                |page| {
                    listed.extend(
                        page.into_iter()
                            .filter(|r| r.attributes.end_date >= w.today),
                    );
                    Ok(())
                },
            )
            .await?;
        let cx = self.site.cx();
        let (client, admin, want_guests) = (self.client, self.site.site, self.guests);
        let records = stream::iter(listed)
            .map(|res| async move {
                let id = res.id.to_string();
                let guests = if want_guests {
                    Some(client.guests(admin, &id).await)
                } else {
                    None
                };
                (res, guests)
            })
            .buffer_unordered(GUEST_CONCURRENCY)
            .map(move |(res, guests)| {
                let id = res.id.to_string();
                let event = guests
                    .transpose()
                    .map_err(|e| format!("guests: {e}"))
                    .and_then(|guests| {
                        bex::map_reservation(
                            res,
                            bex::Action::FromState,
                            Some(admin),
                            guests.as_deref(),
                            cx,
                            "reservation",
                        )
                        .map(|e| *e)
                        .map_err(|e| e.to_string())
                    });
                (id, event)
            });
        self.site.store_all(records, out).await
    }
}

/// A Clock PMS+ account: its bookings arriving in the window (filtered by the API) that
/// have not departed, their room and guest references resolved (once per id and run).
struct AccountPull<'a> {
    site: SitePull<'a>,
    client: &'a ClockClient,
}

impl AccountPull<'_> {
    async fn run(&self, out: &mut Pulled) -> Result<(), ReconcileError> {
        let w = self.site.window;
        let mut listed: Vec<serde_json::Value> = Vec::new();
        self.client
            .bookings(
                &BookingQuery {
                    arrival: Some((w.from, w.to)),
                    ..BookingQuery::default()
                },
                |page| {
                    listed.extend(page);
                    Ok(())
                },
            )
            .await?;
        let cx = self.site.cx();
        let mut refs = References::default();
        let mut records = Vec::with_capacity(listed.len());
        for raw in listed {
            let id = match &raw["id"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut b = match accesshub_upstreams::from_value_at::<clock::Booking>("booking", raw) {
                Ok(b) => b,
                Err(e) => {
                    records.push((id, Err(e.to_string())));
                    continue;
                }
            };
            // Departed before today: out of scope (not listed, not gone).
            if b.departure < w.today {
                continue;
            }
            let event = match refs.resolve(self.client, &mut b).await {
                Ok(()) => clock::map_booking(b, cx)
                    .map(|e| *e)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("references: {e}")),
            };
            records.push((id, event));
        }
        self.site.store_all(stream::iter(records), out).await
    }
}

/// Counts one stored record: new, changed, or a problem.
fn tally(
    out: &mut Pulled,
    source: &str,
    (id, was_known, result): (String, bool, Result<AnswerKind, String>),
) {
    match result {
        Ok(AnswerKind::Accepted) if was_known => out.counts.changed += 1,
        Ok(AnswerKind::Accepted) => out.counts.new += 1,
        Ok(_) => {}
        Err(e) => out.problem(format!("{source} {id}: store: {e}")),
    }
}

struct Known {
    in_window: bool,
    event: Option<Event>,
}
