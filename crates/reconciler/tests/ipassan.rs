//! iPassan end to end with ipassan-worker in-process: an asset booking moved to the wrong
//! time by hand is corrected, a deleted one re-created, a stray carrying our reference
//! removed, a booking made in iPassan by hand left alone; the second run is clean. Two copies of
//! one booking's reference are reduced to one, which the binding then records.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{Connection, IpassanSettings, Secret, VendorSettings};
use accesshub_domain::{Event, EventBody, FacilityBooking, FacilityStatus, Resident, Source};
use ipassan_adapter::inventory::IpassanInventory;
use reconciler::{Counts, RunStatus, Scope, inventory::Inventory};
use serde_json::json;
use vendor_sim::ipassan as ip;

const TENANT: &str = "housing";

fn connection(base: &str) -> Connection {
    Connection {
        tenant: TENANT.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Ipassan(IpassanSettings {
            base_url: base.into(),
            client_id: ip::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(ip::DEMO_CLIENT_SECRET),
            site_guid: ip::DEMO_SITE.into(),
            facilities: BTreeMap::from([("bbq".to_owned(), ip::DEMO_ASSET_BBQ.to_owned())]),
        }),
        version: 1,
    }
}

fn booked(key: &str, start: &str, end: &str) -> Event {
    Event::new(
        TENANT,
        "pijp",
        key,
        1,
        Source::Connecx,
        chrono::Utc::now(),
        EventBody::Facility(FacilityBooking {
            status: FacilityStatus::Booked,
            facility_id: "bbq".into(),
            resident: Resident {
                id: "res-jan".into(),
                email: "jan@example.com".into(),
                first_name: "Jan".into(),
                last_name: "de Vries".into(),
            },
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
        }),
    )
}

async fn ingest(db: &accesshub_testkit::TestDb, tb: &accesshub_testkit::TestBus, ev: &Event) {
    let EventBody::Facility(f) = &ev.body else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id,
                               payload, starts_at, ends_at)
         VALUES ($1, 'facility', $2, $3, $4, 'connecx', $5, $6, $7, $8)",
    )
    .bind(&ev.tenant)
    .bind(&ev.booking_key)
    .bind(&ev.site)
    .bind(ev.revision)
    .bind(ev.id)
    .bind(serde_json::to_value(&ev.body).unwrap())
    .bind(f.start)
    .bind(f.end)
    .execute(&db.pool)
    .await
    .unwrap();
    common::publish(tb, ev).await;
}

fn reference(key: &str) -> String {
    format!("ah:{TENANT}:facility:{key}")
}

/// (uuid, start, end) of the bookings carrying a reference.
fn bookings(sim: &vendor_sim::SimHandle, r: &str) -> Vec<(String, String, String)> {
    sim.state()
        .ipassan_bookings()
        .into_iter()
        .filter(|b| b.reference.as_deref() == Some(r))
        .map(|b| (b.uuid, b.start.to_rfc3339(), b.end.to_rfc3339()))
        .collect()
}

struct Portal {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Portal {
    async fn login(base: &str) -> Portal {
        Self::login_at(base, ip::DEMO_ASSET_BBQ).await
    }
    async fn login_at(base: &str, asset: &str) -> Portal {
        let http = reqwest::Client::new();
        let t: serde_json::Value = http
            .post(format!("{base}/api/v1/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "all"),
                ("client_id", ip::DEMO_CLIENT_ID),
                ("client_secret", ip::DEMO_CLIENT_SECRET),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Portal {
            http,
            url: format!(
                "{base}/api/v1/access/site/{}/asset/{asset}/booking",
                ip::DEMO_SITE,
            ),
            token: t["access_token"].as_str().unwrap().to_owned(),
        }
    }
    async fn delete(&self, uuid: &str) {
        let r = self
            .http
            .delete(format!("{}/{uuid}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    async fn create(&self, reference: &str, start: &str, end: &str) {
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(
                &json!({"person_uuid": ip::DEMO_PERSON_JAN, "start": start, "end": end,
                          "reference": reference, "title": "by hand"}),
            )
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{}: {}",
            r.status(),
            r.text().await.unwrap()
        );
    }
}

#[tokio::test]
async fn wrong_time_missing_and_stray_asset_bookings_are_repaired() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
        .await
        .unwrap();
    sim.state().seed_demo();
    let conn = connection(&sim.ipassan_url());
    let worker = worker_runtime::start(
        worker_runtime::WorkerConfig::for_test(
            tb.config(ipassan_adapter::WORKER, &db.url),
            Arc::new(worker_runtime::StaticConnections::new(vec![conn.clone()])),
        ),
        ipassan_adapter::IpassanHandler::default(),
    )
    .await
    .unwrap();

    let f1 = booked("F1", "2030-06-01T10:00:00Z", "2030-06-01T11:00:00Z");
    let f2 = booked("F2", "2030-06-02T10:00:00Z", "2030-06-02T11:00:00Z");
    let f3 = booked("F3", "2030-06-03T10:00:00Z", "2030-06-03T11:00:00Z");
    for ev in [&f1, &f2, &f3] {
        ingest(&db, &tb, ev).await;
    }
    common::eventually("worker applied", || {
        ["F1", "F2", "F3"]
            .iter()
            .all(|k| bookings(&sim, &reference(k)).len() == 1)
    })
    .await;

    // Drift by hand: F2 moved to the wrong time, F3 deleted, a stray with our reference for an
    // unknown booking, and a booking nobody in accesshub made.
    let portal = Portal::login(&sim.ipassan_url()).await;
    let f2_id = bookings(&sim, &reference("F2"))[0].0.clone();
    portal.delete(&f2_id).await;
    portal
        .create(
            &reference("F2"),
            "2030-06-02T12:00:00Z",
            "2030-06-02T13:00:00Z",
        )
        .await;
    let f3_id = bookings(&sim, &reference("F3"))[0].0.clone();
    portal.delete(&f3_id).await;
    portal
        .create(
            &reference("GONE"),
            "2030-06-05T10:00:00Z",
            "2030-06-05T11:00:00Z",
        )
        .await;
    portal
        .create(
            "someone-else",
            "2030-06-06T10:00:00Z",
            "2030-06-06T11:00:00Z",
        )
        .await;

    let inv: Arc<dyn Inventory> = Arc::new(IpassanInventory::new(100.0));
    let rec = common::reconciler(&db, &tb, &conn, inv);
    let run = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.counts,
        Counts {
            checked: 3,
            in_sync: 1,
            created: 1,
            updated: 1,
            removed: 1,
            failed: 0
        }
    );
    common::eventually("repairs applied", || {
        let f2 = bookings(&sim, &reference("F2"));
        f2.len() == 1
            && f2[0].1.starts_with("2030-06-02T10:00:00")
            && bookings(&sim, &reference("F3")).len() == 1
            && bookings(&sim, &reference("GONE")).is_empty()
    })
    .await;
    assert_eq!(
        bookings(&sim, "someone-else").len(),
        1,
        "foreign booking untouched"
    );

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

/// An asset without "one booking per time slot", where two copies of one window can exist.
const ROOM: &str = "6b1f3c9e-0000-4000-8000-0000000a55e2";

fn seed_room(sim: &vendor_sim::SimHandle) {
    sim.state()
        .seed_ipassan(ip::IpassanFixture {
            assets: vec![ip::Asset {
                uuid: ROOM.into(),
                site_uuid: ip::DEMO_SITE.into(),
                name: "Meeting room".into(),
                display: "week".into(),
                door_profile_uuid: None,
                floor_profile_uuid: None,
                time_slot_minutes: 30,
                max_booking_minutes: 240,
                one_booking_per_slot: false,
            }],
            ..ip::IpassanFixture::default()
        })
        .unwrap();
}

fn booked_room(key: &str, start: &str, end: &str) -> Event {
    let mut ev = booked(key, start, end);
    if let EventBody::Facility(f) = &mut ev.body {
        f.facility_id = "room".into();
    }
    ev
}

/// The booking GUID ipassan-worker's binding records for `key`.
async fn recorded(db: &accesshub_testkit::TestDb, key: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT vendor_ids->>'booking_uuid' FROM bindings
          WHERE vendor = 'ipassan' AND booking_key = $1",
    )
    .bind(key)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
    .flatten()
}

/// Issue 20: iPassan does not de-duplicate asset bookings by reference, so a booking may hold
/// two copies of one window. The reconciler flags all but one; the worker must reduce them to
/// exactly one — the copy the binding records, else the oldest — and record the one it kept,
/// whichever copy the command names. Before the fix the worker spared only the recorded copy:
/// a binding naming the later copy kept both forever (the engine keeps the oldest), and a
/// binding naming a copy that is gone went on naming it.
#[tokio::test]
async fn duplicates_are_reduced_to_one_copy_which_the_binding_records() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
        .await
        .unwrap();
    sim.state().seed_demo();
    seed_room(&sim);
    sim.state().set_dedupe(vendor_sim::Vendor::IPassan, false);
    let mut conn = connection(&sim.ipassan_url());
    if let VendorSettings::Ipassan(s) = &mut conn.settings {
        s.facilities.insert("room".into(), ROOM.into());
    }
    let worker = worker_runtime::start(
        worker_runtime::WorkerConfig::for_test(
            tb.config(ipassan_adapter::WORKER, &db.url),
            Arc::new(worker_runtime::StaticConnections::new(vec![conn.clone()])),
        ),
        ipassan_adapter::IpassanHandler::default(),
    )
    .await
    .unwrap();
    let (start, end) = ("2030-07-01T10:00:00Z", "2030-07-01T11:00:00Z");
    for key in ["D1", "D2"] {
        ingest(&db, &tb, &booked_room(key, start, end)).await;
    }
    common::eventually("worker applied", || {
        ["D1", "D2"]
            .iter()
            .all(|k| bookings(&sim, &reference(k)).len() == 1)
    })
    .await;
    let portal = Portal::login_at(&sim.ipassan_url(), ROOM).await;

    // D1: a later copy of the same window, and the binding records that later copy (as an
    // attempt whose record named it would leave it). The engine keeps the oldest.
    portal.create(&reference("D1"), start, end).await;
    let d1 = bookings(&sim, &reference("D1"));
    assert_eq!(d1.len(), 2);
    let later = d1[1].0.clone();
    sqlx::query(
        "UPDATE bindings SET vendor_ids = jsonb_set(vendor_ids, '{booking_uuid}', to_jsonb($1::text))
          WHERE vendor = 'ipassan' AND booking_key = 'D1'",
    )
    .bind(&later)
    .execute(&db.pool)
    .await
    .unwrap();

    // D2: the recorded copy deleted by hand, two copies made by hand: the oldest is kept.
    let d2_recorded = bookings(&sim, &reference("D2"))[0].0.clone();
    portal.create(&reference("D2"), start, end).await;
    portal.create(&reference("D2"), start, end).await;
    portal.delete(&d2_recorded).await;
    let oldest = bookings(&sim, &reference("D2"))[0].0.clone();
    assert_eq!(
        sim.state()
            .live_duplicates(vendor_sim::Vendor::IPassan)
            .len(),
        2
    );

    let inv: Arc<dyn Inventory> = Arc::new(IpassanInventory::new(100.0));
    let rec = common::reconciler(&db, &tb, &conn, inv);
    let run = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.counts,
        Counts {
            checked: 2,
            removed: 2,
            ..Counts::default()
        }
    );
    common::eventually("one copy each", || {
        bookings(&sim, &reference("D1")).len() == 1 && bookings(&sim, &reference("D2")).len() == 1
    })
    .await;
    assert_eq!(
        bookings(&sim, &reference("D1"))[0].0,
        later,
        "the recorded copy is kept"
    );
    assert_eq!(
        bookings(&sim, &reference("D2"))[0].0,
        oldest,
        "else the oldest"
    );
    accesshub_testkit::eventually(
        "the binding records the kept copy",
        std::time::Duration::from_secs(15),
        || async { recorded(&db, "D2").await.as_deref() == Some(oldest.as_str()) },
    )
    .await;
    assert_eq!(recorded(&db, "D1").await.as_deref(), Some(later.as_str()));
    assert!(
        sim.state()
            .live_duplicates(vendor_sim::Vendor::IPassan)
            .is_empty()
    );

    let run2 = common::run(&rec, &db, &conn, Scope::Full).await;
    assert_eq!(
        run2.counts,
        Counts {
            checked: 2,
            in_sync: 2,
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
