//! dormakaba (Saflok Messenger PMS WS, Ambiance): a **re-assertion probe** instead of a list.
//!
//! The lock system's PMS interface has no list or read operation, so the vendor side cannot be
//! listed. What it does have are idempotent operations that fail with a fault when the
//! booking is gone. A sync therefore walks the desired side — the reservations in Postgres
//! joined with dormakaba-worker's binding records (what the worker set at the lock system) —
//! and, per reservation, applies dormakaba-worker's own rules ([`plan::sync_check`]):
//!
//! | desired state vs record | probe / repair | counted |
//! | --- | --- | --- |
//! | access wanted, record matches | `ExtendCheckOut` with the desired check-out: OK | in sync |
//! | … the lock system answers `ReservationNotFound` (keys cancelled by hand at the front desk) | SYNC `apply`: the worker re-creates the booking with `CreateNewBooking` on encoder 0 (key data back, no card encoded, no guest at an encoder needed) and re-sends the mobile key | created |
//! | … answers `ReservationCheckedOut` (checked out by hand) | none: the lock system refuses the `ReservationID` from now on | failed, with the reason |
//! | access wanted, record differs (a missed event) | SYNC `apply`: the worker's normal plan | updated (created when nothing was registered yet and a mobile key is wanted) |
//! | access wanted, nothing registered, no mobile key | none (a stay registers nothing until a key is cut) | in sync |
//! | no longer wanted (cancelled, checked out, no-show, departed), record live | `ExtendCheckOut` to the recorded check-out: OK → SYNC `remove`: the worker checks the guest out (and cancels the mobile key) | removed |
//! | … the probe answers `ReservationNotFound` / `ReservationCheckedOut` | none | in sync |
//! | … recorded check-out already passed (the lock system refuses past dates) | SYNC `remove` straight away; "already gone" is success for the worker | removed |
//! | not wanted, nothing live | none | in sync |
//!
//! Repairs go through the SYNC stream to dormakaba-worker like every vendor's, under the
//! reservation's advisory lock and the worker's per-connection rate limit. The probes are the
//! reconciler's own calls, with their own limiter ([`DEFAULT_RATE`] per connection, at most
//! [`PROBE_CONCURRENCY`] in flight): lock systems are on-premises servers, keep the rate well
//! below what the worker uses. One probe per reservation with live access (or stale live
//! access), so a run takes about that many / rate seconds.
//!
//! **What it can see:** a booking deleted or checked out at the lock system, a booking we
//! created that should be gone, and any difference between the desired state and what the
//! worker recorded (missed events). **What it cannot see:** anything done at the lock system
//! that leaves our booking in place — rooms, common areas or the guest name changed by hand
//! (`ExtendCheckOut` only re-asserts the check-out, which it also corrects), extra cards cut at
//! the desk, a mobile key cancelled by hand while the booking stays, bookings created by hand
//! (there is no list to find strays in). Re-sending `ChangeKeyAccess` would correct the first
//! group but can invalidate cards already handed out, so the probe does not.

use std::{collections::HashMap, sync::Arc, time::Instant};

use accesshub_bus::Bus;
use accesshub_connections::{Connection, DormakabaSettings, VendorSettings};
use accesshub_domain::{Classify as _, ErrorClass, Event, EventBody, EventKind};
use chrono::{DateTime, Utc};
use dormakaba_worker::{
    plan::{self, LockRecord, SyncCheck},
    soap::{SoapClient, SoapConfig, SoapError},
};
use futures::{StreamExt as _, future::BoxFuture, stream::BoxStream};
use sqlx::{PgPool, Row as _};
use vendor_http::RateLimiter;

use super::{DesiredObject, Inventory, InventoryError, Prober, VendorObject};
use crate::{
    ReconcileError,
    engine::{self, Outcome, Publisher, Repair},
    model::{Counts, Scope, SyncRun},
    store,
};

const VENDOR: &str = "dormakaba";
/// Default probes per second per connection.
pub const DEFAULT_RATE: f64 = 5.0;
/// Probes in flight at once per run.
pub const PROBE_CONCURRENCY: usize = 4;
/// Probe attempts on transient faults (busy lock system, unreachable).
const PROBE_ATTEMPTS: u32 = 3;

/// (tenant, connection name) → (connection version, client, probe limiter).
type ClientMap = HashMap<(String, String), (i64, Arc<SoapClient>, Arc<RateLimiter>)>;

/// The dormakaba sync: no listing, a re-assertion probe per reservation (module docs).
#[derive(Debug)]
pub struct DormakabaInventory {
    rate: f64,
    clients: std::sync::Mutex<ClientMap>,
}

impl DormakabaInventory {
    /// At most `rate` probes per second per connection.
    pub fn new(rate: f64) -> Self {
        DormakabaInventory {
            rate: rate.max(0.1),
            clients: Default::default(),
        }
    }

    fn client(
        &self,
        conn: &Connection,
        s: &DormakabaSettings,
    ) -> Result<(Arc<SoapClient>, Arc<RateLimiter>), InventoryError> {
        let key = (conn.tenant.clone(), conn.name.clone());
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, c, l)) = map.get(&key)
            && *v == conn.version
        {
            return Ok((c.clone(), l.clone()));
        }
        let c = Arc::new(SoapClient::new(SoapConfig::from_settings(s)).map_err(|e| {
            InventoryError::Config {
                vendor: VENDOR,
                message: e.to_string(),
            }
        })?);
        let burst = u32::try_from(PROBE_CONCURRENCY).unwrap_or(4);
        let l = Arc::new(RateLimiter::new(self.rate, burst));
        map.insert(key, (conn.version, c.clone(), l.clone()));
        Ok((c, l))
    }
}

fn settings(conn: &Connection) -> Result<&DormakabaSettings, InventoryError> {
    match &conn.settings {
        VendorSettings::Dormakaba(s) => Ok(s),
        _ => Err(InventoryError::Config {
            vendor: VENDOR,
            message: "not a dormakaba connection".into(),
        }),
    }
}

impl Inventory for DormakabaInventory {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn kinds(&self) -> &'static [EventKind] {
        &[EventKind::Reservation]
    }

    /// Nothing can be listed (see the module docs); the probe does the comparison.
    fn list_ours<'a>(
        &'a self,
        _conn: &'a Connection,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>> {
        futures::stream::empty().boxed()
    }

    fn desired(
        &self,
        _conn: &Connection,
        _event: &Event,
        _now: DateTime<Utc>,
    ) -> Result<Vec<DesiredObject>, String> {
        Ok(Vec::new())
    }

    fn prober(&self) -> Option<&dyn Prober> {
        Some(self)
    }
}

/// What one reservation comes to, before or after its probe.
enum Verdict {
    /// Not served by this connection.
    Skip,
    InSync,
    Failed(String),
    Apply(Box<Event>, Repair),
    Remove {
        key: String,
        rid: String,
    },
}

/// A reservation's judgement: final, or a probe whose answer decides.
enum Job {
    Done(Verdict),
    Probe(ProbeJob),
}

/// `ExtendCheckOut(rid, check_out)`; success → `on_ok`, booking gone → `on_gone`.
struct ProbeJob {
    rid: String,
    check_out: DateTime<chrono_tz::Tz>,
    on_ok: Verdict,
    on_gone: Verdict,
}

/// Reservations in scope, plus any whose record says our booking is live (so stale access is
/// found whatever the scope), with the worker's record.
const ROWS: &str = "SELECT k.booking_key, k.kind, k.site, k.revision, k.source, k.event_id,
        k.payload::text AS payload, k.updated_at, b.vendor_ids::text AS record
   FROM bookings k
   LEFT JOIN bindings b ON b.tenant_id = k.tenant_id AND b.vendor = 'dormakaba'
                       AND b.kind = 'reservation' AND b.booking_key = k.booking_key
  WHERE k.tenant_id = $1 AND k.kind = 'reservation'
    AND ($2 OR ((k.ends_at IS NULL OR k.ends_at > $3) AND (k.starts_at IS NULL OR k.starts_at <= $4))
         OR (b.vendor_ids->>'booked' = 'true'
             AND coalesce(b.vendor_ids->>'checked_out', 'false') <> 'true'))";

fn judge(
    conn: &Connection,
    s: &DormakabaSettings,
    row: &sqlx::postgres::PgRow,
    now: DateTime<Utc>,
) -> Job {
    let fail = |m: String| Job::Done(Verdict::Failed(m));
    let (key, site): (String, String) = match (row.try_get("booking_key"), row.try_get("site")) {
        (Ok(k), Ok(s)) => (k, s),
        (Err(e), _) | (_, Err(e)) => return fail(e.to_string()),
    };
    if !conn.serves_site(&site) {
        return Job::Done(Verdict::Skip);
    }
    let ev = match engine::event_from_row(&conn.tenant, "reservation", row) {
        Ok(ev) => ev,
        Err(m) => return fail(format!("{key}: {m}")),
    };
    let EventBody::Reservation(r) = &ev.body else {
        return fail(format!("{key}: not a reservation"));
    };
    let d = match plan::desired(&conn.tenant, &key, r, s) {
        Ok(d) => d,
        Err(e) => return fail(format!("{key}: {e}")),
    };
    let rec = match row.try_get::<Option<String>, _>("record") {
        Ok(Some(text)) => serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| LockRecord::from_json(&v))
            .unwrap_or_default(),
        Ok(None) => LockRecord::default(),
        Err(e) => return fail(format!("{key}: {e}")),
    };
    let rid = rec
        .reservation_id
        .clone()
        .unwrap_or_else(|| d.reservation_id.clone());
    match plan::sync_check(&d, &rec, now) {
        SyncCheck::InSync => Job::Done(Verdict::InSync),
        SyncCheck::Unrepairable(m) => fail(format!("{key}: {m}")),
        SyncCheck::Apply { create } => {
            let repair = if create {
                Repair::Create
            } else {
                Repair::Update
            };
            Job::Done(Verdict::Apply(Box::new(ev), repair))
        }
        SyncCheck::Reassert(check_out) => Job::Probe(ProbeJob {
            on_ok: Verdict::InSync,
            on_gone: Verdict::Apply(Box::new(ev), Repair::Create),
            rid,
            check_out,
        }),
        SyncCheck::Remove { probe: Some(co) } => Job::Probe(ProbeJob {
            on_ok: Verdict::Remove {
                key,
                rid: rid.clone(),
            },
            on_gone: Verdict::InSync,
            rid,
            check_out: co,
        }),
        SyncCheck::Remove { probe: None } => Job::Done(Verdict::Remove { key, rid }),
    }
}

/// Runs a probe: `ExtendCheckOut(rid, check_out)`, retried a few times on transient faults.
async fn probe(client: &SoapClient, limiter: &RateLimiter, job: ProbeJob) -> Verdict {
    let ProbeJob {
        rid,
        check_out,
        on_ok,
        on_gone,
    } = job;
    let mut attempt = 0;
    loop {
        limiter.acquire().await;
        match client.extend_check_out(&rid, &check_out).await {
            Ok(_) => return on_ok,
            Err(e)
                if e.fault_code() == Some("ReservationCheckedOut")
                    && matches!(on_gone, Verdict::Apply(..)) =>
            {
                return Verdict::Failed(format!(
                    "{rid}: checked out at the lock system by hand; the ReservationID cannot be reused, cut a new key at the front desk"
                ));
            }
            Err(e) if plan::is_gone(&e) => return on_gone,
            Err(e) if e.class() == ErrorClass::Transient && attempt + 1 < PROBE_ATTEMPTS => {
                attempt += 1;
                let wait = e
                    .retry_after()
                    .unwrap_or(std::time::Duration::from_millis(250 << attempt));
                tracing::warn!(error = %e, ?wait, "dormakaba probe failed; retrying");
                tokio::time::sleep(wait.min(std::time::Duration::from_secs(10))).await;
            }
            Err(e) => return Verdict::Failed(probe_error(&rid, &e)),
        }
    }
}

fn probe_error(rid: &str, e: &SoapError) -> String {
    format!("{rid}: probe: {e}")
}

impl Prober for DormakabaInventory {
    fn sync<'a>(
        &'a self,
        pool: &'a PgPool,
        bus: &'a Bus,
        conn: &'a Connection,
        run: &'a SyncRun,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Outcome, ReconcileError>> {
        Box::pin(async move {
            let t0 = Instant::now();
            let s = settings(conn)?;
            let (client, limiter) = self.client(conn, s)?;
            let (full, horizon) = match run.scope {
                Scope::Full => (true, now),
                Scope::Active => (false, now),
                Scope::Upcoming(d) => (false, now + chrono::Duration::days(i64::from(d))),
            };
            let mut out = Outcome::default();
            let mut counts = Counts::default();
            let mut publisher = Publisher::new(bus, run, conn, VENDOR);
            let mut probes = 0usize;
            let mut last_beat = Instant::now();
            {
                let rows = sqlx::query(ROWS)
                    .bind(&conn.tenant)
                    .bind(full)
                    .bind(now)
                    .bind(horizon)
                    .fetch(pool);
                let (client, limiter) = (&client, &limiter);
                let mut verdicts = rows
                    .map(|row| match row {
                        Ok(row) => Ok(judge(conn, s, &row, now)),
                        Err(e) => Err(e),
                    })
                    .map(|job| async move {
                        match job {
                            Ok(Job::Done(v)) => Ok((v, false)),
                            Ok(Job::Probe(p)) => Ok((probe(client, limiter, p).await, true)),
                            Err(e) => Err(e),
                        }
                    })
                    .buffer_unordered(PROBE_CONCURRENCY);
                while let Some(v) = verdicts.next().await {
                    let (verdict, probed) = v?;
                    probes += usize::from(probed);
                    if !matches!(verdict, Verdict::Skip) {
                        counts.checked += 1;
                    }
                    match verdict {
                        Verdict::Skip => {}
                        Verdict::InSync => counts.in_sync += 1,
                        Verdict::Failed(m) => {
                            counts.failed += 1;
                            if out.problems.len() < 5 {
                                out.problems.push(m);
                            }
                        }
                        Verdict::Apply(ev, repair) => {
                            let reason = if matches!(repair, Repair::Create) {
                                "missing"
                            } else {
                                "wrong"
                            };
                            publisher.apply(&mut counts, repair, &ev, reason).await;
                        }
                        Verdict::Remove { key, rid } => {
                            publisher
                                .remove(&mut counts, EventKind::Reservation, &key, &rid, &rid)
                                .await;
                        }
                    }
                    if last_beat.elapsed() >= std::time::Duration::from_secs(2) {
                        store::heartbeat(pool, run.id, &counts).await?;
                        last_beat = Instant::now();
                    }
                }
            }
            publisher.drain(&mut counts).await;
            out.counts = counts;
            out.vendor_objects = probes;
            out.compare_time = t0.elapsed();
            tracing::info!(
                run = run.id,
                probes,
                secs = out.compare_time.as_secs_f64(),
                "dormakaba probe finished"
            );
            Ok(out)
        })
    }
}
