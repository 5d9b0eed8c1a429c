//! The whole worker: real NATS and Postgres (accesshub-testkit), the worker runtime, and the
//! iPassan simulator in-process. Events go in on the BOOKINGS stream; we look at the
//! simulator's state and call log, the `bindings` table and the DLQ.

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

use accesshub_testkit::eventually;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use accesshub_connections::{Connection, IpassanSettings, Secret, VendorSettings};
use accesshub_domain::{
    DeadLetter, ErrorClass, Event, EventBody, FacilityBooking, FacilityStatus, Resident, Source,
    headers, subjects,
};
use accesshub_testkit::{TestBus, TestDb};
use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, Utc};
use ipassan_adapter::IpassanHandler;
use ipassan_adapter::client::{IpassanClient, NewBooking};
use vendor_http::{HttpSettings, VendorClient};
use vendor_sim::ipassan::{
    Asset, DEMO_ASSET_BBQ, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PERSON_JAN, DEMO_SITE,
    IpassanFixture,
};
use vendor_sim::{SimConfig, SimHandle, Vendor};
use worker_runtime::{Binding, BindingKey, StaticConnections, WorkerConfig, WorkerHandle};

const TENANT: &str = "residence";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Env {
    db: TestDb,
    tb: TestBus,
    sim: SimHandle,
}

impl Env {
    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
        sim.state().seed_demo();
        Env { db, tb, sim }
    }

    fn settings(&self, site: &str) -> IpassanSettings {
        IpassanSettings {
            base_url: self.sim.ipassan_url(),
            client_id: DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(DEMO_CLIENT_SECRET),
            site_guid: site.into(),
            facilities: BTreeMap::from([("rooftop-bbq".to_owned(), DEMO_ASSET_BBQ.to_owned())]),
        }
    }

    async fn start(&self, site: &str, page_size: u32) -> WorkerHandle {
        self.start_with(self.settings(site), page_size).await
    }

    async fn start_with(&self, settings: IpassanSettings, page_size: u32) -> WorkerHandle {
        let conn = Connection {
            tenant: TENANT.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Ipassan(settings),
            version: 1,
        };
        let cfg = WorkerConfig::for_test(
            self.tb.config("ipassan-worker", &self.db.url),
            Arc::new(StaticConnections::new(vec![conn])),
        );
        worker_runtime::start(
            cfg,
            IpassanHandler::new(HttpSettings::default()).with_page_size(page_size),
        )
        .await
        .unwrap()
    }

    fn client(&self) -> IpassanClient {
        IpassanClient::new(
            VendorClient::new("ipassan", HttpSettings::default()).unwrap(),
            &self.settings(DEMO_SITE),
        )
    }

    async fn publish(&self, ev: &Event) {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::MSG_ID, ev.id.to_string().as_str());
        h.insert(headers::TENANT, ev.tenant.as_str());
        h.insert(headers::KIND, ev.kind().as_str());
        let msg = PublishMessage::build()
            .payload(serde_json::to_vec(ev).unwrap().into())
            .headers(h);
        self.tb
            .bus
            .js
            .send_publish(self.tb.bus.subject(&ev.subject()), msg)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Stores `ev` as the booking's desired state, as booking-ingest does (a removal is
    /// judged against it).
    async fn store(&self, ev: &Event) {
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
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    async fn binding(&self, key: &str) -> Option<Binding> {
        worker_runtime::get_binding(
            &self.db.pool,
            &BindingKey {
                tenant: TENANT.into(),
                vendor: "ipassan".into(),
                kind: "facility".into(),
                booking_key: key.into(),
            },
        )
        .await
        .unwrap()
    }

    async fn applied(&self, key: &str, rev: i64) -> Binding {
        eventually(
            &format!("{key} revision {rev}"),
            Duration::from_secs(15),
            || async {
                self.binding(key)
                    .await
                    .is_some_and(|b| b.applied_revision == rev)
            },
        )
        .await;
        self.binding(key).await.unwrap()
    }

    async fn dead_letter(&self, ev: &Event) -> DeadLetter {
        let stream = self
            .tb
            .bus
            .js
            .get_stream(self.tb.bus.stream_name(subjects::DLQ_STREAM))
            .await
            .unwrap();
        let subj = self
            .tb
            .bus
            .subject(&subjects::dlq("ipassan-worker", &ev.subject()));
        eventually("dead letter", Duration::from_secs(15), || async {
            stream.get_last_raw_message_by_subject(&subj).await.is_ok()
        })
        .await;
        let m = stream.get_last_raw_message_by_subject(&subj).await.unwrap();
        serde_json::from_slice(&m.payload).unwrap()
    }

    fn ours(&self, key: &str) -> Vec<vendor_sim::ipassan::AssetBooking> {
        let r = reference(key);
        self.sim
            .state()
            .ipassan_bookings()
            .into_iter()
            .filter(|b| b.reference.as_deref() == Some(r.as_str()))
            .collect()
    }

    /// What an attempt that booked `key` on the BBQ (2030-05-01 10:00-11:00) and died before
    /// recording leaves: the asset booking with our reference and the runtime's attempt
    /// marker (committed before any attempt of a new booking calls the vendor), no binding —
    /// as after a crash before the create's own record (an older build's attempt).
    async fn left_by_a_crash(&self, key: &str) -> ipassan_adapter::client::AssetBooking {
        sqlx::query(
            "INSERT INTO vendor_attempts (tenant_id, vendor, kind, booking_key)
             VALUES ($1, 'ipassan', 'facility', $2)",
        )
        .bind(TENANT)
        .bind(key)
        .execute(&self.db.pool)
        .await
        .unwrap();
        let b = self
            .client()
            .create_booking(
                DEMO_ASSET_BBQ,
                &NewBooking {
                    person_uuid: DEMO_PERSON_JAN.into(),
                    start: t("2030-05-01T10:00:00Z"),
                    end: t("2030-05-01T11:00:00Z"),
                    reference: reference(key),
                    title: "Jan de Vries".into(),
                },
            )
            .await
            .unwrap();
        assert!(self.binding(key).await.is_none());
        b
    }

    async fn finish(self, h: WorkerHandle) {
        h.shutdown().await.unwrap();
        self.tb.cleanup().await;
        self.db.drop_db().await;
        self.sim.shutdown().await;
    }
}

fn reference(key: &str) -> String {
    format!("ah:{TENANT}:facility:{key}")
}

fn event(key: &str, rev: i64, status: FacilityStatus, mail: &str, start: &str, end: &str) -> Event {
    Event::new(
        TENANT,
        "de-pijp",
        key,
        rev,
        Source::Connecx,
        Utc::now(),
        EventBody::Facility(FacilityBooking {
            status,
            facility_id: "rooftop-bbq".into(),
            resident: Resident {
                id: format!("res-{mail}"),
                email: mail.into(),
                first_name: "Jan".into(),
                last_name: "de Vries".into(),
            },
            start: t(start),
            end: t(end),
        }),
    )
}

fn booked(key: &str, rev: i64, start: &str, end: &str) -> Event {
    event(
        key,
        rev,
        FacilityStatus::Booked,
        "jan@example.com",
        start,
        end,
    )
}

#[tokio::test]
async fn create_move_cancel() {
    let env = Env::new().await;
    // 25 more assets: at 10 a page the asset list takes three pages per event.
    let assets: Vec<Asset> = (0..25)
        .map(|i| room(format!("filler-asset-{i:02}"), i))
        .collect();
    env.sim
        .state()
        .seed_ipassan(IpassanFixture {
            assets,
            ..Default::default()
        })
        .unwrap();
    let h = env.start(DEMO_SITE, 10).await;

    env.publish(&booked(
        "cx-1",
        1,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    ))
    .await;
    let b = env.applied("cx-1", 1).await;
    assert_eq!(b.status, "booked");
    let list = env.ours("cx-1");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].person_uuid, DEMO_PERSON_JAN);
    assert_eq!(b.vendor_ids["booking_uuid"], list[0].uuid.as_str());
    assert_eq!(b.vendor_ids["asset_uuid"], DEMO_ASSET_BBQ);
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::IPassan, "GET", "/asset?"),
        3,
        "26 assets at 10 a page"
    );

    // Moved to an overlapping window on the one-booking-per-slot BBQ.
    env.publish(&booked(
        "cx-1",
        2,
        "2030-05-01T10:30:00Z",
        "2030-05-01T12:30:00Z",
    ))
    .await;
    env.applied("cx-1", 2).await;
    let list = env.ours("cx-1");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].start, list[0].end),
        (t("2030-05-01T10:30:00Z"), t("2030-05-01T12:30:00Z"))
    );

    // Moved to a later, separate window: created before the old one is deleted.
    env.sim.state().clear_calls();
    env.publish(&booked(
        "cx-1",
        3,
        "2030-05-02T18:00:00Z",
        "2030-05-02T19:00:00Z",
    ))
    .await;
    env.applied("cx-1", 3).await;
    let writes: Vec<String> = env
        .sim
        .state()
        .calls_for(Vendor::IPassan)
        .into_iter()
        .filter(|c| c.path.contains("/booking") && c.method != "GET")
        .map(|c| c.method)
        .collect();
    assert_eq!(writes, ["POST", "DELETE"]);
    assert_eq!(env.ours("cx-1").len(), 1);

    env.publish(&event(
        "cx-1",
        4,
        FacilityStatus::Cancelled,
        "jan@example.com",
        "2030-05-02T18:00:00Z",
        "2030-05-02T19:00:00Z",
    ))
    .await;
    let b = env.applied("cx-1", 4).await;
    assert_eq!(b.status, "cancelled");
    assert!(env.ours("cx-1").is_empty());
    env.finish(h).await;
}

#[tokio::test]
async fn rule_violations_and_missing_profile_go_to_the_dlq_with_reasons() {
    let env = Env::new().await;
    let h = env.start(DEMO_SITE, 100).await;
    let cases = [
        (
            booked(
                "off-slot",
                1,
                "2030-05-01T10:10:00Z",
                "2030-05-01T11:00:00Z",
            ),
            vec![
                "time slot boundaries",
                "start 2030-05-01T10:10:00Z",
                "30-minute",
            ],
        ),
        (
            booked(
                "too-long",
                1,
                "2030-05-01T10:00:00Z",
                "2030-05-01T13:00:00Z",
            ),
            vec!["max booking time", "180 minutes", "maximum of 120"],
        ),
        (
            event(
                "eva",
                1,
                FacilityStatus::Booked,
                "eva@example.com",
                "2030-05-01T14:00:00Z",
                "2030-05-01T15:00:00Z",
            ),
            vec!["access profiles", "floor access profile 'Floor 7'"],
        ),
    ];
    for (ev, needles) in &cases {
        env.publish(ev).await;
        let dl = env.dead_letter(ev).await;
        assert_eq!(dl.class, ErrorClass::Permanent);
        assert_eq!(dl.attempts, 1, "permanent: no retries");
        for n in needles {
            assert!(dl.reason.contains(n), "{:?} lacks {n:?}", dl.reason);
        }
        // The DLQ entry is published before the binding records the failure.
        eventually("binding dead_lettered", Duration::from_secs(15), || async {
            env.binding(&ev.booking_key)
                .await
                .is_some_and(|b| b.status == "dead_lettered")
        })
        .await;
    }
    // One booking per slot: someone else holds 16:00-16:30.
    let other = env
        .client()
        .create_booking(
            DEMO_ASSET_BBQ,
            &NewBooking {
                person_uuid: DEMO_PERSON_JAN.into(),
                start: t("2030-05-01T16:00:00Z"),
                end: t("2030-05-01T16:30:00Z"),
                reference: "manual".into(),
                title: "Manual".into(),
            },
        )
        .await
        .unwrap();
    let ev = booked("overlap", 1, "2030-05-01T15:30:00Z", "2030-05-01T16:30:00Z");
    env.publish(&ev).await;
    let dl = env.dead_letter(&ev).await;
    assert!(
        dl.reason.contains("one booking per time slot"),
        "{}",
        dl.reason
    );
    assert!(dl.reason.contains(&other.uuid), "{}", dl.reason);
    assert!(
        dl.reason
            .contains("2030-05-01T16:00:00Z - 2030-05-01T16:30:00Z"),
        "{}",
        dl.reason
    );
    // Unmapped facility.
    let mut ev = booked(
        "unmapped",
        1,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    if let EventBody::Facility(f) = &mut ev.body {
        f.facility_id = "sauna".into();
    }
    env.publish(&ev).await;
    let dl = env.dead_letter(&ev).await;
    assert!(
        dl.reason.contains(
            "facility sauna is not mapped to an iPassan asset in connection residence/default"
        ),
        "{}",
        dl.reason
    );
    // Only the creates iPassan itself refuses reached the booking endpoint: the overlap
    // (a plain create is not pre-checked with a list of every booking of the asset) and the
    // missing profile; the window and mapping rules never did.
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::IPassan, "POST", "/booking"),
        3,
        "manual booking + the overlap and the missing profile iPassan refused"
    );
    env.finish(h).await;
}

#[tokio::test]
async fn retry_after_crash_adopts_the_booking_instead_of_creating_another() {
    let env = Env::new().await;
    // A previous run created the booking at iPassan and crashed before recording the binding.
    let pre = env.left_by_a_crash("cx-crash").await;
    env.sim.state().clear_calls();
    let h = env.start(DEMO_SITE, 100).await;
    env.publish(&booked(
        "cx-crash",
        1,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    ))
    .await;
    let b = env.applied("cx-crash", 1).await;
    assert_eq!(b.vendor_ids["booking_uuid"], pre.uuid.as_str());
    assert_eq!(env.ours("cx-crash").len(), 1);
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::IPassan, "POST", "/booking"),
        0
    );
    env.finish(h).await;
}

/// M6: an attempt booked the facility on asset A1 (the rooftop BBQ) and died before
/// recording it; the next revision moves the booking to another facility (asset A2). No
/// record names A1, so only a search of every mapped asset finds the killed attempt's
/// booking: nothing of ours may stay on A1.
#[tokio::test]
async fn a_facility_change_after_a_crash_leaves_nothing_on_the_old_asset() {
    let env = Env::new().await;
    let lounge = "6b1f3c9e-0000-4000-8000-0000000a55e2";
    env.sim
        .state()
        .seed_ipassan(IpassanFixture {
            assets: vec![Asset {
                uuid: lounge.into(),
                site_uuid: DEMO_SITE.into(),
                name: "Lounge".into(),
                display: "week".into(),
                door_profile_uuid: None,
                floor_profile_uuid: None,
                time_slot_minutes: 30,
                max_booking_minutes: 120,
                one_booking_per_slot: true,
            }],
            ..Default::default()
        })
        .unwrap();
    env.left_by_a_crash("cx-moved").await;
    let mut settings = env.settings(DEMO_SITE);
    settings
        .facilities
        .insert("lounge".to_owned(), lounge.to_owned());
    let h = env.start_with(settings, 100).await;
    let mut moved = booked(
        "cx-moved",
        2,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    if let EventBody::Facility(f) = &mut moved.body {
        f.facility_id = "lounge".into();
    }
    env.publish(&moved).await;
    let b = env.applied("cx-moved", 2).await;
    assert_eq!(b.vendor_ids["asset_uuid"], lounge);
    let ours = env.ours("cx-moved");
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        ours[0].asset_uuid, lounge,
        "nothing of ours left on the BBQ"
    );
    env.finish(h).await;
}

#[tokio::test]
async fn wrong_site_guid_is_dead_lettered_with_a_clear_reason() {
    let env = Env::new().await;
    let h = env.start("00000000-0000-4000-8000-000000000bad", 100).await;
    let ev = booked("cx-site", 1, "2030-05-01T10:00:00Z", "2030-05-01T11:00:00Z");
    env.publish(&ev).await;
    let dl = env.dead_letter(&ev).await;
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert_eq!(dl.attempts, 1);
    assert!(dl.reason.contains("Access Denied"), "{}", dl.reason);
    assert!(
        dl.reason.contains("00000000-0000-4000-8000-000000000bad"),
        "{}",
        dl.reason
    );
    assert!(dl.reason.contains("site_guid"), "{}", dl.reason);
    env.finish(h).await;
}

#[tokio::test]
async fn vendor_outage_is_retried_then_applied() {
    let env = Env::new().await;
    let mut rule =
        vendor_sim::FaultRule::next_n(Vendor::IPassan, vendor_sim::FaultKind::Status503, 2);
    rule.path_contains = Some("/asset".into());
    env.sim.state().add_fault(rule);
    let h = env.start(DEMO_SITE, 100).await;
    env.publish(&booked(
        "cx-flaky",
        1,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    ))
    .await;
    let b = env.applied("cx-flaky", 1).await;
    assert_eq!(b.status, "booked");
    assert_eq!(env.ours("cx-flaky").len(), 1);
    env.finish(h).await;
}

#[tokio::test]
async fn reconciler_removes_a_stray_but_never_the_current_booking() {
    use accesshub_domain::{EventKind, sync};
    let env = Env::new().await;
    let h = env.start(DEMO_SITE, 100).await;
    let ev = booked("cx-s", 1, "2030-05-01T10:00:00Z", "2030-05-01T11:00:00Z");
    env.store(&ev).await;
    env.publish(&ev).await;
    let b = env.applied("cx-s", 1).await;
    let current = b.vendor_ids["booking_uuid"].as_str().unwrap().to_owned();
    // A leftover with our reference, e.g. from a move whose delete never happened.
    let stray = env
        .client()
        .create_booking(
            DEMO_ASSET_BBQ,
            &NewBooking {
                person_uuid: DEMO_PERSON_JAN.into(),
                start: t("2030-05-01T14:00:00Z"),
                end: t("2030-05-01T15:00:00Z"),
                reference: reference("cx-s"),
                title: "Jan de Vries".into(),
            },
        )
        .await
        .unwrap();
    for id in [&stray.uuid, &current] {
        let cmd = sync::RemoveCommand {
            run_id: 1,
            tenant: TENANT.into(),
            vendor: "ipassan".into(),
            connection: "default".into(),
            kind: EventKind::Facility,
            booking_key: "cx-s".into(),
            reference: reference("cx-s"),
            vendor_id: ipassan_adapter::apply::stray_id(DEMO_ASSET_BBQ, id),
        };
        let mut hm = async_nats::HeaderMap::new();
        hm.insert(sync::HEADER_RUN, "1");
        hm.insert(sync::HEADER_ACTION, "remove");
        let msg = PublishMessage::build()
            .payload(serde_json::to_vec(&cmd).unwrap().into())
            .headers(hm);
        env.tb
            .bus
            .js
            .send_publish(
                env.tb
                    .bus
                    .subject(&subjects::sync("ipassan", TENANT, "cx-s")),
                msg,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually("stray removed", Duration::from_secs(15), || async {
        env.ours("cx-s").iter().all(|b| b.uuid != stray.uuid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: Vec<String> = env.ours("cx-s").into_iter().map(|b| b.uuid).collect();
    assert_eq!(left, [current], "the binding's booking is kept");
    env.finish(h).await;
}

/// Room `i` of the demo site: 15-minute slots, an hour at most, parallel bookings allowed.
fn room(uuid: String, i: usize) -> Asset {
    Asset {
        uuid,
        site_uuid: DEMO_SITE.into(),
        name: format!("Room {i}"),
        display: "week".into(),
        door_profile_uuid: None,
        floor_profile_uuid: None,
        time_slot_minutes: 15,
        max_booking_minutes: 60,
        one_booking_per_slot: false,
    }
}

/// `n` more facilities mapped to rooms that allow parallel bookings (seeded at the simulator),
/// and the settings mapping them besides the BBQ.
fn with_rooms(env: &Env, n: usize) -> IpassanSettings {
    let rooms: Vec<Asset> = (0..n)
        .map(|i| room(format!("room-asset-{i:02}"), i))
        .collect();
    env.sim
        .state()
        .seed_ipassan(IpassanFixture {
            assets: rooms,
            ..Default::default()
        })
        .unwrap();
    let mut settings = env.settings(DEMO_SITE);
    for i in 0..n {
        settings
            .facilities
            .insert(format!("room-{i:02}"), format!("room-asset-{i:02}"));
    }
    settings
}

/// The iPassan calls since the last time, as "<method> <path without query>", token calls
/// left out (one per client, not per event); the log is cleared.
fn calls_since(env: &Env) -> Vec<String> {
    let out = env
        .sim
        .state()
        .calls_for(Vendor::IPassan)
        .into_iter()
        .filter(|c| !c.path.contains("/token"))
        .map(|c| {
            let path = c.path.split('?').next().unwrap_or_default();
            let path = path.trim_start_matches(&format!("/api/v1/access/site/{DEMO_SITE}"));
            format!("{} {path}", c.method)
        })
        .collect();
    env.sim.state().clear_calls();
    out
}

/// Issue 25: with a dozen mapped assets, a create, an update and a cancel cost what they cost
/// with one: the asset's rules, the person, our booking on the one asset the record names (none
/// on a booking's first attempt), and the writes. No other mapped asset is searched.
#[tokio::test]
async fn calls_per_event_stay_flat_with_many_mapped_assets() {
    let env = Env::new().await;
    let settings = with_rooms(&env, 12);
    let h = env.start_with(settings, 100).await;
    calls_since(&env);
    let bbq = format!("/asset/{DEMO_ASSET_BBQ}/booking");

    env.publish(&booked(
        "cx-n",
        1,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    ))
    .await;
    let b = env.applied("cx-n", 1).await;
    assert_eq!(b.vendor_ids["tracked"], true, "{}", b.vendor_ids);
    assert!(b.vendor_ids.get("creating").is_none(), "{}", b.vendor_ids);
    assert_eq!(
        calls_since(&env),
        ["GET /asset", "GET /person", &format!("POST {bbq}")],
        "create"
    );

    env.publish(&booked(
        "cx-n",
        2,
        "2030-05-01T12:00:00Z",
        "2030-05-01T13:00:00Z",
    ))
    .await;
    let b = env.applied("cx-n", 2).await;
    let old = env.ours("cx-n");
    assert_eq!(old.len(), 1);
    let update = calls_since(&env);
    assert_eq!(update.len(), 5, "update: {update:?}");
    assert_eq!(
        update[..4],
        [
            "GET /asset",
            "GET /person",
            &format!("GET {bbq}"),
            &format!("POST {bbq}")
        ],
        "update: rules, person, our booking on the recorded asset, make before break"
    );
    assert!(
        update[4].starts_with(&format!("DELETE {bbq}/")),
        "{update:?}"
    );
    assert_eq!(b.vendor_ids["booking_uuid"], old[0].uuid.as_str());

    env.publish(&event(
        "cx-n",
        3,
        FacilityStatus::Cancelled,
        "jan@example.com",
        "2030-05-01T12:00:00Z",
        "2030-05-01T13:00:00Z",
    ))
    .await;
    env.applied("cx-n", 3).await;
    let cancel = calls_since(&env);
    assert_eq!(cancel.len(), 2, "cancel: {cancel:?}");
    assert_eq!(cancel[0], format!("GET {bbq}"));
    assert!(
        cancel[1].starts_with(&format!("DELETE {bbq}/")),
        "{cancel:?}"
    );
    assert!(env.ours("cx-n").is_empty());
    env.finish(h).await;
}

/// The create is recorded before it is sent: a create iPassan applied but whose answer was
/// lost leaves its asset in the record, and the retry finds the booking there — searching that
/// asset only, not every mapped one — instead of creating a second.
#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_on_the_asset_it_recorded() {
    let env = Env::new().await;
    let settings = with_rooms(&env, 12);
    let mut rule = vendor_sim::FaultRule::next_n(
        Vendor::IPassan,
        vendor_sim::FaultKind::Status503AfterCommit,
        1,
    );
    rule.path_contains = Some("/booking".into());
    rule.method = Some("POST".into());
    env.sim.state().add_fault(rule);
    let h = env.start_with(settings, 100).await;
    calls_since(&env);
    env.publish(&booked(
        "cx-lost",
        1,
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    ))
    .await;
    let b = env.applied("cx-lost", 1).await;
    let ours = env.ours("cx-lost");
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(b.vendor_ids["booking_uuid"], ours[0].uuid.as_str());
    let calls = calls_since(&env);
    let posts = calls.iter().filter(|c| c.starts_with("POST")).count();
    assert_eq!(posts, 1, "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.contains("room-asset-")),
        "no other mapped asset searched: {calls:?}"
    );
    env.finish(h).await;
}

/// A crash after the create's record and the create, and a facility change before the next
/// event: the record names the asset of the create, so the next event finds the killed
/// attempt's booking there and removes it — searching the new asset and that one only.
#[tokio::test]
async fn a_facility_change_after_a_recorded_crash_searches_only_the_recorded_assets() {
    let env = Env::new().await;
    let mut settings = with_rooms(&env, 12);
    settings
        .facilities
        .insert("lounge".to_owned(), "room-asset-00".to_owned());
    env.left_by_a_crash("cx-rec").await;
    // What the killed attempt recorded right before its create.
    sqlx::query(
        "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, \
           vendor_ids, ids_version, status) \
         VALUES ($1, 'ipassan', 'facility', 'cx-rec', 0, $2, 1, 'in_flight')",
    )
    .bind(TENANT)
    .bind(serde_json::json!({"creating": DEMO_ASSET_BBQ, "tracked": true}))
    .execute(&env.db.pool)
    .await
    .unwrap();
    let h = env.start_with(settings, 100).await;
    calls_since(&env);
    let mut moved = booked("cx-rec", 2, "2030-05-01T10:00:00Z", "2030-05-01T11:00:00Z");
    if let EventBody::Facility(f) = &mut moved.body {
        f.facility_id = "lounge".into();
    }
    env.publish(&moved).await;
    let b = env.applied("cx-rec", 2).await;
    assert_eq!(b.vendor_ids["asset_uuid"], "room-asset-00");
    let ours = env.ours("cx-rec");
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        ours[0].asset_uuid, "room-asset-00",
        "nothing left on the BBQ"
    );
    let lists: Vec<String> = calls_since(&env)
        .into_iter()
        .filter(|c| c.starts_with("GET /asset/"))
        .collect();
    assert_eq!(
        lists,
        [
            "GET /asset/room-asset-00/booking".to_owned(),
            format!("GET /asset/{DEMO_ASSET_BBQ}/booking"),
        ]
    );
    env.finish(h).await;
}
