//! The `dlq_replays` table: the record of who replayed what, read back by `show` and by the
//! loop protection.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};

/// One recorded replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayRecord {
    /// Row id.
    pub id: i64,
    /// DLQ sequence of the replayed entry.
    pub dlq_seq: u64,
    /// Event id, when known.
    pub event_id: Option<String>,
    /// Worker the entry came from.
    pub worker: String,
    /// Subject it was republished on.
    pub original_subject: String,
    /// Fresh Nats-Msg-Id (None for a dry run).
    pub new_msg_id: Option<String>,
    /// Who replayed it.
    pub replayed_by: String,
    /// When.
    pub replayed_at: DateTime<Utc>,
    /// Whether nothing was published.
    pub dry_run: bool,
}

/// A replay about to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct NewRecord {
    pub dlq_seq: u64,
    pub event_id: Option<String>,
    pub worker: String,
    pub original_subject: String,
    pub new_msg_id: Option<String>,
}

/// Writes records in one statement (a 100,000-entry replay must not pay a round trip each).
pub(crate) async fn insert(
    pool: &PgPool,
    dlq_stream: &str,
    replayed_by: &str,
    dry_run: bool,
    rows: &[NewRecord],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.dlq_seq as i64).collect();
    let events: Vec<Option<String>> = rows.iter().map(|r| r.event_id.clone()).collect();
    let workers: Vec<String> = rows.iter().map(|r| r.worker.clone()).collect();
    let subjects: Vec<String> = rows.iter().map(|r| r.original_subject.clone()).collect();
    let ids: Vec<Option<String>> = rows.iter().map(|r| r.new_msg_id.clone()).collect();
    sqlx::query(
        "INSERT INTO dlq_replays
           (dlq_stream, dlq_seq, event_id, worker, original_subject, new_msg_id, replayed_by, dry_run)
         SELECT $1, s, e, w, o, m, $7, $8
           FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(s, e, w, o, m)",
    )
    .bind(dlq_stream)
    .bind(&seqs)
    .bind(&events)
    .bind(&workers)
    .bind(&subjects)
    .bind(&ids)
    .bind(replayed_by)
    .bind(dry_run)
    .execute(pool)
    .await?;
    Ok(())
}

fn record_of(r: &sqlx::postgres::PgRow) -> Result<ReplayRecord, sqlx::Error> {
    Ok(ReplayRecord {
        id: r.try_get("id")?,
        dlq_seq: r.try_get::<i64, _>("dlq_seq")?.max(0) as u64,
        event_id: r.try_get("event_id")?,
        worker: r.try_get("worker")?,
        original_subject: r.try_get("original_subject")?,
        new_msg_id: r.try_get("new_msg_id")?,
        replayed_by: r.try_get("replayed_by")?,
        replayed_at: r.try_get("replayed_at")?,
        dry_run: r.try_get("dry_run")?,
    })
}

/// Earlier replays of the same event (or, without an event id, of the same entry), oldest first.
pub(crate) async fn history(
    pool: &PgPool,
    dlq_stream: &str,
    dlq_seq: u64,
    event_id: Option<&str>,
) -> Result<Vec<ReplayRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, dlq_seq, event_id, worker, original_subject, new_msg_id, replayed_by,
                replayed_at, dry_run
           FROM dlq_replays
          WHERE ($3::text IS NOT NULL AND event_id = $3)
             OR (dlq_stream = $1 AND dlq_seq = $2)
          ORDER BY replayed_at, id",
    )
    .bind(dlq_stream)
    .bind(dlq_seq as i64)
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(record_of).collect()
}

/// Per entry: recorded real replays and the last time.
pub(crate) async fn per_entry(
    pool: &PgPool,
    dlq_stream: &str,
    seqs: &[u64],
) -> Result<HashMap<u64, (u32, DateTime<Utc>)>, sqlx::Error> {
    if seqs.is_empty() {
        return Ok(HashMap::new());
    }
    let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
    let rows = sqlx::query(
        "SELECT dlq_seq, count(*) AS n, max(replayed_at) AS last
           FROM dlq_replays
          WHERE dlq_stream = $1 AND dlq_seq = ANY($2) AND NOT dry_run
          GROUP BY dlq_seq",
    )
    .bind(dlq_stream)
    .bind(&seqs)
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let seq: i64 = r.try_get("dlq_seq")?;
        let n: i64 = r.try_get("n")?;
        let last: DateTime<Utc> = r.try_get("last")?;
        out.insert(
            seq.max(0) as u64,
            (n.clamp(0, u32::MAX as i64) as u32, last),
        );
    }
    Ok(out)
}

/// Per event: recorded real replays (loop protection across DLQ entries of one event).
/// A booking: (tenant, kind, booking key).
pub(crate) type BookingRef = (String, String, String);

/// The stored desired state of these bookings: revision and whether it ends access.
pub(crate) async fn stored_states(
    pool: &PgPool,
    bookings: &[BookingRef],
) -> Result<HashMap<BookingRef, (i64, bool)>, sqlx::Error> {
    if bookings.is_empty() {
        return Ok(HashMap::new());
    }
    let col = |f: fn(&BookingRef) -> &String| -> Vec<&str> {
        bookings.iter().map(|b| f(b).as_str()).collect()
    };
    let rows: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
        "SELECT k.tenant_id, k.kind, k.booking_key, k.revision, k.ends_access
           FROM unnest($1::text[], $2::text[], $3::text[]) AS u(t, kd, b)
           JOIN bookings k ON k.tenant_id = u.t AND k.kind = u.kd AND k.booking_key = u.b",
    )
    .bind(col(|b| &b.0))
    .bind(col(|b| &b.1))
    .bind(col(|b| &b.2))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, k, b, rev, ends)| ((t, k, b), (rev, ends)))
        .collect())
}

pub(crate) async fn per_event(
    pool: &PgPool,
    event_ids: &[String],
) -> Result<HashMap<String, u32>, sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT event_id, count(*) AS n FROM dlq_replays
          WHERE event_id = ANY($1) AND NOT dry_run GROUP BY event_id",
    )
    .bind(event_ids)
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let id: String = r.try_get("event_id")?;
        let n: i64 = r.try_get("n")?;
        out.insert(id, n.clamp(0, u32::MAX as i64) as u32);
    }
    Ok(out)
}
