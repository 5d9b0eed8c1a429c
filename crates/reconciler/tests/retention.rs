//! The retention job against real Postgres: ended bookings older than the period go with their
//! bindings, vendor attempts and key requests; recent ones, ongoing ones and ones whose binding
//! may still hold access stay (security review L7, issue 23 item 6).
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use reconciler::retention::{self, RetentionSettings};
use sqlx::PgPool;

async fn booking(
    pool: &PgPool,
    key: &str,
    ends_at: Option<DateTime<Utc>>,
    ends_access: bool,
    updated: DateTime<Utc>,
) {
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id,
                               payload, starts_at, ends_at, ends_access, updated_at)
         VALUES ('acme', 'reservation', $1, 's', 1, 'bex', $2,
                 '{\"guest\": {\"name\": \"Zwaardemaker, Quirina\"}}', NULL, $3, $4, $5)",
    )
    .bind(key)
    .bind(uuid::Uuid::now_v7())
    .bind(ends_at)
    .bind(ends_access)
    .bind(updated)
    .execute(pool)
    .await
    .unwrap();
}

async fn binding(pool: &PgPool, vendor: &str, key: &str, status: &str) {
    sqlx::query(
        "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, status, last_error)
         VALUES ('acme', $1, 'reservation', $2, 1, $3, 'plate QZ99XY refused')",
    )
    .bind(vendor)
    .bind(key)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO vendor_attempts (tenant_id, vendor, kind, booking_key)
         VALUES ('acme', $1, 'reservation', $2) ON CONFLICT DO NOTHING",
    )
    .bind(vendor)
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

async fn keys(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT booking_key FROM {table} ORDER BY booking_key"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn prunes_long_ended_bookings_but_never_one_that_may_hold_access() {
    let db = accesshub_testkit::TestDb::new().await;
    let pool = &db.pool;
    let now = Utc::now();
    let old = now - Duration::days(40);
    // Due: ended 40 days ago, bindings all hold nothing.
    booking(pool, "old-ended", Some(old), false, old).await;
    binding(pool, "cloudpass", "old-ended", "removed").await;
    binding(pool, "tapkey", "old-ended", "expired").await;
    // Due: cancelled 40 days ago (no end time), never bound.
    booking(pool, "old-cancelled", None, true, old).await;
    sqlx::query(
        "INSERT INTO key_requests (request_id, tenant, reservation_key, action, status, updated_at)
         VALUES ($1, 'acme', 'old-cancelled', 'new_key', 'encoded', $2)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(old)
    .execute(pool)
    .await
    .unwrap();
    // Kept: a binding may still hold access (active; dead-lettered).
    booking(pool, "old-still-active", Some(old), false, old).await;
    binding(pool, "cloudpass", "old-still-active", "removed").await;
    binding(pool, "tapkey", "old-still-active", "active").await;
    booking(pool, "old-dead-lettered", Some(old), false, old).await;
    binding(pool, "cloudpass", "old-dead-lettered", "dead_lettered").await;
    // Kept: ended recently; ends in the future; ended long ago but updated recently.
    booking(
        pool,
        "recent",
        Some(now - Duration::days(3)),
        false,
        now - Duration::days(3),
    )
    .await;
    booking(pool, "future", Some(now + Duration::days(3)), false, old).await;
    booking(pool, "old-touched", Some(old), false, now).await;

    let settings = RetentionSettings {
        days: 30,
        ..Default::default()
    };
    let cutoff = settings.cutoff(now).unwrap();
    // Batches of one: the loop runs until a short batch.
    let pruned = retention::prune(pool, cutoff, 1, 100).await.unwrap();
    assert_eq!(pruned.bookings, 2, "{pruned:?}");
    assert_eq!(pruned.bindings, 2, "{pruned:?}");
    assert_eq!(pruned.vendor_attempts, 2, "{pruned:?}");
    assert_eq!(pruned.key_requests, 1, "{pruned:?}");
    assert_eq!(
        keys(pool, "bookings").await,
        [
            "future",
            "old-dead-lettered",
            "old-still-active",
            "old-touched",
            "recent"
        ]
    );
    assert_eq!(
        keys(pool, "bindings").await,
        ["old-dead-lettered", "old-still-active"]
    );
    // Idempotent; and bounded: max_batches caps one pass.
    assert_eq!(
        retention::prune(pool, cutoff, 1, 100)
            .await
            .unwrap()
            .bookings,
        0
    );
    booking(pool, "b1", None, true, old).await;
    booking(pool, "b2", None, true, old).await;
    booking(pool, "b3", None, true, old).await;
    assert_eq!(
        retention::prune(pool, cutoff, 1, 2).await.unwrap().bookings,
        2
    );
    assert_eq!(
        retention::prune(pool, cutoff, 1, 2).await.unwrap().bookings,
        1
    );

    // 0 = off.
    assert!(
        RetentionSettings {
            days: 0,
            ..Default::default()
        }
        .cutoff(now)
        .is_none()
    );
    db.drop_db().await;
}

/// The admin audit log is kept `audit_days` (400 by default), then pruned oldest first in
/// bounded batches; 0 keeps it forever. Entries inside the period stay.
#[tokio::test]
async fn audit_entries_older_than_the_period_are_pruned() {
    let db = accesshub_testkit::TestDb::new().await;
    let pool = &db.pool;
    let now = Utc::now();
    for (target, age_days) in [
        ("old-1", 500),
        ("old-2", 401),
        ("recent", 399),
        ("today", 0),
    ] {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant_id, target)
             VALUES ($1, 'ops', 'connection.apply', 'acme', $2)",
        )
        .bind(now - Duration::days(age_days))
        .bind(target)
        .execute(pool)
        .await
        .unwrap();
    }
    let settings = RetentionSettings::default();
    assert_eq!(settings.audit_days, 400);
    let cutoff = settings.audit_cutoff(now).unwrap();
    assert_eq!(retention::prune_audit(pool, cutoff, 1, 1).await.unwrap(), 1);
    assert_eq!(
        retention::prune_audit(pool, cutoff, 1, 10).await.unwrap(),
        1
    );
    assert_eq!(
        retention::prune_audit(pool, cutoff, 1, 10).await.unwrap(),
        0
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT target FROM audit_log ORDER BY at")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(left, ["recent", "today"]);
    assert!(
        RetentionSettings {
            audit_days: 0,
            ..Default::default()
        }
        .audit_cutoff(now)
        .is_none()
    );
    db.drop_db().await;
}

/// Ignored events kept for re-admission hold a booking's personal data too: pruned like
/// bookings (ended or cancelled before the cutoff and not delivered since; a row without an
/// event once last delivered before it), never one still wanted or delivered recently.
#[tokio::test]
async fn prunes_ignored_events_whose_booking_ended_like_bookings() {
    let db = accesshub_testkit::TestDb::new().await;
    let pool = &db.pool;
    let now = Utc::now();
    let old = now - Duration::days(40);
    let soon = now + Duration::days(3);
    for (key, kept, ends_at, ends_access, last_at) in [
        ("ended", true, Some(old), false, old),
        ("cancelled", true, Some(soon), true, old),
        ("no-event", false, None, false, old),
        ("ongoing", true, Some(soon), false, old),
        ("recent", true, Some(old), false, now),
    ] {
        sqlx::query(
            "INSERT INTO ingest_ignored (tenant_id, source, kind, booking_key, site, reason,
                                         event, revision, ends_access, ends_at, first_at, last_at)
             VALUES ('acme', 'bex', 'reservation', $1, 's', 'connection_disabled',
                     CASE WHEN $2 THEN '{\"guest\": {\"name\": \"Zwaardemaker, Quirina\"}}'::jsonb END,
                     CASE WHEN $2 THEN 1 END, CASE WHEN $2 THEN $3 END, $4, $5, $5)",
        )
        .bind(key)
        .bind(kept)
        .bind(ends_access)
        .bind(ends_at)
        .bind(last_at)
        .execute(pool)
        .await
        .unwrap();
    }
    let cutoff = RetentionSettings::default().cutoff(now).unwrap();
    let pruned = retention::prune(pool, cutoff, 2, 10).await.unwrap();
    assert_eq!(pruned.ingest_ignored, 3, "{pruned:?}");
    assert_eq!(keys(pool, "ingest_ignored").await, ["ongoing", "recent"]);
    db.drop_db().await;
}

/// The reconciler's retention pass (what its loop runs every `ACCESSHUB_RETENTION_INTERVAL`)
/// prunes the audit log after `audit_days`, and counts it in
/// `accesshub_retention_pruned_total{table="audit_log"}`; entries inside the period stay.
#[tokio::test]
async fn the_retention_pass_prunes_the_audit_log_after_its_period() {
    let (db, tb) = accesshub_testkit::isolated().await;
    let now = Utc::now();
    for (target, age_days) in [("old", 401), ("recent", 10)] {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant_id, target)
             VALUES ($1, 'ops', 'tenant.create', 'acme', $2)",
        )
        .bind(now - Duration::days(age_days))
        .bind(target)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let registry = accesshub_telemetry::Registry::new();
    let rec = reconciler::service::Reconciler::new(
        db.pool.clone(),
        tb.bus.clone(),
        std::sync::Arc::new(reconciler::connections::StaticConnections::new(vec![])),
        vec![],
        reconciler::service::Settings {
            default_schedules: false,
            retention: RetentionSettings {
                // Bookings kept forever: only the audit log's period applies.
                days: 0,
                audit_days: 400,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .with_metrics(reconciler::service::SyncMetrics::new(&registry));
    rec.retention_if_due().await;
    let left: Vec<String> = sqlx::query_scalar("SELECT target FROM audit_log ORDER BY at")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, ["recent"]);
    let metrics = registry.encode();
    assert!(
        metrics.contains(r#"accesshub_retention_pruned_total{table="audit_log"} 1"#),
        "{metrics}"
    );
    tb.cleanup().await;
    db.drop_db().await;
}
