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
    // Unmapped administration: permanent too.
    let ev2 = reservation(
        "r4",
        1,
        Confirmed,
        "2030-05-10",
        "2030-05-12",
        &["EE11"],
        "adm-unknown",
    );
    env.publish(&ev2).await;
    let dl2 = env.dead_letter(&ev2).await;
    assert!(
        dl2.reason.contains("not mapped to a CloudPass site"),
        "{}",
        dl2.reason
    );
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
    eventually(
        "recorded after restart",
        Duration::from_secs(20),
        || async {
            worker_runtime::get_binding(
                &env.db.pool,
                &worker_runtime::BindingKey {
                    tenant: "parks".into(),
                    vendor: "cloudpass".into(),
                    kind: "reservation".into(),
                    booking_key: "c1".into(),
                },
            )
            .await
            .unwrap()
            .is_some()
        },
    )
    .await;
    assert_eq!(env.bookings_of("c1").len(), 2);
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::CloudPass, "POST", "/vehicle-bookings"),
        2
    );
    env.finish(h).await;
}
