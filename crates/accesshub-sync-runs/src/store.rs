//! The run bookkeeping in Postgres: queueing (deduplicated per connection by a partial unique
//! index), claiming with `FOR UPDATE SKIP LOCKED`, progress with a heartbeat lease, takeover of
//! runs whose replica died, and the schedules.
//!
//! Requests and the reconciler meet in the table, not on the bus: a run asked for while every
//! reconciler is down is still there when one starts, and the caller gets the id at once.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};

use crate::{
    error::SyncRunError,
    model::{ConnectionRef, Counts, PullCounts, RunStatus, Scope, SyncRun, SyncSchedule, Trigger},
    schedule::CronSchedule,
};

/// `NOTIFY` channel a new queued run is announced on (the poll loop is the fallback).
pub const NOTIFY_CHANNEL: &str = "accesshub_sync_runs";

const RUN_COLUMNS: &str = "id, tenant_id, vendor, connection_name, scope, scope_days, trigger, \
     requested_by, status, created_at, started_at, finished_at, checked, in_sync, created, \
     updated, removed, failed, error, note, pull_fetched, pull_new, pull_changed, pull_vanished, pull_readmitted";

fn run_from_row(r: &PgRow) -> Result<SyncRun, SyncRunError> {
    let scope: String = r.try_get("scope")?;
    let days: Option<i32> = r.try_get("scope_days")?;
    let trigger: String = r.try_get("trigger")?;
    let status: String = r.try_get("status")?;
    Ok(SyncRun {
        id: r.try_get("id")?,
        connection: ConnectionRef {
            tenant: r.try_get("tenant_id")?,
            vendor: r.try_get("vendor")?,
            name: r.try_get("connection_name")?,
        },
        scope: Scope::parse(&scope, days.map(i64::from))?,
        trigger: trigger.parse()?,
        requested_by: r.try_get("requested_by")?,
        status: status.parse()?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        counts: Counts {
            checked: r.try_get("checked")?,
            in_sync: r.try_get("in_sync")?,
            created: r.try_get("created")?,
            updated: r.try_get("updated")?,
            removed: r.try_get("removed")?,
            failed: r.try_get("failed")?,
        },
        error: r.try_get("error")?,
        note: r.try_get("note")?,
        pull: match r.try_get::<Option<i64>, _>("pull_fetched")? {
            None => None,
            Some(fetched) => Some(PullCounts {
                fetched,
                new: r.try_get::<Option<i64>, _>("pull_new")?.unwrap_or(0),
                changed: r.try_get::<Option<i64>, _>("pull_changed")?.unwrap_or(0),
                vanished: r.try_get::<Option<i64>, _>("pull_vanished")?.unwrap_or(0),
                readmitted: r.try_get::<Option<i64>, _>("pull_readmitted")?.unwrap_or(0),
            }),
        },
    })
}

/// Result of asking for a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutcome {
    /// A new run was queued.
    Queued(SyncRun),
    /// The connection already has a queued or running run; nothing new was queued.
    AlreadyActive(SyncRun),
}

impl RequestOutcome {
    /// The run either way.
    pub fn run(&self) -> &SyncRun {
        match self {
            RequestOutcome::Queued(r) | RequestOutcome::AlreadyActive(r) => r,
        }
    }
}

/// Inserts a queued run unless the connection has an active one (the partial unique index
/// decides, race-free), and announces it with `NOTIFY` (delivered at commit).
async fn insert_queued(
    tx: &mut sqlx::PgConnection,
    conn: &ConnectionRef,
    scope: Scope,
    trigger: Trigger,
    requested_by: Option<&str>,
) -> Result<Option<SyncRun>, SyncRunError> {
    let sql = format!(
        "INSERT INTO sync_runs (tenant_id, vendor, connection_name, scope, scope_days, trigger, requested_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, vendor, connection_name) WHERE status IN ('queued', 'running')
         DO NOTHING
         RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&conn.tenant)
        .bind(&conn.vendor)
        .bind(&conn.name)
        .bind(scope.as_str())
        .bind(scope.days())
        .bind(trigger.as_str())
        .bind(requested_by)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let run = run_from_row(&row)?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(run.id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(Some(run))
}

/// Queues a run for a connection, unless one is already queued or running (then that one is
/// returned: one run per connection at a time), and wakes the reconcilers.
pub async fn request_run(
    pool: &PgPool,
    conn: &ConnectionRef,
    scope: Scope,
    trigger: Trigger,
    requested_by: Option<&str>,
) -> Result<RequestOutcome, SyncRunError> {
    // The active run may finish between the refused insert and the read: then try again.
    for _ in 0..3 {
        let mut tx = pool.begin().await?;
        if let Some(run) = insert_queued(&mut tx, conn, scope, trigger, requested_by).await? {
            tx.commit().await?;
            return Ok(RequestOutcome::Queued(run));
        }
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs
              WHERE tenant_id = $1 AND vendor = $2 AND connection_name = $3
                AND status IN ('queued', 'running')"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&conn.tenant)
            .bind(&conn.vendor)
            .bind(&conn.name)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Some(r) = r {
            return Ok(RequestOutcome::AlreadyActive(run_from_row(&r)?));
        }
    }
    Err(SyncRunError::Busy)
}

/// Claims the oldest queued run (skipping rows another replica is claiming right now).
pub async fn claim_next(pool: &PgPool, runner: &str) -> Result<Option<SyncRun>, SyncRunError> {
    let sql = format!(
        "UPDATE sync_runs SET status = 'running', started_at = now(), heartbeat_at = now(),
                runner = $1, attempts = attempts + 1
          WHERE id = (SELECT id FROM sync_runs WHERE status = 'queued'
                       ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
          RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(runner)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

/// Puts a claimed run back in the queue (its connection turned out to be locked elsewhere).
pub async fn requeue(pool: &PgPool, id: i64) -> Result<(), SyncRunError> {
    sqlx::query(
        "UPDATE sync_runs SET status = 'queued', started_at = NULL, heartbeat_at = NULL, runner = NULL
          WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records progress and refreshes the lease.
pub async fn heartbeat(pool: &PgPool, id: i64, c: &Counts) -> Result<(), SyncRunError> {
    sqlx::query(
        "UPDATE sync_runs SET heartbeat_at = now(), checked = $2, in_sync = $3, created = $4,
                updated = $5, removed = $6, failed = $7
          WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(c.checked)
    .bind(c.in_sync)
    .bind(c.created)
    .bind(c.updated)
    .bind(c.removed)
    .bind(c.failed)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a run with its final counts.
pub async fn finish(
    pool: &PgPool,
    id: i64,
    status: RunStatus,
    c: &Counts,
    error: Option<&str>,
) -> Result<(), SyncRunError> {
    sqlx::query(
        "UPDATE sync_runs SET status = $2, finished_at = now(), heartbeat_at = now(),
                checked = $3, in_sync = $4, created = $5, updated = $6, removed = $7, failed = $8,
                error = $9
          WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(c.checked)
    .bind(c.in_sync)
    .bind(c.created)
    .bind(c.updated)
    .bind(c.removed)
    .bind(c.failed)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the counts of a run's pull phase.
pub async fn set_pull_counts(pool: &PgPool, id: i64, c: &PullCounts) -> Result<(), SyncRunError> {
    sqlx::query(
        "UPDATE sync_runs SET pull_fetched = $2, pull_new = $3, pull_changed = $4,
                pull_vanished = $5, pull_readmitted = $6
          WHERE id = $1",
    )
    .bind(id)
    .bind(c.fetched)
    .bind(c.new)
    .bind(c.changed)
    .bind(c.vanished)
    .bind(c.readmitted)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records what a run concluded besides its counts.
pub async fn set_note(pool: &PgPool, id: i64, note: &str) -> Result<(), SyncRunError> {
    sqlx::query("UPDATE sync_runs SET note = $2 WHERE id = $1")
        .bind(id)
        .bind(note)
        .execute(pool)
        .await?;
    Ok(())
}

/// Running rows whose lease expired (their replica died or hangs), oldest first.
pub async fn stale_running(
    pool: &PgPool,
    lease: std::time::Duration,
) -> Result<Vec<SyncRun>, SyncRunError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs
          WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
          ORDER BY id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease.as_secs_f64())
        .fetch_all(pool)
        .await?;
    rows.iter().map(run_from_row).collect()
}

/// One run.
pub async fn get_run(pool: &PgPool, id: i64) -> Result<Option<SyncRun>, SyncRunError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

/// Latest runs, newest first, optionally for one tenant and/or vendor.
pub async fn list_runs(
    pool: &PgPool,
    tenant: Option<&str>,
    vendor: Option<&str>,
    limit: i64,
) -> Result<Vec<SyncRun>, SyncRunError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs
          WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR vendor = $2)
          ORDER BY id DESC LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(vendor)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(run_from_row).collect()
}

fn schedule_from_row(r: &PgRow) -> Result<SyncSchedule, SyncRunError> {
    let scope: String = r.try_get("scope")?;
    let days: Option<i32> = r.try_get("scope_days")?;
    Ok(SyncSchedule {
        connection: ConnectionRef {
            tenant: r.try_get("tenant_id")?,
            vendor: r.try_get("vendor")?,
            name: r.try_get("connection_name")?,
        },
        cron: r.try_get("cron")?,
        timezone: r.try_get("timezone")?,
        scope: Scope::parse(&scope, days.map(i64::from))?,
        enabled: r.try_get("enabled")?,
        next_run_at: r.try_get("next_run_at")?,
        last_run_id: r.try_get("last_run_id")?,
    })
}

const SCHEDULE_COLUMNS: &str = "tenant_id, vendor, connection_name, cron, timezone, scope, \
     scope_days, enabled, next_run_at, last_run_id";

/// Creates or replaces a connection's schedule; validates the cron and timezone and computes
/// the next firing.
pub async fn set_schedule(
    pool: &PgPool,
    conn: &ConnectionRef,
    cron: &str,
    timezone: &str,
    scope: Scope,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<SyncSchedule, SyncRunError> {
    let next = CronSchedule::parse(cron, timezone)?
        .next_after(now)
        .ok_or_else(|| SyncRunError::invalid("cron expression", "never fires"))?;
    let sql = format!(
        "INSERT INTO sync_schedules (tenant_id, vendor, connection_name, cron, timezone, scope,
                                     scope_days, enabled, next_run_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant_id, vendor, connection_name) DO UPDATE SET
             cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, scope = EXCLUDED.scope,
             scope_days = EXCLUDED.scope_days, enabled = EXCLUDED.enabled,
             next_run_at = EXCLUDED.next_run_at, updated_at = now()
         RETURNING {SCHEDULE_COLUMNS}"
    );
    let r = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&conn.tenant)
        .bind(&conn.vendor)
        .bind(&conn.name)
        .bind(cron.trim())
        .bind(timezone)
        .bind(scope.as_str())
        .bind(scope.days())
        .bind(enabled)
        .bind(next)
        .fetch_one(pool)
        .await?;
    schedule_from_row(&r)
}

/// Gives a connection the default nightly schedule unless it already has one.
pub async fn ensure_default_schedule(
    pool: &PgPool,
    conn: &ConnectionRef,
    timezone: &str,
    now: DateTime<Utc>,
) -> Result<(), SyncRunError> {
    let next = CronSchedule::parse(crate::schedule::DEFAULT_CRON, timezone)?
        .next_after(now)
        .ok_or_else(|| SyncRunError::invalid("cron expression", "never fires"))?;
    sqlx::query(
        "INSERT INTO sync_schedules (tenant_id, vendor, connection_name, cron, timezone, scope, next_run_at)
         VALUES ($1, $2, $3, $4, $5, 'full', $6)
         ON CONFLICT (tenant_id, vendor, connection_name) DO NOTHING",
    )
    .bind(&conn.tenant)
    .bind(&conn.vendor)
    .bind(&conn.name)
    .bind(crate::schedule::DEFAULT_CRON)
    .bind(timezone)
    .bind(next)
    .execute(pool)
    .await?;
    Ok(())
}

/// Schedules, optionally of one tenant.
pub async fn list_schedules(
    pool: &PgPool,
    tenant: Option<&str>,
) -> Result<Vec<SyncSchedule>, SyncRunError> {
    let sql = format!(
        "SELECT {SCHEDULE_COLUMNS} FROM sync_schedules
          WHERE ($1::text IS NULL OR tenant_id = $1)
          ORDER BY tenant_id, vendor, connection_name"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_all(pool)
        .await?;
    rows.iter().map(schedule_from_row).collect()
}

/// Queues a run for every enabled schedule that is due and moves it to its next firing, in
/// one transaction per schedule with `SKIP LOCKED`, so two replicas never queue the same
/// firing twice. Returns the runs queued.
pub async fn fire_due_schedules(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<SyncRun>, SyncRunError> {
    let mut queued = Vec::new();
    loop {
        let mut tx = pool.begin().await?;
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM sync_schedules
              WHERE enabled AND next_run_at <= $1
              ORDER BY next_run_at FOR UPDATE SKIP LOCKED LIMIT 1"
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
        else {
            break;
        };
        let s = schedule_from_row(&row)?;
        let next = CronSchedule::parse(&s.cron, &s.timezone)
            .ok()
            .and_then(|c| c.next_after(now));
        let run = insert_queued(
            &mut tx,
            &s.connection,
            s.scope,
            Trigger::Schedule,
            Some("schedule"),
        )
        .await?;
        // A schedule whose expression stopped parsing is disabled rather than fired forever.
        sqlx::query(
            "UPDATE sync_schedules SET next_run_at = COALESCE($4, next_run_at),
                    enabled = enabled AND $4 IS NOT NULL,
                    last_run_id = COALESCE($5, last_run_id), updated_at = now()
              WHERE tenant_id = $1 AND vendor = $2 AND connection_name = $3",
        )
        .bind(&s.connection.tenant)
        .bind(&s.connection.vendor)
        .bind(&s.connection.name)
        .bind(next)
        .bind(run.as_ref().map(|r| r.id))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        queued.extend(run);
    }
    Ok(queued)
}
