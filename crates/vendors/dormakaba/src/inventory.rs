//! dormakaba (Saflok Messenger PMS WS, Ambiance): a **re-assertion probe** instead of a list.
//!
//! The lock system's PMS interface has no list or read operation, so the vendor side cannot be
//! listed. What it does have are idempotent operations that fail with a fault when the
//! booking is gone. A sync therefore walks the desired side — the reservations in Postgres
//! joined with dormakaba-worker's binding records (what the worker set at the lock system), as
//! the reconciler's probing engine streams them — and, per reservation, applies the worker's own
//! rules ([`desired::sync_check`]):
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
//! | no longer wanted, an attempt was killed during a `CreateNewBooking` / mobile key it never recorded (record "in doubt") | as for a live record: probe with the desired check-out, then SYNC `remove` (cancels the keys that may have been sent, checks out; "already gone" is success) | removed, or in sync when nothing is there |
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

use std::{sync::Arc, time::Duration};

use accesshub_connections::{Connection, DormakabaSettings};
use accesshub_domain::{Event, EventBody, EventKind};
use accesshub_inventory::{
    DesiredObject, Inventory, InventoryError, Judged, Prober, Repair, VendorObject, Verdict,
};
use accesshub_retry::{Backoff, RetryPolicy};
use chrono::{DateTime, Utc};
use futures::{FutureExt as _, StreamExt as _, future::BoxFuture, stream::BoxStream};
use vendor_http::RateLimiter;
use worker_runtime::ClientCache;

use crate::{
    client::{SoapClient, SoapConfig, SoapError},
    desired::{self, LockRecord, SyncCheck},
};

const VENDOR: &str = "dormakaba";
/// Default probes per second per connection.
pub const DEFAULT_RATE: f64 = 5.0;
/// Probes in flight at once per run.
pub const PROBE_CONCURRENCY: usize = 4;
/// Probe attempts on transient faults (busy lock system, unreachable).
const PROBE_ATTEMPTS: u32 = 3;
/// The probe's retries: jittered waits of at most 0.5 s then 1 s, a lock system's
/// `Retry-After` honoured up to 10 s, so one busy encoder does not fail a run but a dead lock
/// server cannot stall it.
const PROBE_RETRY: RetryPolicy = RetryPolicy::limited(
    Backoff::new(Duration::from_millis(500), Duration::from_secs(1)),
    PROBE_ATTEMPTS - 1,
)
.with_retry_after_max(Duration::from_secs(10));

/// The dormakaba sync: no listing, a re-assertion probe per reservation (module docs).
#[derive(Debug)]
pub struct DormakabaInventory {
    rate: f64,
    /// The probes' client per connection, with its own rate limit (rebuilt when the
    /// connection changes).
    clients: ClientCache<SoapClient>,
}

impl DormakabaInventory {
    /// At most `rate` probes per second per connection.
    pub fn new(rate: f64) -> Self {
        DormakabaInventory {
            rate: rate.max(0.1),
            clients: ClientCache::new(),
        }
    }

    async fn client(
        &self,
        conn: &Connection,
        s: &DormakabaSettings,
    ) -> Result<Arc<SoapClient>, InventoryError> {
        self.clients
            .get_or_try_init(conn, || {
                let burst = u32::try_from(PROBE_CONCURRENCY).unwrap_or(4);
                let limiter = Arc::new(RateLimiter::new(self.rate, burst));
                SoapClient::new(SoapConfig::from_settings(s))
                    .map(|c| c.with_rate_limit(limiter))
                    .map_err(|e| InventoryError::Config {
                        vendor: VENDOR,
                        message: e.to_string(),
                    })
            })
            .await
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
        _records: &'a accesshub_inventory::Records,
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

/// The worker's rules ([`desired::sync_check`]) on the desired state and the record.
fn plan_job(
    conn: &Connection,
    s: &DormakabaSettings,
    event: &Event,
    record: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> Job {
    let key = &event.booking_key;
    let fail = |m: String| Job::Done(Verdict::Failed(format!("{key}: {m}")));
    let EventBody::Reservation(r) = &event.body else {
        return fail("not a reservation".into());
    };
    let rec = record.map(LockRecord::from_json).unwrap_or_default();
    let d = match desired::desired(&conn.tenant, key, r, s) {
        Ok(d) => desired::keep_desk_mobile_key(d, &rec),
        Err(e) => return fail(e.to_string()),
    };
    let rid = rec
        .reservation_id
        .clone()
        .unwrap_or_else(|| d.reservation_id.clone());
    let remove = |rid: &str| Verdict::Remove {
        reference: rid.to_owned(),
        vendor_id: rid.to_owned(),
    };
    match desired::sync_check(&d, &rec, now) {
        SyncCheck::InSync => Job::Done(Verdict::InSync),
        SyncCheck::Unrepairable(m) => fail(m),
        SyncCheck::Apply { create } => Job::Done(Verdict::Apply(if create {
            Repair::Create
        } else {
            Repair::Update
        })),
        SyncCheck::Reassert(check_out) => Job::Probe(ProbeJob {
            on_ok: Verdict::InSync,
            on_gone: Verdict::Apply(Repair::Create),
            rid,
            check_out,
        }),
        SyncCheck::Remove { probe: Some(co) } => Job::Probe(ProbeJob {
            on_ok: remove(&rid),
            on_gone: Verdict::InSync,
            rid,
            check_out: co,
        }),
        SyncCheck::Remove { probe: None } => Job::Done(remove(&rid)),
    }
}

/// Runs a probe: `ExtendCheckOut(rid, check_out)`, retried a few times on transient faults.
async fn probe(client: &SoapClient, job: ProbeJob) -> Verdict {
    let ProbeJob {
        rid,
        check_out,
        on_ok,
        on_gone,
    } = job;
    let mut attempts = PROBE_RETRY.attempts();
    loop {
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
            Err(e) if desired::is_gone(&e) => return on_gone,
            Err(e) => match attempts.next_wait_after(&e) {
                Some(wait) => {
                    tracing::warn!(error = %e, ?wait, "dormakaba probe failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                None => return Verdict::Failed(probe_error(&rid, &e)),
            },
        }
    }
}

fn probe_error(rid: &str, e: &SoapError) -> String {
    format!("{rid}: probe: {e}")
}

impl Prober for DormakabaInventory {
    fn concurrency(&self) -> usize {
        PROBE_CONCURRENCY
    }

    /// Our lock-system booking exists and the guest is not checked out — or an attempt may
    /// have created it without recording so ([`LockRecord::maybe_live`]).
    fn record_is_live(&self, record: &serde_json::Value) -> bool {
        LockRecord::from_json(record).maybe_live()
    }

    fn judge<'a>(
        &'a self,
        conn: &'a Connection,
        event: &'a Event,
        record: Option<&'a serde_json::Value>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Judged> {
        async move {
            let s = match conn.settings.dormakaba() {
                Ok(s) => s,
                Err(e) => return Judged::decided(Verdict::Failed(e.to_string())),
            };
            match plan_job(conn, s, event, record, now) {
                Job::Done(v) => Judged::decided(v),
                Job::Probe(p) => match self.client(conn, s).await {
                    Ok(client) => Judged::probed(probe(&client, p).await),
                    Err(e) => Judged::decided(Verdict::Failed(e.to_string())),
                },
            }
        }
        .boxed()
    }
}
