//! cloudpass-worker end to end: events on the namespaced BOOKINGS stream → worker → CloudPass
//! simulator, against the real NATS and Postgres.

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

use accesshub_testkit::eventually;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use accesshub_connections::{
    CloudpassAdministration, CloudpassSettings, Connection, Secret, VendorSettings,
};
use accesshub_domain::{
    DeadLetter, ErrorClass, Event, EventBody, Guest, Reservation, ReservationStatus, Source,
    headers, subjects,
};
use accesshub_testkit::{TestBus, TestDb};
use async_nats::jetstream::message::PublishMessage;
use chrono::{NaiveDate, NaiveTime, Utc};
use cloudpass_adapter::CloudpassHandler;
use vendor_sim::{FaultKind, FaultRule, SimConfig, SimHandle, Vendor, cloudpass as cp};
use worker_runtime::{Handler, StaticConnections, WorkerConfig, WorkerHandle};

struct Env {
    db: TestDb,
    tb: TestBus,
    sim: SimHandle,
}

fn connection(sim: &SimHandle, client: (&str, &str)) -> Connection {
    let mut administrations = BTreeMap::new();
    administrations.insert(
        "adm-ams".to_owned(),
        CloudpassAdministration {
            site_id: cp::DEMO_SITE_AMSTERDAM.into(),
            time_restriction_id: None,
        },
    );
    Connection {
        tenant: "parks".into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Cloudpass(CloudpassSettings {
            base_url: sim.cloudpass_url(),
            client_id: client.0.into(),
            client_secret: Secret::new(client.1),
            administrations,
            default_time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
            reapply_time_restriction: false,
            window_before_minutes: 30,
            window_after_minutes: 30,
        }),
        version: 1,
    }
}

impl Env {
    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
        sim.state().seed_demo();
        Env { db, tb, sim }
    }

    fn config_with(&self, client: (&str, &str)) -> WorkerConfig {
        WorkerConfig::for_test(
            self.tb.config(cloudpass_adapter::NAME, &self.db.url),
            Arc::new(StaticConnections::new(vec![connection(&self.sim, client)])),
        )
    }

    fn config(&self) -> WorkerConfig {
        self.config_with((cp::DEMO_CLIENT_ID, cp::DEMO_CLIENT_SECRET))
    }

    async fn start<H: Handler>(&self, h: H) -> WorkerHandle {
        worker_runtime::start(self.config(), h).await.unwrap()
    }

    async fn publish(&self, ev: &Event) {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::MSG_ID, ev.id.to_string().as_str());
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

    /// Bookings of one reservation: (plate, from, until, time restriction), sorted.
    fn bookings_of(&self, key: &str) -> Vec<(String, String, String, String)> {
        let prefix = format!("ah:parks:reservation:{key}:");
        let mut v: Vec<_> = self
            .sim
            .state()
            .cloudpass_bookings()
            .into_iter()
            .filter(|b| b.reference.starts_with(&prefix))
            .map(|b| {
                (
                    b.license_plate,
                    b.valid_from.to_rfc3339(),
                    b.valid_until.to_rfc3339(),
                    b.time_restriction_id,
                )
            })
            .collect();
        v.sort();
        v
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
            .subject(&subjects::dlq(cloudpass_adapter::NAME, &ev.subject()));
        eventually("dead letter", Duration::from_secs(10), || async {
            stream.get_last_raw_message_by_subject(&subj).await.is_ok()
        })
        .await;
        let m = stream.get_last_raw_message_by_subject(&subj).await.unwrap();
        serde_json::from_slice(&m.payload).unwrap()
    }

    async fn finish(self, h: WorkerHandle) {
        h.shutdown().await.unwrap();
        self.sim.shutdown().await;
        self.tb.cleanup().await;
        self.db.drop_db().await;
    }
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn reservation(
    key: &str,
    rev: i64,
    status: ReservationStatus,
    arrival: &str,
    departure: &str,
    plates: &[&str],
    site: &str,
) -> Event {
    Event::new(
        "parks",
        site,
        key,
        rev,
        Source::Bex,
        Utc::now(),
        EventBody::Reservation(Reservation {
            status,
            guest: Guest {
                name: "Doe, John".into(),
                email: None,
                mobile_phone: None,
            },
            arrival: d(arrival),
            departure: d(departure),
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

use ReservationStatus::{Cancelled, Confirmed};

#[tokio::test]
async fn one_booking_per_plate_dst_correct_window_and_follows_changes() {
    let env = Env::new().await;
    let h = env.start(CloudpassHandler::new()).await;
    // Arrival the day before the spring-forward change (CET +1), departure after it (CEST +2).
    let ev = reservation(
        "r1",
        1,
        Confirmed,
        "2030-03-30",
        "2030-04-01",
        &["ab-12 cd", "xy 99 zz", "AB12CD"],
        "adm-ams",
    );
    env.publish(&ev).await;
    eventually("two bookings", Duration::from_secs(10), || async {
        env.bookings_of("r1").len() == 2
    })
    .await;
    let tr = cp::DEMO_TR_AMSTERDAM_24_7.to_owned();
    let from = "2030-03-30T13:30:00+00:00".to_owned(); // 15:00 CET − 30 min
    let until = "2030-04-01T09:30:00+00:00".to_owned(); // 11:00 CEST + 30 min
    assert_eq!(
        env.bookings_of("r1"),
        vec![
            ("AB12CD".into(), from.clone(), until.clone(), tr.clone()),
            ("XY99ZZ".into(), from.clone(), until.clone(), tr.clone()),
        ]
    );
    // Plate removed, one added, dates moved.
    env.publish(&reservation(
        "r1",
        2,
        Confirmed,
        "2030-07-01",
        "2030-07-03",
        &["AB12CD", "new 1"],
        "adm-ams",
    ))
    .await;
    let from2 = "2030-07-01T12:30:00+00:00".to_owned(); // 15:00 CEST − 30 min
    let until2 = "2030-07-03T09:30:00+00:00".to_owned();
    eventually("bookings follow", Duration::from_secs(10), || async {
        env.bookings_of("r1")
            == vec![
                ("AB12CD".into(), from2.clone(), until2.clone(), tr.clone()),
                ("NEW1".into(), from2.clone(), until2.clone(), tr.clone()),
            ]
    })
    .await;
    // Cancelled: all gone.
    env.publish(&reservation(
        "r1",
        3,
        Cancelled,
        "2030-07-01",
        "2030-07-03",
        &["AB12CD", "new 1"],
        "adm-ams",
    ))
    .await;
    eventually("cancelled", Duration::from_secs(10), || async {
        env.bookings_of("r1").is_empty()
    })
    .await;
    // One POST per plate ever created: 3 (AB12CD, XY99ZZ, NEW1).
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::CloudPass, "POST", "/vehicle-bookings"),
        3
    );
    env.finish(h).await;
}

#[tokio::test]
async fn reordering_and_duplicates_converge() {
    let env = Env::new().await;
    let h = env.start(CloudpassHandler::new()).await;
    let r3 = reservation(
        "r2",
        3,
        Confirmed,
        "2030-05-10",
        "2030-05-12",
        &["CC11"],
        "adm-ams",
    );
    let r2 = reservation(
        "r2",
        2,
        Confirmed,
        "2030-05-01",
        "2030-05-02",
        &["BB11"],
        "adm-ams",
    );
    env.publish(&r3).await;
    env.publish(&r2).await;
    env.publish(&r3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = env.bookings_of("r2");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].0, "CC11");
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::CloudPass, "POST", "/vehicle-bookings"),
        1
    );
    env.finish(h).await;
}

#[tokio::test]
async fn forbidden_is_permanent_with_the_operator_hint() {
    let env = Env::new().await;
    let cfg = env.config_with((cp::DEMO_NOPERM_CLIENT_ID, cp::DEMO_NOPERM_CLIENT_SECRET));
    let h = worker_runtime::start(cfg, CloudpassHandler::new())
        .await
        .unwrap();
    let ev = reservation(
        "r3",
        1,
        Confirmed,
        "2030-05-10",
        "2030-05-12",
        &["DD11"],
        "adm-ams",
    );
    env.publish(&ev).await;
    let dl = env.dead_letter(&ev).await;
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert!(
        dl.reason.contains("Settings → Website Users"),
        "{}",
        dl.reason
    );
    assert_eq!(dl.attempts, 1);
    env.finish(h).await;
}

/// An administration the operator left unmapped has access control off: the event is a
/// counted skip (binding `ignored`, `accesshub_worker_ignored_total`), never a dead letter.
#[tokio::test]
async fn an_unmapped_administration_is_ignored_not_dead_lettered() {
    let env = Env::new().await;
    let h = env.start(CloudpassHandler::new()).await;
    let ev = reservation(
        "r4",
        1,
        Confirmed,
        "2030-05-10",
        "2030-05-12",
        &["EE11"],
        "adm-unknown",
    );
    env.publish(&ev).await;
    env.applied("r4", 1).await;
    assert_eq!(env.binding("r4").await.unwrap().status, "ignored");
    assert!(env.bookings_of("r4").is_empty());
    let metrics = h.registry().encode();
    assert!(
        metrics.contains(
            "accesshub_worker_ignored_total{worker=\"cloudpass-worker\",reason=\"unmapped\"} 1"
        ),
        "{metrics}"
    );
    let dlq = env
        .tb
        .bus
        .js
        .get_stream(env.tb.bus.stream_name(subjects::DLQ_STREAM))
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(dlq.state.messages, 0);
    env.finish(h).await;
}

#[tokio::test]
async fn converges_under_20_percent_faults_without_duplicate_bookings() {
    let env = Env::new().await;
    let st = env.sim.state();
    st.add_fault(
        FaultRule::probability(Vendor::CloudPass, FaultKind::Status503, 0.08).on_path("/api/v1"),
    );
    st.add_fault(
        FaultRule::probability(Vendor::CloudPass, FaultKind::Status500, 0.04).on_path("/api/v1"),
    );
    st.add_fault(
        FaultRule::probability(
            Vendor::CloudPass,
            FaultKind::Status429 {
                retry_after_secs: 0,
            },
            0.04,
        )
        .on_path("/api/v1"),
    );
    st.add_fault(
        FaultRule::probability(Vendor::CloudPass, FaultKind::DropConnection, 0.04)
            .on_path("/api/v1"),
    );
    let mut cfg = env.config();
    cfg.max_deliver = 30;
    let h = worker_runtime::start(cfg, CloudpassHandler::new())
        .await
        .unwrap();
    let n = 30;
    for i in 0..n {
        let p1 = format!("P{i}A");
        let p2 = format!("P{i}B");
        env.publish(&reservation(
            &format!("f{i}"),
            1,
            Confirmed,
            "2030-06-01",
            "2030-06-03",
            &[&p1, &p2],
            "adm-ams",
        ))
        .await;
    }
    eventually("all converge", Duration::from_secs(60), || async {
        (0..n).all(|i| env.bookings_of(&format!("f{i}")).len() == 2)
    })
    .await;
    let all = st.cloudpass_bookings();
    assert_eq!(all.len(), 2 * n, "no duplicate vehicle bookings");
    assert!(
        st.calls_for(Vendor::CloudPass)
            .iter()
            .any(|c| c.injected_fault)
    );
    env.finish(h).await;
}

/// Applies for real, then "crashes" before the runtime can record the binding and ack.
fn crash_after_apply(
    applied: tokio::sync::mpsc::UnboundedSender<()>,
) -> impl Handler<Ids = <CloudpassHandler as Handler>::Ids> {
    worker_runtime::AfterApply::new(CloudpassHandler::new(), move |_: &Event| {
        let _ = applied.send(());
        std::future::pending::<()>()
    })
}

#[tokio::test]
async fn crash_between_vendor_call_and_ack_creates_no_second_booking() {
    let env = Env::new().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = env.start(crash_after_apply(tx)).await;
    env.publish(&reservation(
        "c1",
        1,
        Confirmed,
        "2030-06-01",
        "2030-06-03",
        &["KK11", "KK22"],
        "adm-ams",
    ))
    .await;
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    h.abort().await;
    let h = env.start(CloudpassHandler::new()).await;
    // Applied, not only the plates recorded as pending before the crash.
    env.applied("c1", 1).await;
    assert_eq!(env.bookings_of("c1").len(), 2);
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::CloudPass, "POST", "/vehicle-bookings"),
        2
    );
    env.finish(h).await;
}

fn key(booking: &str) -> worker_runtime::BindingKey {
    worker_runtime::BindingKey {
        tenant: "parks".into(),
        vendor: "cloudpass".into(),
        kind: "reservation".into(),
        booking_key: booking.into(),
    }
}

impl Env {
    async fn binding(&self, booking: &str) -> Option<worker_runtime::Binding> {
        worker_runtime::get_binding(&self.db.pool, &key(booking))
            .await
            .unwrap()
    }

    /// Waits until the booking's binding records `revision` as applied.
    async fn applied(&self, booking: &str, revision: i64) {
        // An upper bound, not a figure: under the whole suite (the cluster chaos test's dozen
        // processes on 2 cores) a restarted worker took over 15 s twice.
        eventually("applied", Duration::from_secs(40), || async {
            self.binding(booking)
                .await
                .is_some_and(|b| b.applied_revision == revision)
        })
        .await;
    }
}

fn vehicle_booking(reference: &str, plate: &str, site: &str) -> cp::VehicleBooking {
    let t = chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    cp::VehicleBooking {
        id: uuid::Uuid::new_v4().to_string(),
        site_id: site.into(),
        reference: reference.into(),
        license_plate: plate.into(),
        valid_from: t,
        valid_until: t + chrono::Duration::days(2),
        time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
        name: Some("another guest".into()),
        created_at: t,
    }
}

/// M7: a vendor that ignores the `reference` filter lists another guest's booking first; the
/// worker must neither patch it into ours nor delete it on cancellation.
#[tokio::test]
async fn a_foreign_booking_is_never_taken_for_ours_when_the_reference_filter_is_ignored() {
    let env = Env::new().await;
    let st = env.sim.state();
    st.cloudpass_set_modes(cp::CloudPassModes {
        ignore_reference_filter: true,
    });
    let foreign = vehicle_booking("MANUAL-7", "FO11RN", cp::DEMO_SITE_AMSTERDAM);
    st.cloudpass_insert_bookings([foreign.clone()]);
    let h = env.start(CloudpassHandler::new()).await;
    let ev = |rev, status| {
        reservation(
            "m7",
            rev,
            status,
            "2030-06-01",
            "2030-06-03",
            &["AB12CD"],
            "adm-ams",
        )
    };
    env.publish(&ev(1, Confirmed)).await;
    env.applied("m7", 1).await;
    let unchanged = |st: &vendor_sim::SimState| {
        st.cloudpass_bookings()
            .into_iter()
            .find(|b| b.id == foreign.id)
            .is_some_and(|b| b == foreign)
    };
    assert!(unchanged(st), "the foreign booking was changed");
    assert_eq!(env.bookings_of("m7").len(), 1);
    env.publish(&ev(2, Cancelled)).await;
    env.applied("m7", 2).await;
    assert!(unchanged(st), "the foreign booking was changed or deleted");
    assert!(env.bookings_of("m7").is_empty());
    env.finish(h).await;
}

/// One plate CloudPass refuses (422) does not keep the others from access: they are applied
/// and recorded, and the event dead-letters naming the refused plate by position only.
#[tokio::test]
async fn an_invalid_plate_does_not_stop_the_others_and_dead_letters_naming_it() {
    let env = Env::new().await;
    let h = env.start(CloudpassHandler::new()).await;
    let ev = reservation(
        "p422",
        1,
        Confirmed,
        "2030-06-01",
        "2030-06-03",
        &["ZZ99", "bad!plate", "AA11"],
        "adm-ams",
    );
    env.publish(&ev).await;
    let dl = env.dead_letter(&ev).await;
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert!(
        dl.reason.contains("plate #2 of 3 (BA*******"),
        "{}",
        dl.reason
    );
    assert!(
        !dl.reason.to_uppercase().contains("BAD!PLATE"),
        "{}",
        dl.reason
    );
    let plates: Vec<String> = env.bookings_of("p422").into_iter().map(|b| b.0).collect();
    assert_eq!(plates, ["AA11", "ZZ99"]);
    let b = env.binding("p422").await.unwrap();
    let ids: cloudpass_adapter::CloudpassIds = serde_json::from_value(b.vendor_ids).unwrap();
    assert_eq!(
        ids.bookings.keys().collect::<Vec<_>>(),
        ["AA11", "ZZ99"],
        "the plates applied are recorded"
    );
    env.finish(h).await;
}

/// Config whose `ack_wait` outlasts the test: a crashed attempt's message is not redelivered
/// (and applied in order) before the next revision, which is what happens when the crash was
/// the last delivery or the next revision simply comes first.
fn slow_redelivery(mut cfg: WorkerConfig) -> WorkerConfig {
    cfg.ack_wait = Duration::from_secs(60);
    cfg.progress_interval = Duration::from_secs(20);
    cfg
}

/// M6: crash after creating plates {A, B}, before the record; the next revision has only A →
/// the worker itself deletes B (not only the next sync).
#[tokio::test]
async fn a_plate_removed_after_a_crash_before_the_record_is_deleted() {
    let env = Env::new().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = worker_runtime::start(slow_redelivery(env.config()), crash_after_apply(tx))
        .await
        .unwrap();
    let ev = |rev, plates: &[&str]| {
        reservation(
            "m6",
            rev,
            Confirmed,
            "2030-06-01",
            "2030-06-03",
            plates,
            "adm-ams",
        )
    };
    env.publish(&ev(1, &["KA11", "KB22"])).await;
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    h.abort().await;
    assert_eq!(env.bookings_of("m6").len(), 2);
    env.publish(&ev(2, &["KA11"])).await;
    let h = worker_runtime::start(slow_redelivery(env.config()), CloudpassHandler::new())
        .await
        .unwrap();
    env.applied("m6", 2).await;
    let plates: Vec<String> = env.bookings_of("m6").into_iter().map(|b| b.0).collect();
    assert_eq!(plates, ["KA11"]);
    env.finish(h).await;
}

/// Two connections of one tenant: `ams` serves adm-ams (Amsterdam), `utr` serves adm-utr
/// (Utrecht), each with the API user of its own CloudPass account (which sees only its site).
fn two_connections(sim: &SimHandle) -> Vec<Connection> {
    let st = sim.state();
    st.cloudpass_add_api_user("ams-client", "ams-secret", true);
    st.cloudpass_set_user_sites("ams-client", &[cp::DEMO_SITE_AMSTERDAM])
        .unwrap();
    st.cloudpass_add_api_user("utr-client", "utr-secret", true);
    st.cloudpass_set_user_sites("utr-client", &[cp::DEMO_SITE_UTRECHT])
        .unwrap();
    let ams = Connection {
        name: "ams".into(),
        sites: vec!["adm-ams".into()],
        ..connection(sim, ("ams-client", "ams-secret"))
    };
    let mut utr = Connection {
        name: "utr".into(),
        sites: vec!["adm-utr".into()],
        ..connection(sim, ("utr-client", "utr-secret"))
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
    vec![ams, utr]
}

/// M6: the administration moves to another connection after a crash before the record: the
/// old site's booking is deleted through the old connection.
#[tokio::test]
async fn a_move_to_another_connection_after_a_crash_before_the_record_deletes_the_old_booking() {
    let env = Env::new().await;
    let conns = two_connections(&env.sim);
    let cfg = || {
        slow_redelivery(WorkerConfig::for_test(
            env.tb.config(cloudpass_adapter::NAME, &env.db.url),
            Arc::new(StaticConnections::new(conns.clone())),
        ))
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = worker_runtime::start(cfg(), crash_after_apply(tx))
        .await
        .unwrap();
    let ev = |rev, site| {
        reservation(
            "mv",
            rev,
            Confirmed,
            "2030-06-01",
            "2030-06-03",
            &["MV11"],
            site,
        )
    };
    env.publish(&ev(1, "adm-ams")).await;
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    h.abort().await;
    env.publish(&ev(2, "adm-utr")).await;
    let h = worker_runtime::start(cfg(), CloudpassHandler::new())
        .await
        .unwrap();
    env.applied("mv", 2).await;
    let sites: Vec<String> = env
        .sim
        .state()
        .cloudpass_bookings()
        .into_iter()
        .filter(|b| b.reference == "ah:parks:reservation:mv:MV11")
        .map(|b| b.site_id)
        .collect();
    assert_eq!(sites, [cp::DEMO_SITE_UTRECHT]);
    env.finish(h).await;
}

/// The administration moves to a connection of another CloudPass account: the old booking is
/// deleted through the old connection (the new one's API user cannot even see that site, so
/// deleting through it answers 404, which must not count as "gone").
#[tokio::test]
async fn a_move_to_another_connection_deletes_the_old_booking_through_the_old_connection() {
    let env = Env::new().await;
    let conns = two_connections(&env.sim);
    let cfg = WorkerConfig::for_test(
        env.tb.config(cloudpass_adapter::NAME, &env.db.url),
        Arc::new(StaticConnections::new(conns)),
    );
    let h = worker_runtime::start(cfg, CloudpassHandler::new())
        .await
        .unwrap();
    let ev = |rev, site| {
        reservation(
            "mv2",
            rev,
            Confirmed,
            "2030-06-01",
            "2030-06-03",
            &["MV22"],
            site,
        )
    };
    env.publish(&ev(1, "adm-ams")).await;
    env.applied("mv2", 1).await;
    env.publish(&ev(2, "adm-utr")).await;
    env.applied("mv2", 2).await;
    let sites: Vec<String> = env
        .sim
        .state()
        .cloudpass_bookings()
        .into_iter()
        .filter(|b| b.reference == "ah:parks:reservation:mv2:MV22")
        .map(|b| b.site_id)
        .collect();
    assert_eq!(sites, [cp::DEMO_SITE_UTRECHT]);
    env.finish(h).await;
}

/// A worker serving `conn` (instead of the default connection).
async fn start_serving(env: &Env, conn: Connection) -> WorkerHandle {
    let cfg = WorkerConfig::for_test(
        env.tb.config(cloudpass_adapter::NAME, &env.db.url),
        Arc::new(StaticConnections::new(vec![conn])),
    );
    worker_runtime::start(cfg, CloudpassHandler::new())
        .await
        .unwrap()
}

/// The default time restriction is for new bookings: after the operator changes it, existing
/// bookings keep theirs (dates still follow the reservation) and a new plate gets the new one;
/// `reapply_time_restriction` brings the existing ones over too.
#[tokio::test]
async fn a_changed_default_time_restriction_applies_to_new_bookings_until_reapplied() {
    const DAY: &str = "cp-tr-ams-day";
    let env = Env::new().await;
    let mut conn = connection(&env.sim, (cp::DEMO_CLIENT_ID, cp::DEMO_CLIENT_SECRET));
    let h = start_serving(&env, conn.clone()).await;
    let ev = |rev, departure, plates: &[&str]| {
        reservation(
            "tr1",
            rev,
            Confirmed,
            "2030-07-01",
            departure,
            plates,
            "adm-ams",
        )
    };
    env.publish(&ev(1, "2030-07-03", &["AA11"])).await;
    env.applied("tr1", 1).await;
    h.shutdown().await.unwrap();

    let VendorSettings::Cloudpass(s) = &mut conn.settings else {
        unreachable!()
    };
    s.default_time_restriction_id = DAY.into();
    let h = start_serving(&env, conn.clone()).await;
    env.publish(&ev(2, "2030-07-04", &["AA11", "BB22"])).await;
    env.applied("tr1", 2).await;
    let until = "2030-07-04T09:30:00+00:00".to_owned();
    let got: Vec<(String, String, String)> = env
        .bookings_of("tr1")
        .into_iter()
        .map(|b| (b.0, b.2, b.3))
        .collect();
    assert_eq!(
        got,
        [
            (
                "AA11".into(),
                until.clone(),
                cp::DEMO_TR_AMSTERDAM_24_7.into()
            ),
            ("BB22".into(), until.clone(), DAY.into()),
        ]
    );
    h.shutdown().await.unwrap();

    let VendorSettings::Cloudpass(s) = &mut conn.settings else {
        unreachable!()
    };
    s.reapply_time_restriction = true;
    let h = start_serving(&env, conn).await;
    env.publish(&ev(3, "2030-07-04", &["AA11", "BB22"])).await;
    env.applied("tr1", 3).await;
    let trs: Vec<String> = env.bookings_of("tr1").into_iter().map(|b| b.3).collect();
    assert_eq!(trs, [DAY, DAY]);
    env.finish(h).await;
}

/// docs/upstreams.md "Check-out": a guest checked out two days early keeps vehicle access
/// until the check-out event + 30 min (not until the stay's end, and not cut at once).
#[tokio::test]
async fn checked_out_early_keeps_vehicle_access_for_thirty_minutes() {
    let env = Env::new().await;
    let h = env.start(CloudpassHandler::new()).await;
    let today = Utc::now().date_naive();
    let (arrival, departure) = (
        (today - chrono::Days::new(1)).to_string(),
        (today + chrono::Days::new(2)).to_string(),
    );
    let stay = |rev, status| {
        reservation(
            "co1",
            rev,
            status,
            &arrival,
            &departure,
            &["AA11"],
            "adm-ams",
        )
    };
    env.publish(&stay(1, ReservationStatus::CheckedIn)).await;
    env.applied("co1", 1).await;
    let out = stay(2, ReservationStatus::CheckedOut);
    env.publish(&out).await;
    env.applied("co1", 2).await;
    let b = env.bookings_of("co1");
    assert_eq!(b.len(), 1, "{b:?}");
    let until: chrono::DateTime<Utc> = b[0].2.parse().unwrap();
    let expected = out.occurred_at + chrono::Duration::minutes(30);
    assert!(
        (until - expected).num_seconds().abs() <= 1,
        "{until} != {expected}"
    );
    let binding = env.binding("co1").await.unwrap();
    assert_eq!(binding.status, "checked_out");
    env.finish(h).await;
}
