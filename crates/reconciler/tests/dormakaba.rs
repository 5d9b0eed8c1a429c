//! dormakaba end to end with dormakaba-worker in-process and the Saflok simulator: the lock
//! system cannot list, so the sync re-asserts each reservation's access (module
//! `dormakaba_adapter::inventory`). A key cancelled by hand at the front desk (simulator
//! control API) is re-created and counted as created; a reservation cancelled upstream whose
//! event was missed is checked out and counted as removed; a stay without a key is in sync;
//! the second run finds everything in sync.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_connections::Connection;
use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
use chrono::{Days, NaiveTime, Utc};
use dormakaba_adapter::inventory::DormakabaInventory;
use reconciler::{Counts, RunStatus, Scope, inventory::Inventory};
use vendor_sim::dormakaba::Product;

const TENANT: &str = "hotelco";

fn connection(sim: &vendor_sim::SimHandle) -> Connection {
    common::dormakaba_connection(TENANT, sim)
}

fn stay(status: ReservationStatus, room: &str, mobile: bool) -> Reservation {
    let arrival = Utc::now().date_naive();
    Reservation {
        status,
        guest: Guest {
            name: "Jansen, Jan".into(),
            email: None,
            mobile_phone: Some("+31612345678".into()),
        },
        arrival,
        departure: arrival.checked_add_days(Days::new(3)).unwrap(),
        check_in_time: NaiveTime::from_hms_opt(0, 0, 0).unwrap(),
        check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
        timezone: "Europe/Amsterdam".into(),
        rooms: vec![room.into()],
        common_areas: vec![],
        license_plates: vec![],
        mobile_key: mobile,
    }
}

/// Stores the desired state as booking-ingest does; publishes the event unless `missed`.
async fn ingest(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    key: &str,
    rev: i64,
    r: Reservation,
    missed: bool,
) {
    let ev = Event::new(
        TENANT,
        "hotel",
        key,
        rev,
        Source::Native,
        Utc::now(),
        EventBody::Reservation(r),
    );
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload) \
         VALUES ($1, 'reservation', $2, 'hotel', $3, 'native', $4, $5) \
         ON CONFLICT (tenant_id, kind, booking_key) DO UPDATE SET revision = EXCLUDED.revision, \
         event_id = EXCLUDED.event_id, payload = EXCLUDED.payload",
    )
    .bind(TENANT)
    .bind(key)
    .bind(rev)
    .bind(ev.id)
    .bind(serde_json::to_value(&ev).unwrap())
    .execute(&db.pool)
    .await
    .unwrap();
    if missed {
        return;
    }
    common::publish(tb, &ev).await;
}

fn rid(key: &str) -> String {
    dormakaba_adapter::desired::reservation_id(TENANT, key)
}

fn booking(sim: &vendor_sim::SimHandle, key: &str) -> Option<vendor_sim::dormakaba::Booking> {
    sim.state()
        .dormakaba_bookings(Product::Saflok)
        .into_iter()
        .find(|b| b.reservation_id == rid(key))
}

fn live_mobile_keys(sim: &vendor_sim::SimHandle, key: &str) -> usize {
    sim.state()
        .dormakaba_mobile_keys(Product::Saflok)
        .iter()
        .filter(|m| m.reservation_id == rid(key) && !m.cancelled)
        .count()
}

async fn binding_status(db: &accesshub_testkit::TestDb, key: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT status FROM bindings WHERE tenant_id = $1 AND vendor = 'dormakaba' \
         AND kind = 'reservation' AND booking_key = $2",
    )
    .bind(TENANT)
    .bind(key)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

/// A test's database, bus, simulator (demo fixtures) and connection to its Saflok.
struct Env {
    db: accesshub_testkit::TestDb,
    tb: accesshub_testkit::TestBus,
    sim: vendor_sim::SimHandle,
    conn: Connection,
}

impl Env {
    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
            .await
            .unwrap();
        sim.state().seed_demo();
        let conn = connection(&sim);
        Env { db, tb, sim, conn }
    }
}

fn worker_config(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conn: &Connection,
) -> worker_runtime::WorkerConfig {
    worker_runtime::WorkerConfig::for_test(
        tb.config(dormakaba_adapter::WORKER, &db.url),
        Arc::new(worker_runtime::StaticConnections::new(vec![conn.clone()])),
    )
}

fn sync_reconciler(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conn: &Connection,
) -> reconciler::Reconciler {
    let inv: Arc<dyn Inventory> = Arc::new(DormakabaInventory::new(100.0));
    common::reconciler(db, tb, conn, inv)
}

/// Revision 2 cancels `key` (a stay with a mobile key in `room`) in Postgres; the worker
/// never hears of it.
async fn missed_cancellation(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    key: &str,
    room: &str,
) {
    let cancelled = stay(ReservationStatus::Cancelled, room, true);
    ingest(db, tb, key, 2, cancelled, true).await;
}

/// A full sync of `conn`, which must succeed.
async fn full_sync(
    rec: &reconciler::Reconciler,
    db: &accesshub_testkit::TestDb,
    conn: &Connection,
) -> reconciler::SyncRun {
    let run = common::run(rec, db, conn, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    run
}

#[tokio::test]
async fn key_cancelled_by_hand_is_recreated_and_stale_access_checked_out() {
    let Env { db, tb, sim, conn } = Env::new().await;
    let worker = worker_runtime::start(
        worker_config(&db, &tb, &conn),
        dormakaba_adapter::DormakabaHandler::new(),
    )
    .await
    .unwrap();

    // R1 and R2 get a lock-system booking (mobile key); R3 needs none (no key cut yet).
    ingest(
        &db,
        &tb,
        "R1",
        1,
        stay(ReservationStatus::Confirmed, "101", true),
        false,
    )
    .await;
    ingest(
        &db,
        &tb,
        "R2",
        1,
        stay(ReservationStatus::Confirmed, "102", true),
        false,
    )
    .await;
    ingest(
        &db,
        &tb,
        "R3",
        1,
        stay(ReservationStatus::Confirmed, "103", false),
        false,
    )
    .await;
    common::eventually("worker booked R1 and R2 with mobile keys", || {
        live_mobile_keys(&sim, "R1") == 1 && live_mobile_keys(&sim, "R2") == 1
    })
    .await;
    let r1_before = booking(&sim, "R1").unwrap();
    let start = Instant::now();
    // The worker records after the vendor call (group commit): the keys can be live at the
    // lock system before the records exist, and the sync reads the records.
    for key in ["R1", "R2", "R3"] {
        while binding_status(&db, key).await.is_none() {
            assert!(start.elapsed() < Duration::from_secs(15), "{key} recorded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Drift: R1's keys cancelled by hand at the front desk, through the simulator's control
    // API; R2 cancelled upstream but the event never reached the worker.
    let r = reqwest::Client::new()
        .post(format!("{}/seed/dormakaba", sim.control_url()))
        .json(&serde_json::json!({"product": "saflok", "cancel_reservations": [rid("R1")]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert!(booking(&sim, "R1").is_none());
    assert_eq!(live_mobile_keys(&sim, "R1"), 0);
    missed_cancellation(&db, &tb, "R2", "102").await;

    let rec = sync_reconciler(&db, &tb, &conn);
    let run = full_sync(&rec, &db, &conn).await;
    assert_eq!(
        run.counts,
        Counts {
            checked: 3,
            in_sync: 1,
            created: 1,
            updated: 0,
            removed: 1,
            failed: 0
        }
    );
    common::eventually("R1 re-created with its mobile key, R2 checked out", || {
        booking(&sim, "R1").is_some_and(|b| !b.checked_out)
            && live_mobile_keys(&sim, "R1") == 1
            && booking(&sim, "R2").is_some_and(|b| b.checked_out)
            && live_mobile_keys(&sim, "R2") == 0
    })
    .await;
    let r1 = booking(&sim, "R1").unwrap();
    assert_eq!(r1.main_room, "101");
    assert_eq!(r1.check_out, r1_before.check_out);
    let keys = sim.state().dormakaba_keys(Product::Saflok);
    assert!(
        keys.iter()
            .filter(|k| k.reservation_id == rid("R1"))
            .all(|k| k.encoder_id == 0 && k.key_count == 0),
        "re-created without encoding a card: {keys:?}"
    );
    assert!(booking(&sim, "R3").is_none(), "R3 still needs nothing");
    // The worker has recorded the check-out before the second run reads it.
    let start = Instant::now();
    while binding_status(&db, "R2").await.as_deref() != Some("checked_out") {
        assert!(start.elapsed() < Duration::from_secs(15), "R2 recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let run2 = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(
        run2.counts,
        Counts {
            checked: 3,
            in_sync: 3,
            ..Counts::default()
        },
        "{:?}",
        run2.error
    );

    worker.shutdown().await.unwrap();
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}

/// H3: a worker killed after `CreateNewBooking` and the mobile key, before recording; the
/// cancellation was missed and the worker is down. The sync starts from that leaked state:
/// it must find the booking (its record only says a create was in doubt), count it removed,
/// and the restarted worker checks the guest out and cancels the key.
#[tokio::test]
async fn a_booking_left_by_a_crashed_create_is_checked_out_by_the_sync() {
    let Env { db, tb, sim, conn } = Env::new().await;
    let config = || worker_config(&db, &tb, &conn);
    let (tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
    let crashing = worker_runtime::start(
        config(),
        worker_runtime::AfterApply::new(
            dormakaba_adapter::DormakabaHandler::new(),
            move |_: &Event| {
                let _ = tx.send(());
                std::future::pending::<()>()
            },
        ),
    )
    .await
    .unwrap();
    ingest(
        &db,
        &tb,
        "C1",
        1,
        stay(ReservationStatus::Confirmed, "101", true),
        false,
    )
    .await;
    tokio::time::timeout(Duration::from_secs(20), applied.recv())
        .await
        .unwrap();
    assert_eq!(live_mobile_keys(&sim, "C1"), 1);
    crashing.abort().await; // nothing recorded, nothing acked
    missed_cancellation(&db, &tb, "C1", "101").await;

    let rec = sync_reconciler(&db, &tb, &conn);
    let run = full_sync(&rec, &db, &conn).await;
    assert_eq!(
        run.counts,
        Counts {
            checked: 1,
            removed: 1,
            ..Counts::default()
        }
    );
    assert!(booking(&sim, "C1").is_some_and(|b| !b.checked_out));

    let worker = worker_runtime::start(config(), dormakaba_adapter::DormakabaHandler::new())
        .await
        .unwrap();
    common::eventually("C1 checked out and its mobile key cancelled", || {
        booking(&sim, "C1").is_some_and(|b| b.checked_out) && live_mobile_keys(&sim, "C1") == 0
    })
    .await;
    worker.shutdown().await.unwrap();
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}
