//! Install per administration: events of sites no enabled connection is activated for, of
//! disabled connections, and of unmapped administrations / facilities / pass types are answered
//! 2xx `ignored` with a reason, recorded and counted — never stored, published or 4xx.
#![allow(clippy::unwrap_used)]

mod common;

use accesshub_connections::{Connection, ConnectionStore, EgressPolicy};
use common::*;
use serde_json::{Value, json};

fn cloudpass(name: &str, sites: &[&str], enabled: bool, administrations: &[&str]) -> Connection {
    let admins: serde_json::Map<String, Value> = administrations
        .iter()
        .map(|a| ((*a).to_owned(), json!({"site_id": format!("cp-{a}")})))
        .collect();
    serde_json::from_value(json!({
        "tenant": TENANT, "name": name, "enabled": enabled, "sites": sites,
        "settings": {"vendor": "cloudpass", "base_url": "http://127.0.0.1:9",
            "client_id": "c", "client_secret": "s", "administrations": admins,
            "default_time_restriction_id": "tr-1"}
    }))
    .unwrap()
}

fn tapkey(pass_types: &[&str]) -> Connection {
    let types: serde_json::Map<String, Value> = pass_types
        .iter()
        .map(|p| ((*p).to_owned(), json!(["lock-1"])))
        .collect();
    serde_json::from_value(json!({
        "tenant": TENANT, "name": "default",
        "settings": {"vendor": "tapkey", "authority_url": "http://127.0.0.1:9",
            "base_url": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s",
            "owner_account_id": "o", "pass_types": types}
    }))
    .unwrap()
}

async fn store(env: &Env) -> ConnectionStore {
    ConnectionStore::new(env.db.pool.clone(), env.sbox.clone())
        .with_egress(EgressPolicy::loopback_http())
        .with_bus(env.bus.bus.clone())
}

fn metric(env: &Env, source: &str, reason: &str) -> f64 {
    let text = env.handle.as_ref().unwrap().registry().encode();
    let series =
        format!("accesshub_ingest_ignored_total{{source=\"{source}\",reason=\"{reason}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn ignored_rows(env: &Env) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT booking_key, reason, deliveries FROM ingest_ignored ORDER BY booking_key",
    )
    .fetch_all(&env.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn events_of_sites_not_activated_disabled_or_unmapped_are_ignored_not_failed() {
    let env = Env::new().await;
    let conns = store(&env).await;
    // Activated for administration 12 only, which it maps; administration 13 is listed by a
    // disabled connection.
    conns
        .upsert(&cloudpass("main", &["12"], true, &["12"]))
        .await
        .unwrap();
    conns
        .upsert(&cloudpass("old", &["13"], false, &["13"]))
        .await
        .unwrap();

    // Administration 12: accepted as before.
    let (status, body) = env
        .post(
            "bex",
            &bex("r-12", "2025-06-20T09:15:00Z", "reservation:created"),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("accepted")),
        "{body}"
    );

    // Administration 99: no connection is activated for it.
    let mut other = bex("r-99", "2025-06-20T09:15:00Z", "reservation:created");
    other["context_id"] = json!("99");
    other["record"]["relationships"]["administration"]["data"]["id"] = json!("99");
    let (status, body) = env.post("bex", &other).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"status": "ignored", "reason": "site_not_activated", "site": "99"})
    );
    // Again: still ignored, counted twice, one row.
    let (status, _) = env
        .post("bex", &{
            let mut o = other.clone();
            o["record"]["attributes"]["updated_at"] = json!("2025-06-21T09:15:00Z");
            o
        })
        .await;
    assert_eq!(status, 202);

    // Administration 13: only a disabled connection lists it.
    let mut off = bex("r-13", "2025-06-20T09:15:00Z", "reservation:created");
    off["context_id"] = json!("13");
    off["record"]["relationships"]["administration"]["data"]["id"] = json!("13");
    let (_, body) = env.post("bex", &off).await;
    assert_eq!(body["reason"], "connection_disabled", "{body}");

    // A catch-all connection that does not map administration 14: access control is off there.
    conns
        .upsert(&cloudpass("all", &[], true, &["12"]))
        .await
        .unwrap();
    let mut unmapped = bex("r-14", "2025-06-20T09:15:00Z", "reservation:created");
    unmapped["context_id"] = json!("14");
    unmapped["record"]["relationships"]["administration"]["data"]["id"] = json!("14");
    // The change notification reaches ingest's cache asynchronously: wait for the new answer.
    let mut body = Value::Null;
    for _ in 0..60 {
        let mut u = unmapped.clone();
        u["record"]["attributes"]["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
        body = env.post("bex", &u).await.1;
        if body["reason"] == "unmapped_administration" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(body["reason"], "unmapped_administration", "{body}");

    // Nothing of the ignored ones was stored or published; they are recorded and counted.
    assert_eq!(env.events_written().await, 1);
    assert_eq!(env.count("bookings").await, 1);
    let rows = ignored_rows(&env).await;
    assert_eq!(rows[0], ("r-13".into(), "connection_disabled".into(), 1));
    assert_eq!(rows[1].0, "r-14");
    assert_eq!(rows[2], ("r-99".into(), "site_not_activated".into(), 2));
    assert_eq!(metric(&env, "bex", "site_not_activated"), 2.0);
    assert_eq!(metric(&env, "bex", "connection_disabled"), 1.0);
    assert!(metric(&env, "bex", "unmapped_administration") >= 1.0);
    env.finish().await;
}

#[tokio::test]
async fn a_pass_type_without_locks_is_ignored_but_a_stored_booking_never_is() {
    let env = Env::new().await;
    // The pass is stored while the tenant has no Tapkey connection yet (not judged).
    let (status, body) = env
        .post("nexudus", &nexudus("p-1", "2025-06-20T09:15:00Z"))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("accepted")),
        "{body}"
    );
    store(&env).await.upsert(&tapkey(&["other"])).await.unwrap();

    // A new pass of the unmapped type 8: ignored. The connection's change notice reaches
    // ingest's cache asynchronously (it cached "no Tapkey connection" for the first pass), so
    // wait for the new answer, with a new pass each time (a pass once stored is never ignored).
    let (mut status, mut body, mut stale) = (0, Value::Null, 0);
    for i in 0..60 {
        (status, body) = env
            .post(
                "nexudus",
                &nexudus(&format!("p-2-{i}"), "2025-06-20T09:15:00Z"),
            )
            .await;
        if body["status"] == "ignored" {
            break;
        }
        stale += 1;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "ignored", "{body}");
    assert_eq!(body["reason"], "unmapped_pass_type");

    // The stored one's next revision still goes through (it may hold access somewhere).
    let mut used = nexudus("p-1", "2025-06-21T09:15:00Z");
    used["data"]["Used"] = json!(true);
    let (status, body) = env.post("nexudus", &used).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("accepted")),
        "{body}"
    );

    // Over NATS the same answer.
    let reply = env
        .bus
        .bus
        .client
        .request(
            env.bus.bus.subject("ingest.nexudus.acme"),
            serde_json::to_vec(&nexudus("p-3", "2025-06-20T09:15:00Z"))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["status"], "ignored", "{body}");
    // p-1 twice, plus any pass accepted before the cache saw the connection.
    assert_eq!(env.events_written().await, 2 + stale);
    assert_eq!(metric(&env, "nexudus", "unmapped_pass_type"), 2.0);
    env.finish().await;
}

async fn stored(env: &Env) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT booking_key, source, payload->>'booking_key' FROM bookings ORDER BY booking_key",
    )
    .fetch_all(&env.db.pool)
    .await
    .unwrap()
}

/// Bookings are keyed by source: BEX and Clock both sending booking "123" for one tenant are
/// two bookings; each source's later revisions update its own.
#[tokio::test]
async fn two_upstreams_with_the_same_booking_key_do_not_overwrite_each_other() {
    let env = Env::new().await;
    let (s, b) = env
        .post(
            "bex",
            &bex("123", "2025-06-20T09:15:00Z", "reservation:created"),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (202, Some("accepted")), "{b}");
    // Clock's booking 123 with an older revision: not "superseded" by BEX's.
    let (s, b) = env.post("clock", &clock(123, "2025-06-01T09:15:00Z")).await;
    assert_eq!((s, b["status"].as_str()), (202, Some("accepted")), "{b}");
    assert_eq!(
        stored(&env).await,
        [
            ("123".into(), "bex".into(), "123".into()),
            ("clock:123".into(), "clock".into(), "clock:123".into()),
        ]
    );
    // Each source's next revision lands on its own booking.
    let (_, b) = env.post("clock", &clock(123, "2025-06-02T09:15:00Z")).await;
    assert_eq!(b["status"], "accepted", "{b}");
    let (_, b) = env
        .post(
            "bex",
            &bex("123", "2025-06-21T09:15:00Z", "reservation:cancelled"),
        )
        .await;
    assert_eq!(b["status"], "accepted", "{b}");
    let revisions: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT booking_key, revision, payload->'payload'->>'status' FROM bookings ORDER BY booking_key",
    )
    .fetch_all(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(revisions[0].0, "123");
    assert_eq!(revisions[0].2, "cancelled");
    assert_eq!(revisions[1].0, "clock:123");
    assert_eq!(revisions[1].2, "confirmed");
    // Four events on two subjects.
    let subjects: std::collections::BTreeSet<String> = env
        .messages(4)
        .await
        .into_iter()
        .map(|m| env.bus.bus.ns.strip(m.subject.as_str()).to_owned())
        .collect();
    assert_eq!(
        subjects.into_iter().collect::<Vec<_>>(),
        [
            "bookings.reservation.acme.123",
            "bookings.reservation.acme.clock:123"
        ]
    );
    env.finish().await;
}

/// The ignored row keeps the booking's latest event, as `bookings` would: `(revision,
/// status, ends_access)` of the kept event.
async fn kept(env: &Env, key: &str) -> (i64, String, bool) {
    let (event, revision, ends_access): (Value, i64, bool) = sqlx::query_as(
        "SELECT event, revision, ends_access FROM ingest_ignored WHERE booking_key = $1",
    )
    .bind(key)
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    let ev: accesshub_domain::Event = serde_json::from_value(event).unwrap();
    assert_eq!(ev.revision, revision);
    assert_eq!(ev.booking_key, key);
    assert_eq!(ev.ends_access(), ends_access);
    let accesshub_domain::EventBody::Reservation(r) = ev.body else {
        panic!("{ev:?}")
    };
    assert_eq!(r.guest.email.as_deref(), Some("john.doe@example.com"));
    (revision, format!("{:?}", r.status), ends_access)
}

/// Ignored is not lost (issues 20/21): the row keeps the latest normalized event, so a sync
/// can re-admit it once access control is switched on. A later delivery replaces it only
/// when it supersedes it: an older revision never does, an ending wins an equal revision, a
/// reactivation needs a newer one.
#[tokio::test]
async fn an_ignored_event_is_kept_and_replaced_only_by_one_that_supersedes_it() {
    let env = Env::new().await;
    store(&env)
        .await
        .upsert(&cloudpass("main", &["12"], false, &["12"]))
        .await
        .unwrap();
    let post = |at: &'static str, what: &'static str| {
        let env = &env;
        async move {
            let (status, body) = env.post("bex", &bex("r-1", at, what)).await;
            assert_eq!(status, 202, "{body}");
            assert_eq!(body["reason"], "connection_disabled", "{body}");
        }
    };
    post("2025-06-20T10:00:00Z", "reservation:created").await;
    let t2 = chrono::DateTime::parse_from_rfc3339("2025-06-20T10:00:00Z")
        .unwrap()
        .timestamp_millis();
    let first = kept(&env, "r-1").await;
    assert_eq!(first, (t2, "Confirmed".into(), false));

    // Older: counted, the kept event stays.
    post("2025-06-20T09:00:00Z", "reservation:cancelled").await;
    assert_eq!(kept(&env, "r-1").await, first);

    // An ending at the same revision wins the tie.
    post("2025-06-20T10:00:00Z", "reservation:cancelled").await;
    assert_eq!(kept(&env, "r-1").await, (t2, "Cancelled".into(), true));

    // A reactivation at the same revision does not; a newer one does.
    post("2025-06-20T10:00:00Z", "reservation:created").await;
    assert_eq!(kept(&env, "r-1").await, (t2, "Cancelled".into(), true));
    post("2025-06-20T11:00:00Z", "reservation:created").await;
    assert_eq!(kept(&env, "r-1").await.1, "Confirmed");

    assert_eq!(
        ignored_rows(&env).await,
        [("r-1".into(), "connection_disabled".into(), 5)]
    );
    assert_eq!(env.count("bookings").await, 0);
    env.finish().await;
}

/// The per-webhook key probe stays a primary-key lookup whatever plan the prepared statement
/// gets, with or without table statistics: while `bookings` was never analysed, the
/// full-window index `bookings_starts_idx` won over the primary key and each webhook scanned
/// every booking of the tenant and kind (1,742 accepts/s against 11,372/s before). The window
/// index is partial now (`bookings_starts_nn_idx`, migration 20261206210000).
#[tokio::test]
async fn the_key_probe_is_a_primary_key_lookup_whatever_the_plan() {
    let db = accesshub_testkit::TestDb::new().await;
    // A tenant with many bookings, so a scan would cost what it costs in production.
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload, starts_at)
         SELECT 't', 'reservation', 'k' || i, 's', 1, 'bex', gen_random_uuid(), '{}'::json,
                now() + make_interval(mins => i)
           FROM generate_series(1, 5000) i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    // Never analysed first (a new database, autovacuum off or not yet run: the trap), then
    // with statistics.
    for (n, mode) in ["force_generic_plan", "force_custom_plan"]
        .into_iter()
        .cycle()
        .take(4)
        .enumerate()
    {
        if n == 2 {
            sqlx::query("ANALYZE bookings")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PREPARE probe_{n} (text, text, text, text) AS {}",
            booking_ingest::scope::KEY_PROBE_SQL
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN EXECUTE probe_{n} ('t', 'reservation', 'k42', 'bex:k42')"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("bookings_pkey")
                && !plan.contains("Filter")
                && !plan.contains("bookings_starts_idx")
                && !plan.contains("Seq Scan"),
            "{mode}, analysed {}: {plan}",
            n >= 2
        );
    }
    drop(conn);
    db.drop_db().await;
}
