//! Sync pulls Clock PMS+ first for a dormakaba connection (issue 21). Real NATS and Postgres,
//! the Clock PMS+ and Saflok simulators and dormakaba-worker in-process; not one webhook is
//! sent, and the Clock client runs at the documented 5 calls per second against a simulator
//! that enforces it (HTTP Digest, 429 beyond).
//! - Backfill: a connection installed while Clock already holds bookings gets exactly the
//!   in-scope ones (arriving within 5 days, or in house; not cancelled) at the lock system.
//! - A booking cancelled in Clock is checked out by the next Sync; one Clock no longer lists
//!   is marked gone and checked out too.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use accesshub_upstreams::UpstreamCredentials;
use chrono::{Duration, NaiveDate, Utc};
use dormakaba_adapter::inventory::DormakabaInventory;
use reconciler::{RunStatus, Scope, inventory::Inventory, pull::Puller};
use serde_json::json;
use vendor_sim::{clock, dormakaba::Product};

const TENANT: &str = "clockhotel";

/// A booking as the Clock API serves it (documented fields; guest, rooms, mobile key ours).
fn booking(
    id: i64,
    arrival: NaiveDate,
    nights: i64,
    room: &str,
    status: &str,
) -> serde_json::Value {
    json!({
        "id": id, "number": format!("CB-{id}"), "arrival": arrival.to_string(),
        "arrival_time": "after 20h", "departure": (arrival + Duration::days(nights)).to_string(),
        "status": status, "created_at": Utc::now().to_rfc3339(),
        "updated_at": Utc::now().to_rfc3339(),
        "guest": {"last_name": "Petrova", "first_name": "Maria", "phone": "+359888123456"},
        "rooms": [room], "mobile_key": true
    })
}

fn lock_booking(sim: &vendor_sim::SimHandle, id: i64) -> Option<vendor_sim::dormakaba::Booking> {
    let rid = dormakaba_adapter::desired::reservation_id(TENANT, &id.to_string());
    sim.state()
        .dormakaba_bookings(Product::Saflok)
        .into_iter()
        .find(|b| b.reservation_id == rid)
}

fn active(sim: &vendor_sim::SimHandle, id: i64) -> bool {
    lock_booking(sim, id).is_some_and(|b| !b.checked_out)
}

/// Runs a sync of the next 5 days; it must succeed. `[fetched, new, changed, vanished]` and
/// the vendor counts (created, removed).
async fn sync(
    rec: &reconciler::Reconciler,
    db: &accesshub_testkit::TestDb,
    conn: &accesshub_connections::Connection,
) -> ([i64; 4], (i64, i64)) {
    let run = common::run(rec, db, conn, Scope::Upcoming(5)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let p = run.pull.expect("the run pulled");
    (
        [p.fetched, p.new, p.changed, p.vanished],
        (run.counts.created, run.counts.removed),
    )
}

/// Installs the tenant with the Clock simulator's API user (sealed) at the documented 5 calls
/// per second, which the simulator enforces; the dormakaba connection, its worker, and a
/// reconciler that pulls.
async fn install(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    sim: &vendor_sim::SimHandle,
    clocksim: &clock::ClockSim,
) -> (
    reconciler::Reconciler,
    accesshub_connections::Connection,
    worker_runtime::WorkerHandle,
) {
    let base_url = clocksim.account_url(clock::DEMO_ACCOUNT);
    let secret = format!("{}:{}", clock::DEMO_USER, clock::DEMO_API_KEY);
    let (upstreams, _) =
        common::install_upstream(db, TENANT, "clock", base_url.clone(), secret.clone()).await;
    upstreams
        .set(
            TENANT,
            "clock",
            &UpstreamCredentials {
                base_url,
                secret,
                options: json!({}),
            },
        )
        .await
        .unwrap();
    let conn = common::dormakaba_connection(TENANT, sim);
    let worker = common::dormakaba_worker(db, tb, vec![conn.clone()]).await;
    let inv: Arc<dyn Inventory> = Arc::new(DormakabaInventory::new(100.0));
    let rec = common::reconciler(db, tb, &conn, inv).with_puller(Puller::new(
        db.pool.clone(),
        tb.bus.clone(),
        upstreams,
    ));
    (rec, conn, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pulls_clock_first_backfills_and_removes_cancelled_and_vanished() {
    let (db, tb, sim) = common::setup().await;
    let clocksim = clock::start_ephemeral().await.unwrap();
    let today = Utc::now().date_naive();
    let account = clock::DEMO_ACCOUNT;
    for b in [
        booking(1001, today + Duration::days(1), 2, "101", "expected"),
        booking(1002, today + Duration::days(3), 2, "102", "expected"),
        booking(1003, today - Duration::days(2), 4, "103", "checked_in"),
        booking(1004, today + Duration::days(10), 2, "201", "expected"),
        booking(1005, today - Duration::days(5), 3, "202", "checked_out"),
        booking(1006, today + Duration::days(2), 1, "301", "canceled"),
    ] {
        clocksim.put_booking(account, b);
    }

    // Installing: the tenant, its Clock API user (sealed) at the documented rate, the
    // dormakaba connection.
    let (rec, conn, worker) = install(&db, &tb, &sim, &clocksim).await;

    // First Sync = backfill: the two arrivals, the guest in house and the cancelled booking
    // are fetched (the far one is filtered by the API, the departed one dropped); exactly the
    // three that want access reach the lock system.
    let (pulled, (created, _)) = sync(&rec, &db, &conn).await;
    assert_eq!(pulled, [4, 4, 0, 0]);
    assert_eq!(created, 3);
    common::eventually("in-scope bookings at the lock system", || {
        active(&sim, 1001) && active(&sim, 1002) && active(&sim, 1003)
    })
    .await;
    for (id, why) in [
        (1004, "beyond 5 days"),
        (1005, "departed"),
        (1006, "cancelled"),
    ] {
        assert!(lock_booking(&sim, id).is_none(), "{id}: {why}");
    }
    let stored: String =
        sqlx::query_scalar("SELECT payload::text FROM bookings WHERE booking_key = '1001'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let stored: accesshub_domain::Event = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored.site, account, "the account is the site");
    assert_eq!(stored.source, accesshub_domain::Source::Clock);

    // Cancelled in Clock, and gone from Clock: both are checked out by the next Sync.
    assert!(clocksim.set_status(account, 1002, "canceled"));
    assert!(clocksim.delete_booking(account, 1001));
    let (pulled, (_, removed)) = sync(&rec, &db, &conn).await;
    assert_eq!(pulled, [3, 0, 1, 1]);
    assert_eq!(removed, 2);
    common::eventually("cancelled and vanished bookings checked out", || {
        lock_booking(&sim, 1001).is_some_and(|b| b.checked_out)
            && lock_booking(&sim, 1002).is_some_and(|b| b.checked_out)
            && active(&sim, 1003)
    })
    .await;

    worker.shutdown().await.unwrap();
    clocksim.shutdown().await;
    common::teardown(db, tb, sim).await;
}

/// Clock serves a booking's room and main guest by reference (`arrival_room_id`,
/// `current_room_id` after a move, `main_booking_guest`; the guest snapshot on the booking may
/// be blank). The pull looks each room and guest profile up once per run, through the
/// documented rate limit, so the lock system gets room numbers and the guest's name. The
/// bookings are the demo account `make dev` serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_resolves_clock_room_and_guest_references_once_per_run() {
    let (db, tb, sim) = common::setup().await;
    let clocksim = clock::start_ephemeral().await.unwrap();
    let account = clock::DEMO_ACCOUNT;
    clocksim.seed_demo(account);
    let (rec, conn, worker) = install(&db, &tb, &sim, &clocksim).await;

    // In house, arriving (moved room), arriving (guest only a profile reference), cancelled.
    let (pulled, (created, _)) = sync(&rec, &db, &conn).await;
    assert_eq!(pulled, [4, 4, 0, 0]);
    assert_eq!(created, 3);
    let room_and_guest = |id: i64| lock_booking(&sim, id).map(|b| (b.main_room, b.guest_name));
    common::eventually("referenced rooms and guests at the lock system", || {
        room_and_guest(580301) == Some(("101".into(), "Jansen, Pieter".into()))
            && room_and_guest(580302) == Some(("102".into(), "Petrova, Maria".into()))
            && room_and_guest(580303) == Some(("201".into(), "de Vries, Sanne".into()))
    })
    .await;
    assert!(lock_booking(&sim, 580304).is_none(), "cancelled");
    // Rooms 7101, 7102 and 7201 (twice referenced) once each; the one blank guest once.
    assert_eq!(clocksim.calls_to("/rooms/"), 3);
    assert_eq!(clocksim.calls_to("/guests/"), 1);

    worker.shutdown().await.unwrap();
    clocksim.shutdown().await;
    common::teardown(db, tb, sim).await;
}
