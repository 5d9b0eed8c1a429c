//! Sync pulls first (issue 21): the reconciler re-reads BEX before comparing with CloudPass.
//! Real NATS and Postgres, the BEX and CloudPass simulators and cloudpass-worker in-process;
//! not one webhook is sent.
//! - Backfill: a connection installed while BEX already holds reservations gets exactly the
//!   in-scope ones (arriving within 5 days by local date, or in house) as vehicle bookings.
//! - A reservation whose webhook was lost is found by the next Sync (through a 429).
//! - A reservation changed upstream is updated; one deleted upstream is marked gone and its
//!   vehicle booking removed.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use accesshub_connections::Connection;
use chrono::{Duration, NaiveDate, Utc};
use cloudpass_adapter::inventory::CloudpassInventory;
use reconciler::{RunStatus, Scope, inventory::Inventory, pull::Puller};
use serde_json::json;
use vendor_sim::{bex, cloudpass as cp};

const TENANT: &str = "hotels";
const ADMIN: &str = "4711";

/// Runs a sync of the next 5 days; it must succeed, and its pull counts are returned as
/// `[fetched, new, changed, vanished]`.
async fn sync(
    rec: &reconciler::Reconciler,
    db: &accesshub_testkit::TestDb,
    conn: &Connection,
) -> [i64; 4] {
    let run = common::run(rec, db, conn, Scope::Upcoming(5)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let p = run.pull.expect("the run pulled");
    [p.fetched, p.new, p.changed, p.vanished]
}

/// A reservation as the BEX API holds it (documented attribute names; plates in ours).
fn reservation(id: &str, arrival: NaiveDate, nights: i64, plates: &[&str]) -> bex::SimReservation {
    bex::SimReservation {
        id: id.into(),
        attributes: json!({
            "booking_nr": format!("BN-{id}"), "start_date": arrival.to_string(),
            "end_date": (arrival + Duration::days(nights)).to_string(), "state": "confirmed",
            "last_name": "Jansen", "updated_at": Utc::now().to_rfc3339(),
            "license_plates": plates,
        }),
        guests: vec![
            json!({"first_name": "Piet", "last_name": "Jansen", "email": "piet@example.com"}),
        ],
    }
}

/// The CloudPass connection of administration [`ADMIN`], its worker, and a reconciler that
/// pulls BEX with the tenant's stored credentials.
async fn cloudpass_with_pull(
    db: &accesshub_testkit::TestDb,
    tb: &accesshub_testkit::TestBus,
    sim: &vendor_sim::SimHandle,
    upstreams: &accesshub_upstreams::UpstreamStore,
) -> (
    Connection,
    worker_runtime::WorkerHandle,
    reconciler::Reconciler,
) {
    let conn = common::cloudpass_connection(TENANT, ADMIN, &sim.cloudpass_url());
    let worker = common::cloudpass_worker(db, tb, vec![conn.clone()]).await;
    let inv: Arc<dyn Inventory> = Arc::new(CloudpassInventory::new().unwrap());
    let rec = common::reconciler(db, tb, &conn, inv).with_puller(Puller::new(
        db.pool.clone(),
        tb.bus.clone(),
        upstreams.clone(),
    ));
    (conn, worker, rec)
}

/// The desired state stored for reservation `key`.
async fn stored_reservation(
    db: &accesshub_testkit::TestDb,
    key: &str,
) -> accesshub_domain::Reservation {
    let stored: String =
        sqlx::query_scalar("SELECT payload::text FROM bookings WHERE booking_key = $1")
            .bind(key)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let stored: accesshub_domain::Event = serde_json::from_str(&stored).unwrap();
    let accesshub_domain::EventBody::Reservation(r) = stored.body else {
        panic!("{stored:?}")
    };
    r
}

fn reference(key: &str, plate: &str) -> String {
    format!("ah:{TENANT}:reservation:{key}:{plate}")
}

fn at_vendor(sim: &vendor_sim::SimHandle, key: &str, plate: &str) -> bool {
    sim.state()
        .cloudpass_booking_by_reference(cp::DEMO_SITE_AMSTERDAM, &reference(key, plate))
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pulls_bex_first_backfills_repairs_lost_webhooks_and_removes_vanished() {
    let (db, tb, sim) = common::setup().await;
    let bexsim = bex::start_ephemeral().await.unwrap();
    let today = Utc::now().date_naive();
    for r in [
        reservation("IN1", today + Duration::days(1), 2, &["PA11AA"]),
        reservation("IN2", today + Duration::days(3), 2, &["PB22BB", "PC33CC"]),
        reservation("HOUSE", today - Duration::days(2), 4, &["PD44DD"]),
        reservation("NOPLATE", today + Duration::days(2), 1, &[]),
        reservation("FAR", today + Duration::days(10), 2, &["PE55EE"]),
        reservation("PAST", today - Duration::days(5), 3, &["PF66FF"]),
    ] {
        bexsim.put_reservation(ADMIN, r);
    }

    // Installing: the tenant, its BEX API key (sealed), the CloudPass connection.
    let (upstreams, _) =
        common::install_upstream(&db, TENANT, "bex", bexsim.url(), bex::DEMO_API_KEY.into()).await;
    let (conn, worker, rec) = cloudpass_with_pull(&db, &tb, &sim, &upstreams).await;

    // First Sync = backfill: exactly the in-scope reservations, no webhook anywhere.
    assert_eq!(sync(&rec, &db, &conn).await, [4, 4, 0, 0]);
    common::eventually("in-scope vehicle bookings created", || {
        at_vendor(&sim, "IN1", "PA11AA")
            && at_vendor(&sim, "IN2", "PB22BB")
            && at_vendor(&sim, "IN2", "PC33CC")
            && at_vendor(&sim, "HOUSE", "PD44DD")
    })
    .await;
    assert!(!at_vendor(&sim, "FAR", "PE55EE"), "beyond 5 days");
    assert!(!at_vendor(&sim, "PAST", "PF66FF"), "departed");
    let r = stored_reservation(&db, "IN1").await;
    assert_eq!(
        r.guest.name, "Jansen, Piet",
        "the guest comes from the guests endpoint"
    );
    assert_eq!(r.guest.email.as_deref(), Some("piet@example.com"));

    // A webhook lost on the way: the reservation exists only in BEX. The next Sync finds it,
    // through two 429s (Retry-After honoured).
    bexsim.put_reservation(
        ADMIN,
        reservation("LOST", today + Duration::days(2), 2, &["PG77GG"]),
    );
    bexsim.throttle_next(2);
    assert_eq!(sync(&rec, &db, &conn).await, [5, 1, 0, 0]);
    common::eventually("lost webhook repaired", || {
        at_vendor(&sim, "LOST", "PG77GG")
    })
    .await;

    // Changed upstream (a plate swapped) and deleted upstream.
    bexsim.put_reservation(
        ADMIN,
        reservation("IN2", today + Duration::days(3), 2, &["PB22BB", "PH88HH"]),
    );
    assert!(bexsim.delete_reservation(ADMIN, "IN1"));
    assert_eq!(sync(&rec, &db, &conn).await, [4, 0, 1, 1]);
    common::eventually("change and deletion applied", || {
        at_vendor(&sim, "IN2", "PH88HH")
            && !at_vendor(&sim, "IN2", "PC33CC")
            && !at_vendor(&sim, "IN1", "PA11AA")
    })
    .await;

    worker.shutdown().await.unwrap();
    bexsim.shutdown().await;
    common::teardown(db, tb, sim).await;
}

/// Install per organization (issue 21 item 4): a tenant tied to its BEX organization pulls no
/// administration BEX lists under another one, even when the connection maps it and the API
/// key reaches it; the run names both organizations. And a reservation references the
/// rentable (object) it occupies: the pulled event carries the object id as its room, for a
/// lock system's room map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_organizations_administration_is_not_pulled_and_rentables_are_rooms() {
    let (db, tb, sim) = common::setup().await;
    let bexsim = bex::start_ephemeral().await.unwrap();
    let today = Utc::now().date_naive();
    bexsim.put_reservation(
        ADMIN,
        reservation("ORG1", today + Duration::days(1), 2, &["PJ99JJ"]),
    );
    bexsim.put_rentable(ADMIN, "5501", "Kamer 12");
    bexsim.set_rentable(ADMIN, "ORG1", "5501");
    bexsim.set_organization(ADMIN, "org-other");

    let (upstreams, sbox) =
        common::install_upstream(&db, TENANT, "bex", bexsim.url(), bex::DEMO_API_KEY.into()).await;
    let tenants = accesshub_connections::TenantStore::new(db.pool.clone(), sbox);
    tenants
        .set_source_secret(TENANT, "bex", None, std::time::Duration::ZERO)
        .await
        .unwrap();
    tenants
        .set_organization(TENANT, "bex", Some("org-mine"))
        .await
        .unwrap()
        .unwrap();
    let (conn, worker, rec) = cloudpass_with_pull(&db, &tb, &sim, &upstreams).await;

    let run = common::run(&rec, &db, &conn, Scope::Upcoming(5)).await;
    assert_eq!(run.status, RunStatus::Partial, "{:?}", run.error);
    let why = run.error.unwrap_or_default();
    assert!(
        why.contains("belongs to organization org-other, not the tenant's org-mine"),
        "{why}"
    );
    assert_eq!(run.pull.map(|p| p.fetched), Some(0), "nothing pulled");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    // The administration is the tenant's after all: pulled, the rentable as its room.
    bexsim.set_organization(ADMIN, "org-mine");
    assert_eq!(sync(&rec, &db, &conn).await, [1, 1, 0, 0]);
    let r = stored_reservation(&db, "ORG1").await;
    assert_eq!(r.rooms, vec!["5501".to_owned()]);
    common::eventually("pulled once the organization matches", || {
        at_vendor(&sim, "ORG1", "PJ99JJ")
    })
    .await;

    worker.shutdown().await.unwrap();
    bexsim.shutdown().await;
    common::teardown(db, tb, sim).await;
}

/// Bookings are keyed by source on the pull too (issue 21 item 6): another upstream of the
/// tenant already holds the plain key `123`, so BEX's webhook of reservation 123 is stored as
/// `bex:123`; the next Sync pulls the same reservation and must meet that booking — one BEX
/// booking, one vehicle booking at CloudPass — rather than store a second one under `123`
/// (overwriting the other upstream's booking).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_reservation_is_the_booking_its_webhook_stored_under_the_source_key() {
    use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus, Source};
    let (db, tb, sim) = common::setup().await;
    let bexsim = bex::start_ephemeral().await.unwrap();
    let today = Utc::now().date_naive();
    let res = reservation("123", today + Duration::days(1), 2, &["PK12KK"]);
    bexsim.put_reservation(ADMIN, res.clone());
    let (ingest, _) = common::ingest(&db, &tb, TENANT, &["native", "bex"], &[]).await;

    // Another upstream's reservation 123 (another site, no plates).
    let other = Event::new(
        TENANT,
        "other-hotel",
        "123",
        1,
        Source::Native,
        Utc::now(),
        EventBody::Reservation(Reservation {
            status: ReservationStatus::Confirmed,
            guest: Guest {
                name: "Other, Guest".into(),
                email: None,
                mobile_phone: None,
            },
            arrival: today,
            departure: today + Duration::days(1),
            check_in_time: chrono::NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
            check_out_time: chrono::NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
            timezone: "Europe/Amsterdam".into(),
            rooms: vec![],
            common_areas: vec![],
            license_plates: vec![],
            mobile_key: false,
        }),
    );
    let a = common::send(
        &tb,
        "native",
        TENANT,
        &serde_json::to_value(&other).unwrap(),
    )
    .await;
    assert_eq!(a["status"], "accepted", "{a}");
    // BEX's App webhook of the reservation the simulator holds.
    let webhook = json!({
        "event": "reservation|confirmed", "subscription_id": "sub-1",
        "context": "administration", "context_id": ADMIN,
        "record": {"data": {"id": "123", "type": "reservation", "attributes": res.attributes,
            "relationships": {"administration": {"data": {"id": ADMIN, "type": "administration"}}}}}
    });
    let a = common::send(&tb, "bex", TENANT, &webhook).await;
    assert_eq!(a["status"], "accepted", "{a}");

    let (upstreams, _) =
        common::install_upstream(&db, TENANT, "bex", bexsim.url(), bex::DEMO_API_KEY.into()).await;
    let (conn, worker, rec) = cloudpass_with_pull(&db, &tb, &sim, &upstreams).await;
    common::eventually("the webhook's vehicle booking", || {
        at_vendor(&sim, "bex:123", "PK12KK")
    })
    .await;

    // The pull meets the webhook's booking: nothing new, nothing changed (same revision).
    assert_eq!(sync(&rec, &db, &conn).await, [1, 0, 0, 0]);
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT booking_key, source FROM bookings WHERE kind = 'reservation' ORDER BY booking_key",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("123".to_owned(), "native".to_owned()),
            ("bex:123".to_owned(), "bex".to_owned())
        ],
        "one BEX booking; the other upstream's untouched"
    );
    // And a second Sync leaves it so: one vehicle booking for the plate.
    assert_eq!(sync(&rec, &db, &conn).await, [1, 0, 0, 0]);
    let plates = || {
        sim.state()
            .cloudpass_bookings()
            .into_iter()
            .filter(|b| b.license_plate == "PK12KK")
            .count()
    };
    assert_eq!(plates(), 1);

    worker.shutdown().await.unwrap();
    ingest.shutdown().await;
    bexsim.shutdown().await;
    common::teardown(db, tb, sim).await;
}
