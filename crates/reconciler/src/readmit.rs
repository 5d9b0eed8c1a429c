//! Re-admission of ignored events (issues 20 and 21). booking-ingest ignores an event no
//! connection acts on — access control off: a disabled connection, an administration,
//! facility or pass type left unmapped — answering 2xx `ignored`, but it keeps the booking's
//! latest normalized event in `ingest_ignored` (`booking_ingest::scope::record_ignored`).
//! Every run of a connection (scheduled, `accessctl sync`, admin API, console) first stores
//! the recorded events of its tenant that the connection now acts on, judged by ingest's own
//! rule ([`Survey`]), through the same durable path as a pulled record (revision rules
//! apply; the booking keyed by source as ingest keys it), and deletes their rows. Switching
//! access control on therefore brings back bookings no pull could (connecX has no API;
//! reservations beyond a pull's window), and a booking cancelled while it was ignored comes
//! back cancelled: nothing is created for it.

use accesshub_connections::Connection;
use accesshub_domain::{Event, EventKind, Source};
use booking_ingest::{
    AnswerKind,
    scope::{Survey, vendors_for},
};
use futures::{StreamExt as _, stream};
use serde::Deserialize as _;
use sqlx::PgPool;

use crate::{
    error::ReconcileError,
    pull::{Pulled, Storer},
};

/// Re-admitted events being committed at once (the committer batches them).
const CONCURRENCY: usize = 64;

/// One recorded ignored event.
#[derive(sqlx::FromRow)]
struct Row {
    source: String,
    kind: String,
    booking_key: String,
    event_id: String,
    event: serde_json::Value,
}

/// The kinds of event `conn`'s vendor acts on (ingest's [`vendors_for`], read backwards).
fn kinds_of(conn: &Connection) -> Vec<&'static str> {
    [EventKind::Reservation, EventKind::Facility, EventKind::Pass]
        .into_iter()
        .filter(|k| vendors_for(*k).contains(&conn.vendor()))
        .map(EventKind::as_str)
        .collect()
}

/// Re-admits the ignored events of `conn`'s tenant that `conn` now acts on (see the module
/// docs): counted as `readmitted` when stored as a new state; rows whose event was stored
/// (or was already superseded by the stored booking) are deleted. A row that cannot be
/// read or stored is a problem of the run and stays for the next one.
pub async fn readmit(
    pool: &PgPool,
    storer: &Storer,
    conn: &Connection,
) -> Result<Pulled, ReconcileError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT source, kind, booking_key, event->>'id' AS event_id, event
           FROM ingest_ignored
          WHERE tenant_id = $1 AND kind = ANY($2) AND event IS NOT NULL
            AND (cardinality($3::text[]) = 0 OR site = ANY($3))
          ORDER BY first_at",
    )
    .bind(&conn.tenant)
    .bind(kinds_of(conn))
    .bind(&conn.sites)
    .fetch_all(pool)
    .await?;
    let mut out = Pulled::default();
    let mut due = Vec::new();
    for row in rows {
        let parsed = Event::deserialize(&row.event)
            .map_err(|e| e.to_string())
            .and_then(|ev| {
                row.source
                    .parse::<Source>()
                    .map(|s| (s, ev))
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok((source, ev)) if Survey::of(&ev, std::slice::from_ref(conn)).acts => {
                due.push((row, source, ev));
            }
            Ok(_) => {}
            Err(e) => out.problem(format!(
                "ignored {} {}: unreadable: {e}",
                row.kind, row.booking_key
            )),
        }
    }
    let mut stores = stream::iter(due)
        .map(|(row, source, ev)| async move {
            let stored = storer.readmit(source, ev).await;
            (row, stored)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((row, stored)) = stores.next().await {
        match stored {
            Ok(kind) => {
                if kind == AnswerKind::Accepted {
                    out.counts.readmitted += 1;
                }
                // Only the event just stored: a newer one recorded meanwhile waits for the
                // next run.
                sqlx::query(
                    "DELETE FROM ingest_ignored
                      WHERE tenant_id = $1 AND source = $2 AND kind = $3 AND booking_key = $4
                        AND event->>'id' = $5",
                )
                .bind(&conn.tenant)
                .bind(&row.source)
                .bind(&row.kind)
                .bind(&row.booking_key)
                .bind(&row.event_id)
                .execute(pool)
                .await?;
            }
            Err(e) => out.problem(format!(
                "ignored {} {}: re-admit: {e}",
                row.kind, row.booking_key
            )),
        }
    }
    Ok(out)
}
