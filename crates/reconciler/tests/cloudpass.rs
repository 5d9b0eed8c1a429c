//! CloudPass end to end: real NATS and Postgres, the simulator and cloudpass-worker in-process.
//! Drift injected by hand at the vendor (a booking deleted, one edited, one of two plates gone,
//! strays carrying our reference, foreign bookings) is found, counted, repaired through the
//! worker via the SYNC stream; a second run finds everything in sync; foreign objects are
//! never touched.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_connections::{CloudpassAdministration, Connection, Secret, VendorSettings};
use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
use chrono::{NaiveDate, NaiveTime};
use cloudpass_adapter::inventory::CloudpassInventory;
use reconciler::{
    Counts, Reconciler, RunStatus, Scope, Settings, Trigger,
    connections::{StaticConnections, conn_ref},
    inventory::Inventory,
    store,
};
use serde_json::json;
use vendor_sim::cloudpass as cp;

const TENANT: &str = "parks";
const ADMIN: &str = "adm-ams";

fn connection(base: &str) -> Connection {
    common::cloudpass_connection(TENANT, ADMIN, base)
}

fn reservation(key: &str, plates: &[&str], status: ReservationStatus) -> Event {
    let arrival = NaiveDate::from_ymd_opt(2030, 5, 1).unwrap();
    Event::new(
        TENANT,
        ADMIN,
        key,
        1,
        Source::Bex,
        chrono::Utc::now(),
        EventBody::Reservation(Reservation {
            status,
            guest: Guest {
                name: "Jansen, Piet".into(),
                email: None,
                mobile_phone: None,
            },
            arrival,
            departure: arrival + chrono::Duration::days(3),
            check_in_time: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
            check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
            timezone: "Europe/Amsterdam".into(),
            rooms: vec![],
            common_areas: vec![],
            license_plates: plates.iter().map(|p| (*p).to_owned()).collect(),
            mobile_key: false,
        }),
    )
}

/// What booking-ingest does: desired state row + event on BOOKINGS.
async fn ingest(db: &accesshub_testkit::TestDb, tb: &accesshub_testkit::TestBus, ev: &Event) {
    let EventBody::Reservation(r) = &ev.body else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id,
                               payload, starts_at, ends_at)
         VALUES ($1, 'reservation', $2, $3, $4, 'bex', $5, $6, $7, $8)",
    )
    .bind(&ev.tenant)
    .bind(&ev.booking_key)
    .bind(&ev.site)
    .bind(ev.revision)
    .bind(ev.id)
    .bind(serde_json::to_value(ev).unwrap())
    .bind(r.check_in().unwrap())
    .bind(r.check_out().unwrap())
    .execute(&db.pool)
    .await
    .unwrap();
    common::publish(tb, ev).await;
}

/// An operator working in the CloudPass portal (plain HTTP against the simulator).
struct Portal {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Portal {
    async fn login(base: &str) -> Portal {
        let http = reqwest::Client::new();
        let t: serde_json::Value = http
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", cp::DEMO_CLIENT_ID),
                ("client_secret", cp::DEMO_CLIENT_SECRET),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Portal {
            http,
            base: base.to_owned(),
            token: t["access_token"].as_str().unwrap().to_owned(),
        }
    }

    fn url(&self, id: Option<&str>) -> String {
        let site = cp::DEMO_SITE_AMSTERDAM;
        match id {
            Some(id) => format!("{}/api/v1/sites/{site}/vehicle-bookings/{id}", self.base),
            None => format!("{}/api/v1/sites/{site}/vehicle-bookings", self.base),
        }
    }

    async fn delete(&self, id: &str) {
        let r = self
            .http
            .delete(self.url(Some(id)))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn patch(&self, id: &str, body: serde_json::Value) {
        let r = self
            .http
            .patch(self.url(Some(id)))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn create(&self, reference: &str, plate: &str) {
        let r = self
            .http
            .post(self.url(None))
            .bearer_auth(&self.token)
            .json(&json!({
                "reference": reference, "license_plate": plate,
                "valid_from": "2030-05-01T12:00:00Z", "valid_until": "2030-05-04T10:00:00Z",
                "time_restriction_id": cp::DEMO_TR_AMSTERDAM_24_7, "name": "by hand",
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

fn booking(sim: &vendor_sim::SimHandle, reference: &str) -> Option<cp::VehicleBooking> {
    sim.state()
        .cloudpass_booking_by_reference(cp::DEMO_SITE_AMSTERDAM, reference)
}

fn r(key: &str, plate: &str) -> String {
    format!("ah:{TENANT}:reservation:{key}:{plate}")
}

#[tokio::test]
async fn drift_is_found_counted_and_repaired_then_everything_is_in_sync() {
    let (db, tb, sim) = common::setup().await;
    let conn = connection(&sim.cloudpass_url());
    let worker = common::cloudpass_worker(&db, &tb, vec![conn.clone()]).await;

    // Desired state, applied by the worker from BOOKINGS.
    let confirmed = ReservationStatus::Confirmed;
    for ev in [
        reservation("R1", &["ab-12 cd"], confirmed),
        reservation("R2", &["XX99YY"], confirmed),
        reservation("R3", &["ZZ11ZZ"], confirmed),
        reservation("R4", &["CC22CC", "DD33DD"], confirmed),
        reservation("R5", &["EE55EE"], ReservationStatus::Cancelled),
    ] {
        ingest(&db, &tb, &ev).await;
    }
    common::eventually("worker applied R1-R4", || {
        [
            "R1:AB12CD",
            "R2:XX99YY",
            "R3:ZZ11ZZ",
            "R4:CC22CC",
            "R4:DD33DD",
        ]
        .iter()
        .all(|k| booking(&sim, &format!("ah:{TENANT}:reservation:{k}")).is_some())
    })
    .await;
    let sql_bindings = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bindings WHERE applied_revision = 1")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    let start = Instant::now();
    while sql_bindings().await < 5 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let original_r3 = booking(&sim, &r("R3", "ZZ11ZZ")).unwrap();

    // Drift, by hand in the portal.
    let portal = Portal::login(&sim.cloudpass_url()).await;
    portal
        .delete(&booking(&sim, &r("R2", "XX99YY")).unwrap().id)
        .await;
    portal
        .patch(
            &original_r3.id,
            json!({"valid_until": "2030-05-10T10:00:00Z"}),
        )
        .await;
    portal
        .delete(&booking(&sim, &r("R4", "DD33DD")).unwrap().id)
        .await;
    portal.create(&r("GONE", "GG44GG"), "GG44GG").await; // our reference, unknown booking
    portal.create(&r("R5", "EE55EE"), "EE55EE").await; // our reference, cancelled booking
    portal.create("MANUAL-1", "MM11MM").await; // not ours
    portal
        .create("ah:other:reservation:X:OT11OT", "OT11OT")
        .await; // another tenant's

    // Run 1 (through the queue, as `accessctl sync run` does).
    let inv: Arc<dyn Inventory> = Arc::new(CloudpassInventory::new().unwrap());
    let rec = common::reconciler(&db, &tb, &conn, inv);
    let c = conn_ref(&conn);
    store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, Some("test"))
        .await
        .unwrap();
    let run = rec.drain_queue().await.unwrap().pop().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.counts,
        Counts {
            checked: 5,
            in_sync: 1,
            created: 1,
            updated: 2,
            removed: 2,
            failed: 0
        }
    );

    // The worker repairs from SYNC.
    common::eventually("repairs applied", || {
        booking(&sim, &r("R2", "XX99YY")).is_some()
            && booking(&sim, &r("R4", "DD33DD")).is_some()
            && booking(&sim, &r("R3", "ZZ11ZZ"))
                .is_some_and(|b| b.valid_until == original_r3.valid_until)
            && booking(&sim, &r("GONE", "GG44GG")).is_none()
            && booking(&sim, &r("R5", "EE55EE")).is_none()
    })
    .await;
    assert!(
        booking(&sim, "MANUAL-1").is_some(),
        "foreign booking untouched"
    );
    assert!(booking(&sim, "ah:other:reservation:X:OT11OT").is_some());
    assert_eq!(sim.state().cloudpass_bookings().len(), 5 + 2);

    // Run 2: nothing to do.
    store::request_run(&db.pool, &c, Scope::Full, Trigger::Api, None)
        .await
        .unwrap();
    let run2 = rec.drain_queue().await.unwrap().pop().unwrap();
    assert_eq!(run2.status, RunStatus::Succeeded, "{:?}", run2.error);
    assert_eq!(
        run2.counts,
        Counts {
            checked: 5,
            in_sync: 5,
            ..Counts::default()
        }
    );
    // Scope `upcoming` 5 days: the 2030 stays are not in it, and nothing is judged or removed.
    store::request_run(&db.pool, &c, Scope::Upcoming(5), Trigger::Api, None)
        .await
        .unwrap();
    let run3 = rec.drain_queue().await.unwrap().pop().unwrap();
    assert_eq!(run3.counts, Counts::default());
    let listed = store::list_runs(&db.pool, Some(TENANT), Some("cloudpass"), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);

    worker.shutdown().await.unwrap();
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn transient_list_errors_are_retried_and_a_refused_listing_fails_the_run_without_repairs() {
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
        .await
        .unwrap();
    sim.state().seed_demo();
    let conn = connection(&sim.cloudpass_url());
    ingest(
        &db,
        &tb,
        &reservation("R1", &["AB12CD"], ReservationStatus::Confirmed),
    )
    .await;
    let rec = |conn: Connection| {
        Reconciler::new(
            db.pool.clone(),
            tb.bus.clone(),
            Arc::new(StaticConnections::new(vec![conn])),
            vec![Arc::new(CloudpassInventory::new().unwrap()) as Arc<dyn Inventory>],
            Settings {
                default_schedules: false,
                ..Settings::default()
            },
        )
    };
    // Two 503s on the list endpoint: retried, the run succeeds (R1 is missing → created).
    sim.state().add_fault(vendor_sim::FaultRule::next_n(
        vendor_sim::Vendor::CloudPass,
        vendor_sim::FaultKind::Status503,
        2,
    ));
    store::request_run(
        &db.pool,
        &conn_ref(&conn),
        Scope::Full,
        Trigger::Manual,
        None,
    )
    .await
    .unwrap();
    let run = rec(conn.clone())
        .drain_queue()
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.counts.created, 1);

    // An API user without permission: 403 is permanent, the run fails, nothing is sent.
    let mut noperm = conn.clone();
    if let VendorSettings::Cloudpass(s) = &mut noperm.settings {
        s.client_id = cp::DEMO_NOPERM_CLIENT_ID.into();
        s.client_secret = Secret::new(cp::DEMO_NOPERM_CLIENT_SECRET);
    }
    store::request_run(
        &db.pool,
        &conn_ref(&noperm),
        Scope::Full,
        Trigger::Manual,
        None,
    )
    .await
    .unwrap();
    let run = rec(noperm).drain_queue().await.unwrap().pop().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error.as_deref().unwrap_or("").contains("permission"),
        "{:?}",
        run.error
    );
    assert_eq!(run.counts, Counts::default());
    let stream = tb
        .bus
        .js
        .get_stream(tb.bus.stream_name(accesshub_domain::subjects::SYNC_STREAM))
        .await
        .unwrap();
    assert_eq!(
        stream.cached_info().state.messages,
        1,
        "only the first run's repair"
    );

    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}

fn reconciler_for(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    conns: Vec<Connection>,
) -> Reconciler {
    common::reconciler_with(db, tb, conns, Arc::new(CloudpassInventory::new().unwrap()))
}

async fn applied(db: &accesshub_testkit::TestDb, key: &str, revision: i64) {
    accesshub_testkit::eventually("applied", Duration::from_secs(15), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT applied_revision FROM bindings WHERE booking_key = $1 AND vendor = 'cloudpass'",
        )
        .bind(key)
        .fetch_optional(&db.pool)
        .await
        .unwrap()
            == Some(revision)
    })
    .await;
}

fn copies(sim: &vendor_sim::SimHandle, reference: &str) -> Vec<cp::VehicleBooking> {
    sim.state()
        .cloudpass_bookings()
        .into_iter()
        .filter(|b| b.reference == reference)
        .collect()
}

/// One confirmed reservation with one plate, applied; a second copy of its booking inserted
/// (an exact copy, as a crash or a vendor without de-duplication leaves, listed after the
/// original); with `drift`, the original (the recorded copy) then edited by hand. One full run
/// must remove one copy and a second run find everything in sync. Returns the copy left, the
/// original as first applied, and the inserted copy's id.
async fn the_copy_left_after_a_run(
    key: &str,
    drift: bool,
) -> (cp::VehicleBooking, cp::VehicleBooking, String) {
    let (db, tb, sim) = common::setup().await;
    let conn = connection(&sim.cloudpass_url());
    let worker = common::cloudpass_worker(&db, &tb, vec![conn.clone()]).await;
    ingest(
        &db,
        &tb,
        &reservation(key, &["AB12CD"], ReservationStatus::Confirmed),
    )
    .await;
    applied(&db, key, 1).await;
    let reference = r(key, "AB12CD");
    let original = booking(&sim, &reference).unwrap();
    let copy = cp::VehicleBooking {
        id: format!("copy-{key}"),
        ..original.clone()
    };
    sim.state().cloudpass_insert_bookings([copy.clone()]);
    assert_eq!(copies(&sim, &reference).len(), 2);
    if drift {
        Portal::login(&sim.cloudpass_url())
            .await
            .patch(&original.id, json!({"valid_until": "2030-05-10T10:00:00Z"}))
            .await;
    }

    let rec = reconciler_for(&db, &tb, vec![conn.clone()]);
    let run = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.counts,
        Counts {
            checked: 1,
            removed: 1,
            ..Counts::default()
        }
    );
    common::eventually("one copy left", || copies(&sim, &reference).len() == 1).await;
    let left = copies(&sim, &reference).remove(0);
    let run2 = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(
        run2.counts,
        Counts {
            checked: 1,
            in_sync: 1,
            ..Counts::default()
        }
    );
    worker.shutdown().await.unwrap();
    common::teardown(db, tb, sim).await;
    (left, original, copy.id)
}

/// M5(a): a second booking carrying a desired reference is a duplicate: flagged, and removed
/// by the worker, which keeps the first exact copy (here the recorded original).
#[tokio::test]
async fn a_second_copy_of_a_desired_reference_is_removed_as_a_duplicate() {
    let (left, original, _) = the_copy_left_after_a_run("D1", false).await;
    assert_eq!(left.id, original.id, "the recorded copy is kept");
}

/// Issue 20 leftover: the recorded copy has drifted (edited by hand) next to an exact copy.
/// The run keeps the exact one and asks for the recorded one to go; the worker must agree,
/// or it deletes the exact copy and keeps the wrong window, which nothing in the run repairs
/// (the second run would find it wrong, not in sync).
#[tokio::test]
async fn a_duplicate_converges_to_the_exact_copy_not_the_recorded_one() {
    let (left, original, copy) = the_copy_left_after_a_run("D2", true).await;
    assert_eq!(left.id, copy, "the exact copy is kept");
    assert_eq!(left.valid_until, original.valid_until);
}

/// M5(b): the booking's administration moved to another connection; a booking left at the
/// old connection's site is removed by the old connection's sync (and by its worker).
#[tokio::test]
async fn a_booking_left_under_the_connection_a_reservation_moved_away_from_is_removed() {
    let (db, tb, sim) = common::setup().await;
    let ams = Connection {
        name: "ams".into(),
        sites: vec![ADMIN.into()],
        ..connection(&sim.cloudpass_url())
    };
    let mut utr = Connection {
        name: "utr".into(),
        sites: vec!["adm-utr".into()],
        ..connection(&sim.cloudpass_url())
    };
    if let VendorSettings::Cloudpass(s) = &mut utr.settings {
        s.administrations.clear();
        s.administrations.insert(
            "adm-utr".into(),
            CloudpassAdministration {
                site_id: cp::DEMO_SITE_UTRECHT.into(),
                time_restriction_id: Some("cp-tr-utr-247".into()),
            },
        );
    }
    let conns = vec![ams.clone(), utr.clone()];
    let worker = common::cloudpass_worker(&db, &tb, conns.clone()).await;
    let mut ev = reservation("MV", &["MV11"], ReservationStatus::Confirmed);
    ev.site = "adm-utr".into();
    ingest(&db, &tb, &ev).await;
    applied(&db, "MV", 1).await;
    let reference = r("MV", "MV11");
    let at = |site: &str| copies(&sim, &reference).iter().any(|b| b.site_id == site);
    assert!(at(cp::DEMO_SITE_UTRECHT));
    // What the move left behind at Amsterdam (e.g. a crash before the record).
    let utrecht = copies(&sim, &reference).remove(0);
    sim.state().cloudpass_insert_bookings([cp::VehicleBooking {
        id: "left-behind".into(),
        site_id: cp::DEMO_SITE_AMSTERDAM.into(),
        time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
        ..utrecht
    }]);

    let rec = reconciler_for(&db, &tb, conns);
    let run = common::run(&rec, &db, &ams, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.counts.removed, 1, "{:?}", run.counts);
    common::eventually("left-behind booking removed", || {
        !at(cp::DEMO_SITE_AMSTERDAM)
    })
    .await;
    assert!(at(cp::DEMO_SITE_UTRECHT), "the current booking stays");
    let run = common::run(&rec, &db, &utr, Scope::Full).await;
    assert_eq!(run.counts.in_sync, 1, "{:?}", run.counts);
    worker.shutdown().await.unwrap();
    common::teardown(db, tb, sim).await;
}

/// M4: a stale removal (the reconciler saw the booking cancelled; it was re-confirmed before
/// the command ran) does not delete the booking the current desired state wants.
#[tokio::test]
async fn a_stale_removal_does_not_delete_a_booking_the_current_state_wants() {
    let (db, tb, sim) = common::setup().await;
    let conn = connection(&sim.cloudpass_url());
    let worker = common::cloudpass_worker(&db, &tb, vec![conn.clone()]).await;
    let confirmed = reservation("K", &["KK11"], ReservationStatus::Confirmed);
    ingest(&db, &tb, &confirmed).await;
    applied(&db, "K", 1).await;
    worker.shutdown().await.unwrap();
    let reference = r("K", "KK11");
    let o = booking(&sim, &reference).unwrap();

    // The reconciler sees K cancelled (stored, its event not applied yet) → remove(O).
    let set = |ev: Event| {
        let pool = db.pool.clone();
        async move {
            sqlx::query("UPDATE bookings SET payload = $1, revision = $2 WHERE booking_key = 'K'")
                .bind(serde_json::to_value(&ev).unwrap())
                .bind(ev.revision)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let mut cancelled = reservation("K", &["KK11"], ReservationStatus::Cancelled);
    cancelled.revision = 2;
    set(cancelled).await;
    let rec = reconciler_for(&db, &tb, vec![conn.clone()]);
    let run = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(run.counts.removed, 1, "{:?}", run.counts);
    // Re-confirmed before the worker gets to the command.
    let mut again = reservation("K", &["KK11"], ReservationStatus::Confirmed);
    again.revision = 3;
    set(again).await;

    let worker = common::cloudpass_worker(&db, &tb, vec![conn.clone()]).await;
    let consumer: async_nats::jetstream::consumer::PullConsumer = tb
        .bus
        .js
        .get_consumer_from_stream(
            tb.bus
                .ns
                .stream(&format!("{}-sync", cloudpass_adapter::NAME)),
            tb.bus.stream_name(accesshub_domain::subjects::SYNC_STREAM),
        )
        .await
        .unwrap();
    accesshub_testkit::eventually("removal handled", Duration::from_secs(15), || {
        let mut c = consumer.clone();
        async move {
            let i = c.info().await.unwrap();
            i.ack_floor.stream_sequence >= 1 && i.num_ack_pending == 0 && i.num_pending == 0
        }
    })
    .await;
    assert_eq!(
        booking(&sim, &reference).map(|b| b.id),
        Some(o.id),
        "the wanted booking was deleted"
    );
    worker.shutdown().await.unwrap();
    common::teardown(db, tb, sim).await;
}
