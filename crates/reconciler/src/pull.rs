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
//!   poll (`UpdatedOn`), every `RECONCILER_UPSTREAM_POLL` (default 60 s). Holders' e-mail and
//!   name come from the coworkers API, cached for ten minutes.
//! - Other vendors: no pull yet (the run compares the stored state, as before).
//!
//! Nothing is marked gone on the strength of a failed listing: an administration whose
//! listing fails is counted as a problem and its stored bookings are left alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use accesshub_bus::Bus;
use accesshub_connections::{Connection, VendorSettings};
use accesshub_domain::{Event, EventBody, ReservationStatus};
use accesshub_upstreams::{
    Context, SiteDefaults, UpstreamCredentials, UpstreamStore,
    bex::{self, BexClient, ReservationQuery, ReservationResource},
    nexudus::{self, Coworker, NexudusClient, client::PassQuery},
};
use booking_ingest::{AnswerKind, committer::Committers};
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

/// (tenant, coworker id) or (tenant, connection name).
type TenantKey = (String, String);

/// Pulls upstreams into the desired state. Cheap to clone.
#[derive(Clone)]
pub struct Puller {
    pool: PgPool,
    bus: Bus,
    upstreams: UpstreamStore,
    committers: Committers,
    /// Nexudus pass holders by (tenant, coworker id), looked up through the coworkers API.
    holders: Arc<Mutex<HashMap<TenantKey, (Coworker, Instant)>>>,
    /// Last successful poll per (tenant, connection name).
    watermarks: Arc<Mutex<HashMap<TenantKey, DateTime<Utc>>>>,
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
    fn problem(&mut self, p: String) {
        self.failed += 1;
        if self.problems.len() < 5 {
            self.problems.push(p);
        }
    }
}

impl Puller {
    /// A puller storing through its own booking-ingest committer (one Postgres connection of
    /// `pool`); booking-ingest's relay publishes the outbox rows it writes.
    pub fn new(pool: PgPool, bus: Bus, upstreams: UpstreamStore) -> Self {
        let metrics =
            booking_ingest::metrics::IngestMetrics::new(&accesshub_telemetry::Registry::new());
        let (committers, _tasks) = Committers::start(
            pool.clone(),
            1,
            500,
            Arc::new(tokio::sync::Notify::new()),
            metrics,
        );
        Puller {
            pool,
            bus,
            upstreams,
            committers,
            holders: Arc::default(),
            watermarks: Arc::default(),
        }
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
            _ => Ok(None),
        }
    }

    /// One incremental poll of the Nexudus passes `conn` serves (changes since the last poll
    /// of this process, minus a minute of overlap; the first poll lists everything). Finds
    /// no deletions: Sync Now does. `None` when `conn` has no Nexudus pull.
    pub async fn poll(
        &self,
        conn: &Connection,
        now: DateTime<Utc>,
    ) -> Result<Option<Pulled>, ReconcileError> {
        let VendorSettings::Tapkey(tk) = &conn.settings else {
            return Ok(None);
        };
        let key = (conn.tenant.clone(), conn.name.clone());
        let since = self
            .watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
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
            self.watermarks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, now);
        }
        Ok(out)
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
        let days = match run.scope {
            Scope::Upcoming(d) => i64::from(d),
            Scope::Active => 0,
            Scope::Full | Scope::Offboard => i64::from(Scope::DEFAULT_DAYS),
        };
        let defaults = self.site_defaults(&conn.tenant, "bex").await?;
        let client = bex_client(&creds)?;
        let lookback = creds
            .options
            .get("lookback_days")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(DEFAULT_LOOKBACK_DAYS)
            .clamp(0, 3650);
        let guests = creds
            .options
            .get("guests")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        let mut out = Pulled::default();
        for admin in admins {
            let d = SiteDefaults::for_site(&defaults, admin);
            let today = now.with_timezone(&d.tz()).date_naive();
            let window = Window {
                from: today - Duration::days(lookback),
                today,
                to: today + Duration::days(days),
            };
            let job = AdminPull {
                puller: self,
                client: &client,
                tenant: &conn.tenant,
                admin,
                defaults: &defaults,
                tz: d.tz(),
                window,
                tag: format!("run:{}", run.id),
                guests,
            };
            if let Err(e) = job.run(&mut out).await {
                out.problem(format!("bex administration {admin}: {e}"));
            }
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

    /// The stored Nexudus passes of a tenant (of one business) that still grant access.
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
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("booking_key")?;
            out.insert(
                key,
                crate::engine::event_from_row(tenant, "pass", &row).ok(),
            );
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

    /// Stores one event through booking-ingest's committer; the answer's kind. `tag` names
    /// the pull (`run:<id>`, `poll:<ms>`) in the delivery key.
    async fn store(&self, tag: &str, event: Event) -> Result<AnswerKind, String> {
        let normalized = booking_ingest::upstream::check(event).map_err(|e| e.to_string())?;
        let ev = &normalized.event;
        let key = format!("pull:{tag}:{}:{}", ev.booking_key, ev.revision);
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

/// A Nexudus client from stored credentials (`user:password`); `rate_per_sec` / `burst` in
/// the options as for BEX.
pub fn nexudus_client(
    creds: &UpstreamCredentials,
) -> Result<NexudusClient, accesshub_upstreams::UpstreamError> {
    let (rate, burst) = rate_options(creds, nexudus::client::DEFAULT_RATE_PER_SEC);
    NexudusClient::new(&creds.base_url, &creds.secret, rate, burst)
}

/// `rate_per_sec` and `burst` from the options.
fn rate_options(creds: &UpstreamCredentials, default_rate: f64) -> (f64, u32) {
    let rate = creds
        .options
        .get("rate_per_sec")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(default_rate);
    let burst = creds
        .options
        .get("burst")
        .and_then(serde_json::Value::as_u64)
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(20);
    (rate, burst)
}

/// A BEX client from stored credentials; `rate_per_sec` / `burst` in the options override
/// the documented throttle (simulators, benchmarks).
pub fn bex_client(
    creds: &UpstreamCredentials,
) -> Result<BexClient, accesshub_upstreams::UpstreamError> {
    let (rate, burst) = rate_options(creds, bex::client::DEFAULT_RATE_PER_SEC);
    BexClient::with_rate(&creds.base_url, &creds.secret, rate, burst)
}

/// The arrival dates a pull lists, and the day that decides "in house".
#[derive(Debug, Clone, Copy)]
struct Window {
    from: NaiveDate,
    today: NaiveDate,
    to: NaiveDate,
}

struct AdminPull<'a> {
    puller: &'a Puller,
    client: &'a BexClient,
    tenant: &'a str,
    admin: &'a str,
    defaults: &'a serde_json::Value,
    tz: chrono_tz::Tz,
    window: Window,
    tag: String,
    guests: bool,
}

impl AdminPull<'_> {
    async fn run(&self, out: &mut Pulled) -> Result<(), ReconcileError> {
        let w = self.window;
        let mut listed: Vec<ReservationResource> = Vec::new();
        self.client
            .reservations(
                self.admin,
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
        let known = self.known().await?;
        let mut seen: HashSet<String> = HashSet::with_capacity(listed.len());
        let cx = Context {
            tenant: self.tenant,
            site_defaults: self.defaults,
        };
        let client = self.client;
        let admin = self.admin;
        let want_guests = self.guests;
        let mut with_guests = stream::iter(listed)
            .map(|res| async move {
                let id = res.id.to_string();
                let guests = if want_guests {
                    Some(client.guests(admin, &id).await)
                } else {
                    None
                };
                (res, guests)
            })
            .buffer_unordered(GUEST_CONCURRENCY);
        let mut stores = futures::stream::FuturesUnordered::new();
        while let Some((res, guests)) = with_guests.next().await {
            let id = res.id.to_string();
            out.counts.fetched += 1;
            seen.insert(id.clone());
            let guests = match guests.transpose() {
                Ok(g) => g,
                Err(e) => {
                    out.problem(format!("reservation {id}: guests: {e}"));
                    continue;
                }
            };
            let event = match bex::map_reservation(
                res,
                bex::Action::FromState,
                Some(admin),
                guests.as_deref(),
                cx,
                "reservation",
            ) {
                Ok(e) => *e,
                Err(e) => {
                    out.problem(format!("reservation {id}: {e}"));
                    continue;
                }
            };
            // Many stores in flight: booking-ingest's committer writes them in batches.
            let was_known = known.contains_key(&id);
            let tag = &self.tag;
            let puller = self.puller;
            stores.push(async move { (id, was_known, puller.store(tag, event).await) });
            if stores.len() >= STORE_CONCURRENCY
                && let Some(done) = stores.next().await
            {
                tally(out, done);
            }
        }
        while let Some(done) = stores.next().await {
            tally(out, done);
        }
        drop(with_guests);
        for (key, row) in known {
            if seen.contains(&key) || !row.in_window {
                continue;
            }
            match self.gone(row.event).await {
                Ok(AnswerKind::Accepted) => out.counts.vanished += 1,
                Ok(_) => {}
                Err(e) => out.problem(format!("reservation {key}: mark gone: {e}")),
            }
        }
        Ok(())
    }

    /// The administration's stored BEX reservations: every key (new vs changed), and whether
    /// each still wants access within the pulled window (candidates for "gone").
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
              WHERE tenant_id = $1 AND kind = 'reservation' AND site = $2 AND source = 'bex'",
        )
        .bind(self.tenant)
        .bind(self.admin)
        .bind(from)
        .bind(until)
        .bind(today)
        .fetch_all(&self.puller.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("booking_key")?;
            let in_window: Option<bool> = row.try_get("in_window")?;
            let event = crate::engine::event_from_row(self.tenant, "reservation", &row).ok();
            out.insert(
                key,
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

/// Counts one stored record: new, changed, or a problem.
fn tally(out: &mut Pulled, (id, was_known, result): (String, bool, Result<AnswerKind, String>)) {
    match result {
        Ok(AnswerKind::Accepted) if was_known => out.counts.changed += 1,
        Ok(AnswerKind::Accepted) => out.counts.new += 1,
        Ok(_) => {}
        Err(e) => out.problem(format!("reservation {id}: store: {e}")),
    }
}

struct Known {
    in_window: bool,
    event: Option<Event>,
}
