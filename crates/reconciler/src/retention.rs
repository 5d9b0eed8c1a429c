//! Retention: bookings that ended long ago are deleted with their bindings, vendor attempts
//! and key requests, so the database does not keep every guest's name, e-mail, phone and
//! plates forever (security review L7, issue 23 item 6). Runs from the reconciler's tick, at
//! most once per interval, in bounded batches (`FOR UPDATE SKIP LOCKED`: replicas share the
//! work instead of colliding).
//!
//! A booking is pruned only when it ended before the cutoff (its access end, or the update
//! that cancelled it), was not updated since, and no binding of it may still hold access at a
//! vendor (every binding's status is one of [`HOLDS_NOTHING`]): a dead-lettered or active
//! binding keeps the booking, so the reconciler can still remove what it holds.
//!
//! Ignored events (`ingest_ignored`, kept for re-admission: the same personal data) go the
//! same way: a row last delivered before the cutoff whose booking ended before it (or was
//! cancelled), or that holds no event at all.

use std::time::Duration;

use accesshub_connections::offboard::HOLDS_NOTHING;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Tunables (`ACCESSHUB_RETENTION_*` in the reconciler's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Days after a booking ended before it is pruned; 0 = never prune.
    pub days: u32,
    /// Bookings deleted per transaction.
    pub batch: i64,
    /// Batches per pass, at most (the next pass continues).
    pub max_batches: u32,
    /// How often a pass runs.
    pub interval: Duration,
    /// Days the admin audit log is kept; 0 = forever. Longer than bookings by default: it
    /// answers "who changed what" during an incident review, long after the stays ended.
    pub audit_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            days: 30,
            batch: 500,
            max_batches: 20,
            interval: Duration::from_secs(3600),
            audit_days: 400,
        }
    }
}

impl RetentionSettings {
    /// From `ACCESSHUB_RETENTION_DAYS` (default 30, 0 = off), `ACCESSHUB_RETENTION_BATCH`
    /// (500), `ACCESSHUB_RETENTION_INTERVAL` (1h) and `ACCESSHUB_AUDIT_RETENTION_DAYS` (400,
    /// 0 = keep the audit log forever).
    pub fn from_env() -> Result<Self, accesshub_config::ConfigError> {
        let d = RetentionSettings::default();
        Ok(RetentionSettings {
            days: accesshub_config::env_or("ACCESSHUB_RETENTION_DAYS", d.days)?,
            batch: accesshub_config::env_or("ACCESSHUB_RETENTION_BATCH", d.batch)?,
            max_batches: d.max_batches,
            interval: accesshub_config::env_duration("ACCESSHUB_RETENTION_INTERVAL", d.interval)?,
            audit_days: accesshub_config::env_or("ACCESSHUB_AUDIT_RETENTION_DAYS", d.audit_days)?,
        })
    }

    /// Bookings that ended before this are due; `None` when retention is off.
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.days > 0).then(|| now - chrono::Duration::days(i64::from(self.days)))
    }

    /// Audit entries older than this are due; `None` when the audit log is kept forever.
    pub fn audit_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.audit_days > 0).then(|| now - chrono::Duration::days(i64::from(self.audit_days)))
    }
}

/// Rows deleted by one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// `bookings` rows.
    pub bookings: u64,
    /// `bindings` rows.
    pub bindings: u64,
    /// `vendor_attempts` rows.
    pub vendor_attempts: u64,
    /// `key_requests` rows (of pruned reservations).
    pub key_requests: u64,
    /// `audit_log` rows (see [`prune_audit`]).
    pub audit_log: u64,
    /// `ingest_ignored` rows.
    pub ingest_ignored: u64,
}

impl Pruned {
    fn add(&mut self, o: Pruned) {
        self.bookings += o.bookings;
        self.bindings += o.bindings;
        self.vendor_attempts += o.vendor_attempts;
        self.key_requests += o.key_requests;
        self.audit_log += o.audit_log;
        self.ingest_ignored += o.ingest_ignored;
    }
}

/// One batch in one statement: pick due bookings (locked, skipping those another replica
/// holds), delete their dependants, then them.
const PRUNE_BATCH: &str = "
WITH doomed AS (
    SELECT b.tenant_id, b.kind, b.booking_key
    FROM bookings b
    WHERE b.updated_at < $1
      AND (b.ends_access OR b.ends_at < $1)
      AND NOT EXISTS (
          SELECT 1 FROM bindings x
          WHERE x.tenant_id = b.tenant_id AND x.kind = b.kind AND x.booking_key = b.booking_key
            AND x.status <> ALL($2))
    ORDER BY b.updated_at
    LIMIT $3
    FOR UPDATE OF b SKIP LOCKED
), del_bindings AS (
    DELETE FROM bindings x USING doomed d
    WHERE x.tenant_id = d.tenant_id AND x.kind = d.kind AND x.booking_key = d.booking_key
    RETURNING 1
), del_attempts AS (
    DELETE FROM vendor_attempts a USING doomed d
    WHERE a.tenant_id = d.tenant_id AND a.kind = d.kind AND a.booking_key = d.booking_key
    RETURNING 1
), del_keyreqs AS (
    DELETE FROM key_requests k USING doomed d
    WHERE d.kind = 'reservation' AND k.tenant = d.tenant_id AND k.reservation_key = d.booking_key
      AND k.updated_at < $1
    RETURNING 1
), del_bookings AS (
    DELETE FROM bookings b USING doomed d
    WHERE b.tenant_id = d.tenant_id AND b.kind = d.kind AND b.booking_key = d.booking_key
    RETURNING 1
)
SELECT (SELECT count(*) FROM del_bookings),
       (SELECT count(*) FROM del_bindings),
       (SELECT count(*) FROM del_attempts),
       (SELECT count(*) FROM del_keyreqs)";

/// Deletes bookings that ended before `cutoff` (see the module docs), `batch` at a time, at
/// most `max_batches` batches.
pub async fn prune(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
    max_batches: u32,
) -> Result<Pruned, sqlx::Error> {
    let holds_nothing: Vec<String> = HOLDS_NOTHING.iter().map(|s| (*s).to_owned()).collect();
    let mut total = Pruned::default();
    for _ in 0..max_batches.max(1) {
        let (b, bi, va, kr): (i64, i64, i64, i64) = sqlx::query_as(PRUNE_BATCH)
            .bind(cutoff)
            .bind(&holds_nothing)
            .bind(batch.max(1))
            .fetch_one(pool)
            .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        total.add(Pruned {
            bookings: n(b),
            bindings: n(bi),
            vendor_attempts: n(va),
            key_requests: n(kr),
            audit_log: 0,
            ingest_ignored: 0,
        });
        if b < batch.max(1) {
            break;
        }
    }
    for _ in 0..max_batches.max(1) {
        let n = sqlx::query(PRUNE_IGNORED_BATCH)
            .bind(cutoff)
            .bind(batch.max(1))
            .execute(pool)
            .await?
            .rows_affected();
        total.ingest_ignored += n;
        if n < u64::try_from(batch.max(1)).unwrap_or(u64::MAX) {
            break;
        }
    }
    Ok(total)
}

/// One batch of ignored events whose booking ended before the cutoff and that were not
/// delivered since (rows without an event: last delivered before the cutoff).
const PRUNE_IGNORED_BATCH: &str = "
DELETE FROM ingest_ignored i USING (
    SELECT tenant_id, source, kind, booking_key FROM ingest_ignored
     WHERE last_at < $1 AND (event IS NULL OR ends_access OR ends_at < $1)
     ORDER BY last_at LIMIT $2 FOR UPDATE SKIP LOCKED) d
 WHERE i.tenant_id = d.tenant_id AND i.source = d.source AND i.kind = d.kind
   AND i.booking_key = d.booking_key";

/// One batch of audit entries older than the cutoff, oldest first.
const PRUNE_AUDIT_BATCH: &str = "
DELETE FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE at < $1 ORDER BY at, id LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// Deletes admin audit entries older than `cutoff`, `batch` at a time, at most `max_batches`
/// batches; returns how many went.
pub async fn prune_audit(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
    max_batches: u32,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    for _ in 0..max_batches.max(1) {
        let n = sqlx::query(PRUNE_AUDIT_BATCH)
            .bind(cutoff)
            .bind(batch.max(1))
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n < u64::try_from(batch.max(1)).unwrap_or(u64::MAX) {
            break;
        }
    }
    Ok(total)
}
