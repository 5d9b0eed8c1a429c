//! The probing sync, for vendors that cannot list what they hold (see
//! [`accesshub_inventory::Prober`]): stream the bookings of the run's scope — plus every
//! booking whose worker record says access is still live at the vendor, so stale access is
//! found whatever the scope — with the record, let the vendor's prober judge each one (a few
//! probes in flight), and publish the repairs like a listing sync.

use std::time::Instant;

use accesshub_bus::Bus;
use accesshub_connections::Connection;
use accesshub_inventory::{Inventory, Judged, Prober, Verdict};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sqlx::{PgPool, Row as _, postgres::PgRow};

use crate::{
    ReconcileError,
    engine::{HEARTBEAT_EVERY, Outcome, Publisher, event_from_row, scope_bounds},
    model::{Counts, SyncRun},
    store,
};

/// Bookings of the vendor's kinds in scope, and those out of scope with a record (the prober
/// decides whether that record is live), each with the worker's record.
const ROWS: &str = "SELECT k.booking_key, k.kind, k.site, k.revision, k.source, k.event_id,
        k.payload::text AS payload, k.updated_at, b.vendor_ids::text AS record,
        ($3 OR ((k.ends_at IS NULL OR k.ends_at > $4)
                AND (k.starts_at IS NULL OR k.starts_at <= $5))) AS in_scope
   FROM bookings k
   LEFT JOIN bindings b ON b.tenant_id = k.tenant_id AND b.vendor = $2
                       AND b.kind = k.kind AND b.booking_key = k.booking_key
  WHERE k.tenant_id = $1 AND k.kind = ANY($6)
    AND ($3 OR ((k.ends_at IS NULL OR k.ends_at > $4)
                AND (k.starts_at IS NULL OR k.starts_at <= $5))
         OR b.booking_key IS NOT NULL)";

/// One row's fate before the probe.
enum Row {
    /// Not this connection's site, or out of scope without live access: not judged.
    Skip,
    /// Unreadable: counted as failed.
    Failed(String),
    /// To be judged.
    Judge(Box<accesshub_domain::Event>, Option<serde_json::Value>),
}

fn read_row(conn: &Connection, prober: &dyn Prober, row: &PgRow) -> Row {
    let key: String = match row.try_get("booking_key") {
        Ok(k) => k,
        Err(e) => return Row::Failed(e.to_string()),
    };
    let fields = (
        row.try_get::<String, _>("site"),
        row.try_get::<String, _>("kind"),
        row.try_get::<bool, _>("in_scope"),
        row.try_get::<Option<String>, _>("record"),
    );
    let (site, kind, in_scope, record) = match fields {
        (Ok(s), Ok(k), Ok(i), Ok(r)) => (s, k, i, r),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return Row::Failed(format!("{key}: {e}"));
        }
    };
    if !conn.serves_site(&site) {
        return Row::Skip;
    }
    // A record that does not parse is judged as no record: the prober then falls back to
    // the booking's own identifiers.
    let record = record.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if !in_scope && !record.as_ref().is_some_and(|r| prober.record_is_live(r)) {
        return Row::Skip;
    }
    match event_from_row(&conn.tenant, &kind, row) {
        Ok(ev) => Row::Judge(Box::new(ev), record),
        Err(m) => Row::Failed(format!("{key}: {m}")),
    }
}

/// Compares one connection of a probing vendor and publishes the repairs.
pub async fn probe_connection(
    pool: &PgPool,
    bus: &Bus,
    inv: &dyn Inventory,
    prober: &dyn Prober,
    conn: &Connection,
    run: &SyncRun,
    now: DateTime<Utc>,
) -> Result<Outcome, ReconcileError> {
    let t0 = Instant::now();
    let (full, horizon) = scope_bounds(run.scope, now);
    let kinds: Vec<String> = inv.kinds().iter().map(|k| k.as_str().to_owned()).collect();
    let mut out = Outcome::default();
    let mut counts = Counts::default();
    let mut publisher = Publisher::new(bus, run, conn, inv.vendor());
    let mut probes = 0usize;
    let mut last_beat = Instant::now();
    {
        let rows = sqlx::query(ROWS)
            .bind(&conn.tenant)
            .bind(inv.vendor())
            .bind(full)
            .bind(now)
            .bind(horizon)
            .bind(&kinds)
            .fetch(pool);
        let mut judged = rows
            .map(|row| row.map(|r| read_row(conn, prober, &r)))
            .map(|row| async move {
                Ok::<_, sqlx::Error>(match row? {
                    Row::Skip => None,
                    Row::Failed(m) => Some((None, Judged::decided(Verdict::Failed(m)))),
                    Row::Judge(ev, record) => {
                        let j = prober.judge(conn, &ev, record.as_ref(), now).await;
                        Some((Some(ev), j))
                    }
                })
            })
            .buffer_unordered(prober.concurrency().max(1));
        while let Some(j) = judged.next().await {
            let Some((ev, j)) = j? else { continue };
            probes += usize::from(j.probed);
            counts.checked += 1;
            match (j.verdict, ev) {
                (Verdict::InSync, _) => counts.in_sync += 1,
                (Verdict::Failed(m), _) => {
                    counts.failed += 1;
                    if out.problems.len() < 5 {
                        out.problems.push(m);
                    }
                }
                (Verdict::Apply(repair), Some(ev)) => {
                    let reason = match repair {
                        accesshub_inventory::Repair::Create => "missing",
                        accesshub_inventory::Repair::Update => "wrong",
                    };
                    publisher
                        .apply(&mut counts, repair.into(), &ev, reason)
                        .await;
                }
                (
                    Verdict::Remove {
                        reference,
                        vendor_id,
                    },
                    Some(ev),
                ) => {
                    publisher
                        .remove(
                            &mut counts,
                            ev.kind(),
                            &ev.booking_key,
                            &reference,
                            &vendor_id,
                        )
                        .await;
                }
                // A repair needs the booking: never reached (failed rows carry no event).
                (_, None) => counts.failed += 1,
            }
            if last_beat.elapsed() >= HEARTBEAT_EVERY {
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
        vendor = inv.vendor(),
        probes,
        secs = out.compare_time.as_secs_f64(),
        "probing sync finished"
    );
    Ok(out)
}
