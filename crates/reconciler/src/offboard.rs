//! Offboarding one connection (issue 20 item 3): the desired side is empty, so everything of
//! ours the vendor lists for the sites this connection owns is removed through the worker
//! (SYNC `remove`, reason `offboard`). The run then lists again until nothing is left — the
//! vendor's own list is the proof, not the commands sent — re-sending the removals now and
//! then (a worker whose cache still saw the connection active may have refused one). Only
//! then is the connection deleted or disabled; a run that runs out of time fails with what is
//! left, and the connection stays offboarding for a retry.
//!
//! Vendors that cannot list what they hold (probers) are refused: nothing could prove that
//! their access is gone.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use accesshub_bus::Bus;
use accesshub_connections::{Connection, offboard::owns_site};
use accesshub_domain::{Classify as _, ErrorClass, EventKind, subjects};
use accesshub_inventory::{Inventory, VendorObject};
use futures::TryStreamExt as _;
use sqlx::PgPool;

use crate::{
    ReconcileError,
    engine::{Outcome, Publisher, RemoveTarget, records_for},
    model::{Counts, SyncRun},
    store,
};

/// How long an offboard run keeps removing and re-listing, and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct OffboardTiming {
    /// Give up (the run fails, the connection stays offboarding) after this long.
    pub timeout: Duration,
    /// Pause between listings.
    pub poll: Duration,
    /// Send the removals of what is still listed again after this long.
    pub resend_after: Duration,
    /// An empty listing proves nothing before this long after the run began: a worker whose
    /// connection cache missed the change notification still sees the connection active for
    /// up to its cache TTL and may create access meanwhile.
    pub settle: Duration,
}

impl Default for OffboardTiming {
    fn default() -> Self {
        OffboardTiming {
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            resend_after: Duration::from_secs(20),
            settle: accesshub_connections::DEFAULT_TTL + Duration::from_secs(2),
        }
    }
}

/// The objects of ours at the vendor whose access `conn` created: their booking's site is one
/// `conn` owns among `siblings` (the tenant's connections to this vendor); an object whose
/// booking is unknown belongs to a connection serving every site, or to the only one.
async fn owned_objects(
    pool: &PgPool,
    inv: &dyn Inventory,
    conn: &Connection,
    siblings: &[Connection],
) -> Result<Vec<VendorObject>, ReconcileError> {
    let records = records_for(pool, inv, &conn.tenant).await?;
    let listed: Vec<VendorObject> = inv.list_ours(conn, &records).try_collect().await?;
    let keys: Vec<&str> = listed.iter().map(|o| o.booking_key.as_str()).collect();
    let kinds: Vec<&str> = inv.kinds().iter().map(|k| k.as_str()).collect();
    let sites: std::collections::HashMap<String, String> = sqlx::query_as(
        "SELECT booking_key, site FROM bookings
          WHERE tenant_id = $1 AND kind = ANY($2) AND booking_key = ANY($3)",
    )
    .bind(&conn.tenant)
    .bind(&kinds)
    .bind(&keys)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let alone = siblings.iter().all(|c| c.name == conn.name);
    Ok(listed
        .into_iter()
        .filter(|o| match sites.get(&o.booking_key) {
            Some(site) => owns_site(siblings, conn, site),
            None => alone || conn.sites.is_empty(),
        })
        .collect())
}

/// Whether a worker applies one of the tenant's bookings of `kinds` at `vendor` right now: it
/// holds that booking's lock (the key workers lock, see `worker_runtime::bindings`). An apply
/// that began before the workers saw the connection offboarding may create access after a
/// listing came back empty, so a listing is proof only when taken after such applies ended.
async fn applies_in_flight(
    pool: &PgPool,
    tenant: &str,
    vendor: &str,
    kinds: &[&str],
) -> Result<bool, ReconcileError> {
    Ok(sqlx::query_scalar(
        "WITH held AS (
           SELECT (l.classid::bigint << 32) | l.objid::bigint AS h FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
         SELECT EXISTS (
           SELECT 1 FROM bookings b JOIN held
             ON held.h = hashtextextended('binding' || chr(31) || b.tenant_id || chr(31) || $2
                                           || chr(31) || b.kind || chr(31) || b.booking_key, 0)
            WHERE b.tenant_id = $1 AND b.kind = ANY($3))",
    )
    .bind(tenant)
    .bind(vendor)
    .bind(kinds)
    .fetch_one(pool)
    .await?)
}

/// Removes everything of ours `conn` created at the vendor and waits until a listing finds
/// nothing. The listing that ends the run is taken after `timing.settle` and after no apply
/// of the tenant's bookings was in flight ([`applies_in_flight`]): every apply that starts
/// later sees the connection offboarding and creates nothing. `checked` counts the objects first found, `removed` the objects removals were sent
/// for (each once, however often resent); a publish that fails is simply sent again in the
/// next round, the listing decides.
pub async fn offboard_connection(
    pool: &PgPool,
    bus: &Bus,
    inv: &dyn Inventory,
    conn: &Connection,
    siblings: &[Connection],
    run: &SyncRun,
    timing: OffboardTiming,
) -> Result<Outcome, ReconcileError> {
    if inv.prober().is_some() {
        return Err(ReconcileError::invalid(
            "offboard",
            format!(
                "{} cannot list what it holds, so no run can prove its access is gone: check the guests out at the lock system, then delete with --keep-access",
                inv.vendor()
            ),
        ));
    }
    let t0 = Instant::now();
    let kind = inv
        .kinds()
        .first()
        .copied()
        .unwrap_or(EventKind::Reservation);
    let mut out = Outcome::default();
    let mut counts = Counts::default();
    let mut publisher = Publisher::new(bus, run, conn, inv.vendor());
    // Publish tallies; the run's counts come from the listings.
    let mut published = Counts::default();
    let mut sent: HashSet<String> = HashSet::new();
    let mut last_send: Option<Instant> = None;
    let mut round = 0u32;
    let kinds: Vec<&str> = inv.kinds().iter().map(|k| k.as_str()).collect();
    let mut listed_once = false;
    loop {
        // Asked before the listing: an apply that ends between the two has its access listed.
        let looked = async {
            let quiet = t0.elapsed() >= timing.settle
                && !applies_in_flight(pool, &conn.tenant, inv.vendor(), &kinds).await?;
            Ok::<_, ReconcileError>((quiet, owned_objects(pool, inv, conn, siblings).await?))
        }
        .await;
        let (quiet, left) = match looked {
            Ok(l) => l,
            // A vendor (or database) hiccup is a reason to look again, not to give up: the run
            // keeps listing until its timeout, and only the listing decides. Failing here
            // left the connection offboarding until an operator retried (convergence seeds
            // tapkey 94, 573, 707: an injected 500 on the token call).
            Err(e) if e.class() == ErrorClass::Transient && t0.elapsed() < timing.timeout => {
                tracing::warn!(run = run.id, vendor = inv.vendor(), error = %e,
                    "offboard: listing the vendor failed; looking again");
                let pause = e.retry_after().unwrap_or(timing.poll).max(timing.poll);
                tokio::time::sleep(pause).await;
                round += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if !listed_once {
            listed_once = true;
            counts.checked = i64::try_from(left.len()).unwrap_or(i64::MAX);
            out.vendor_objects = left.len();
            out.list_time = t0.elapsed();
        }
        if left.is_empty() && quiet {
            break;
        }
        if t0.elapsed() >= timing.timeout {
            let sample = if left.is_empty() {
                "none listed, but the tenant's bookings were still being applied".to_owned()
            } else {
                left.iter()
                    .take(3)
                    .map(|o| o.reference.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            publisher.drain(&mut published).await;
            counts.removed = i64::try_from(sent.len()).unwrap_or(i64::MAX);
            store::heartbeat(pool, run.id, &counts).await?;
            return Err(ReconcileError::OffboardIncomplete {
                remaining: left.len(),
                waited_secs: t0.elapsed().as_secs(),
                sample,
            });
        }
        if !left.is_empty() && last_send.is_none_or(|t| t.elapsed() >= timing.resend_after) {
            for o in &left {
                sent.insert(o.vendor_id.clone());
                let suffix = format!("offboard-{round}-{}", subjects::token(&o.vendor_id));
                let target = RemoveTarget {
                    kind,
                    booking_key: &o.booking_key,
                    reference: &o.reference,
                    vendor_id: &o.vendor_id,
                };
                publisher
                    .remove_as(&mut published, target, "offboard", &suffix)
                    .await;
            }
            publisher.drain(&mut published).await;
            counts.removed = i64::try_from(sent.len()).unwrap_or(i64::MAX);
            last_send = Some(Instant::now());
        }
        store::heartbeat(pool, run.id, &counts).await?;
        tokio::time::sleep(timing.poll).await;
        round += 1;
    }
    out.counts = counts;
    out.compare_time = t0.elapsed();
    tracing::info!(
        run = run.id,
        vendor = inv.vendor(),
        removed = counts.removed,
        rounds = round,
        secs = out.compare_time.as_secs_f64(),
        "offboard: nothing of ours left at the vendor"
    );
    Ok(out)
}
