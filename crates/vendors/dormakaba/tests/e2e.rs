//! The worker end to end: real NATS + Postgres (accesshub-testkit), the dormakaba simulator
//! in-process, events published on the namespaced BOOKINGS stream.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use accesshub_connections::{
    Connection, DormakabaProduct, DormakabaSettings, Encoder, EncoderKind, VendorSettings,
};
use accesshub_domain::{
    DeadLetter, Event, EventBody, KeyAction, KeyRequest, KeyResult, KeyResultStatus, Reservation,
    ReservationStatus, Source, subjects,
};
use accesshub_testkit::{TestBus, TestDb};
use chrono::Utc;
use dormakaba_adapter::client::{SoapClient, SoapConfig};
use dormakaba_adapter::{
    DormakabaHandler, StoredStatus, WORKER, desired,
    keyreq::{KeyRequestStatus, key_request_status},
};
use uuid::Uuid;
use vendor_sim::dormakaba::Product;
use vendor_sim::{FaultKind, FaultRule, SimConfig, SimHandle, Vendor};
use worker_runtime::{Handler, StaticConnections, WorkerConfig, WorkerHandle};

const TENANT: &str = "acme";

mod common;

fn settings(sim: &SimHandle, product: DormakabaProduct) -> DormakabaSettings {
    DormakabaSettings {
        encoders: vec![
            Encoder {
                name: "Front desk 1".into(),
                id: "1".into(),
                kind: EncoderKind::Network,
            },
            Encoder {
                name: "Front desk 2".into(),
                id: "2".into(),
                kind: EncoderKind::Network,
            },
            Encoder {
                name: "Back office".into(),
                id: "9".into(),
                kind: EncoderKind::Usb,
            },
            // Configured, but the lock system has no encoder 8.
            Encoder {
                name: "Lobby kiosk".into(),
                id: "8".into(),
                kind: EncoderKind::Network,
            },
        ],
        rooms: [("R-101".to_owned(), "101".to_owned())].into(),
        common_areas: [("gym".to_owned(), 2), ("entrance".to_owned(), 1)].into(),
        ..common::sim_settings(sim, product)
    }
}

fn keyreq_event(req: &KeyRequest) -> Event {
    Event::new(
        TENANT,
        "hotel",
        req.request_id.to_string(),
        1,
        Source::Native,
        Utc::now(),
        EventBody::KeyRequest(req.clone()),
    )
}

struct Env {
    sim: SimHandle,
    db: TestDb,
    tb: TestBus,
    product: Product,
    settings: DormakabaSettings,
    worker: Option<WorkerHandle>,
    rev: i64,
}

impl Env {
    async fn new(product: DormakabaProduct) -> Env {
        accesshub_telemetry::init_for_tests();
        let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
        sim.state().seed_demo();
        let (db, tb) = accesshub_testkit::isolated().await;
        let settings = settings(&sim, product);
        let mut env = Env {
            sim,
            db,
            tb,
            product: match product {
                DormakabaProduct::Saflok => Product::Saflok,
                DormakabaProduct::Ambiance => Product::Ambiance,
            },
            settings,
            worker: None,
            rev: 0,
        };
        env.start().await;
        env
    }

    async fn start(&mut self) {
        self.start_with(DormakabaHandler::new()).await;
    }

    async fn start_with<H: Handler>(&mut self, handler: H) {
        let conn = Connection {
            tenant: TENANT.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Dormakaba(self.settings.clone()),
            version: 1,
        };
        let common = self.tb.config(WORKER, &self.db.url);
        let mut cfg =
            WorkerConfig::for_test(common.clone(), Arc::new(StaticConnections::new(vec![conn])));
        cfg.max_deliver = 6;
        self.worker = Some(worker_runtime::start(cfg, handler).await.unwrap());
    }

    fn reservation(&self, status: ReservationStatus, name: &str, nights: u64) -> Reservation {
        common::reservation(status, name, nights)
    }

    async fn publish(&self, ev: &Event) {
        common::publish(&self.tb.bus, ev).await;
    }

    /// Stores the reservation as booking-ingest would (desired state) and publishes it.
    async fn reservation_event(&mut self, key: &str, r: Reservation) -> Event {
        self.rev += 1;
        let ev = Event::new(
            TENANT,
            "hotel",
            key,
            self.rev,
            Source::Native,
            Utc::now(),
            EventBody::Reservation(r),
        );
        common::store_booking(&self.db.pool, &ev).await;
        self.publish(&ev).await;
        ev
    }

    async fn key_request(
        &self,
        reservation_key: &str,
        action: KeyAction,
        encoder: Option<&str>,
        count: u32,
    ) -> Uuid {
        let req = KeyRequest {
            request_id: Uuid::now_v7(),
            reservation_key: reservation_key.into(),
            action,
            encoder_id: encoder.map(str::to_owned),
            key_count: count,
            requested_by: Some("desk".into()),
            mobile_phone: None,
            mobile_key: false,
        };
        self.publish(&keyreq_event(&req)).await;
        req.request_id
    }

    /// What an attempt that died during its lock-system call leaves: the request's binding
    /// recorded `in_flight` (the worker records it before the call), nothing applied.
    async fn mark_in_flight(&self, req: &KeyRequest) {
        let rec = dormakaba_adapter::keyreq::KeyRequestRecord {
            request_id: req.request_id,
            reservation_key: req.reservation_key.clone(),
            message: None,
        };
        sqlx::query(
            "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, \
               vendor_ids, status, updated_at) \
             VALUES ($1, 'dormakaba', 'keyreq', $2, 0, $3, 'in_flight', now())",
        )
        .bind(TENANT)
        .bind(req.request_id.to_string())
        .bind(serde_json::to_value(&rec).unwrap())
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    /// The key request's outcome, as its binding records it.
    async fn key_request_outcome(&self, id: Uuid) -> Option<KeyRequestStatus> {
        let key = worker_runtime::BindingKey {
            tenant: TENANT.into(),
            vendor: "dormakaba".into(),
            kind: "keyreq".into(),
            booking_key: id.to_string(),
        };
        worker_runtime::get_binding(&self.db.pool, &key)
            .await
            .unwrap()
            .as_ref()
            .and_then(key_request_status)
    }

    async fn wait_status(&self, id: Uuid, want: KeyResultStatus) -> String {
        let start = Instant::now();
        loop {
            if let Some(s) = self.key_request_outcome(id).await
                && s.status == StoredStatus::Result(want)
            {
                return s.message.unwrap_or_default();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "key request {id} never reached {want:?}: {:?}",
                self.key_request_outcome(id).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn published_result(&self, id: Uuid) -> KeyResult {
        let stream = self
            .tb
            .bus
            .js
            .get_stream(self.tb.bus.stream_name(subjects::RESULTS_STREAM))
            .await
            .unwrap();
        let subj = self
            .tb
            .bus
            .subject(&subjects::key_result(TENANT, &id.to_string()));
        let m = stream.get_last_raw_message_by_subject(&subj).await.unwrap();
        serde_json::from_slice(&m.payload).unwrap()
    }

    async fn dead_letter(&self, kind: &str, key: &str) -> DeadLetter {
        let stream = self
            .tb
            .bus
            .js
            .get_stream(self.tb.bus.stream_name(subjects::DLQ_STREAM))
            .await
            .unwrap();
        let original = subjects::booking(kind.parse().unwrap(), TENANT, key);
        let subj = self.tb.bus.subject(&subjects::dlq(WORKER, &original));
        let start = Instant::now();
        loop {
            if let Ok(m) = stream.get_last_raw_message_by_subject(&subj).await {
                return serde_json::from_slice(&m.payload).unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no dead letter for {key}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the lock system's booking `rid` is checked out (`None`: no such booking).
    fn checked_out(&self, rid: &str) -> Option<bool> {
        self.sim
            .state()
            .dormakaba_bookings(self.product)
            .iter()
            .find(|b| b.reservation_id == rid)
            .map(|b| b.checked_out)
    }

    fn calls(&self, op: &str) -> usize {
        self.sim
            .state()
            .calls_for(Vendor::Dormakaba)
            .iter()
            .filter(|c| c.operation.as_deref() == Some(op) && c.status == 200)
            .count()
    }

    async fn dlq_depth(&self) -> u64 {
        common::dlq_depth(&self.tb.bus).await
    }

    async fn eventually(&self, what: &str, mut f: impl FnMut(&Env) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await.unwrap();
        }
        self.tb.cleanup().await;
        self.db.drop_db().await;
        self.sim.shutdown().await;
    }
}

const NASTY: &str = "O'Brien & <Søns> \"Zoë\", Jürgen, 東京";

async fn cards_flow(product: DormakabaProduct) {
    let mut env = Env::new(product).await;
    let p = env.product;
    let r = env.reservation(ReservationStatus::Confirmed, NASTY, 2);
    env.reservation_event("R1", r.clone()).await;
    // A plain reservation registers nothing until a key is cut.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(env.sim.state().dormakaba_bookings(p).is_empty());

    // New key on "Front desk 1" (by name) → CreateNewBooking, 2 cards.
    let id = env
        .key_request("R1", KeyAction::NewKey, Some("Front desk 1"), 2)
        .await;
    let msg = env.wait_status(id, KeyResultStatus::Encoded).await;
    assert!(msg.contains("2 card(s) encoded on encoder 1"), "{msg}");
    assert_eq!(
        env.published_result(id).await.status,
        KeyResultStatus::Encoded
    );
    let b = &env.sim.state().dormakaba_bookings(p)[0];
    assert_eq!(b.reservation_id, "acme-R1");
    assert_eq!(b.guest_name, NASTY, "escaping: the name arrives intact");
    assert_eq!(b.main_room, "101");
    assert_eq!(b.variable_rooms, vec!["102".to_owned()]);
    let mut levels: Vec<u32> = b.common_areas.iter().map(|a| a.pass_level_no).collect();
    levels.sort();
    assert_eq!(levels, vec![1, 2]);
    assert_eq!(b.check_out, r.check_out().unwrap());
    let keys = env.sim.state().dormakaba_keys(p);
    assert_eq!(
        (keys.len(), keys[0].key_count, keys[0].encoder_id),
        (1, 2, 1)
    );

    // Duplicate on encoder 2.
    let id = env
        .key_request("R1", KeyAction::DuplicateKey, Some("2"), 1)
        .await;
    env.wait_status(id, KeyResultStatus::Encoded).await;
    assert_eq!(env.sim.state().dormakaba_keys(p)[1].kind, "duplicate");

    // A second new key re-encodes through ChangeKeyAccess (no second booking).
    let id = env.key_request("R1", KeyAction::NewKey, Some("1"), 1).await;
    env.wait_status(id, KeyResultStatus::Encoded).await;
    assert_eq!(env.sim.state().dormakaba_bookings(p).len(), 1);
    assert_eq!(env.sim.state().dormakaba_keys(p)[2].kind, "change");

    // Departure moved → ExtendCheckOut.
    let later = env.reservation(ReservationStatus::CheckedIn, NASTY, 4);
    env.reservation_event("R1", later.clone()).await;
    env.eventually("ExtendCheckOut", |e| e.calls("ExtendCheckOut") == 1)
        .await;
    env.eventually("new checkout", |e| {
        e.sim.state().dormakaba_bookings(p)[0].check_out == later.check_out().unwrap()
    })
    .await;

    // Room moved → ChangeKeyAccess without cards.
    let mut moved = later.clone();
    moved.rooms = vec!["201".into()];
    env.reservation_event("R1", moved).await;
    env.eventually("room change", |e| {
        e.sim.state().dormakaba_bookings(p)[0].main_room == "201"
    })
    .await;
    assert_eq!(
        env.sim.state().dormakaba_keys(p).last().unwrap().key_count,
        0
    );

    // Checked out → CheckOutGuest; a key request afterwards fails permanently.
    let out = env.reservation(ReservationStatus::CheckedOut, NASTY, 4);
    env.reservation_event("R1", out).await;
    env.eventually("checkout", |e| {
        e.sim.state().dormakaba_bookings(p)[0].checked_out
    })
    .await;
    let id = env
        .key_request("R1", KeyAction::DuplicateKey, Some("1"), 1)
        .await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert!(msg.contains("checked out"), "{msg}");
    env.finish().await;
}

#[tokio::test]
async fn saflok_cards_changes_and_checkout() {
    cards_flow(DormakabaProduct::Saflok).await;
}

#[tokio::test]
async fn ambiance_cards_changes_and_checkout() {
    cards_flow(DormakabaProduct::Ambiance).await;
}

#[tokio::test]
async fn mobile_keys_surname_rule_mismatch_and_cancellation() {
    let mut env = Env::new(DormakabaProduct::Ambiance).await;
    let p = env.product;
    // Registered in the app as surname "Jansen" + +31612345678.
    let mut r = env.reservation(ReservationStatus::Confirmed, "Jansen, Piet, K.", 2);
    r.mobile_key = true;
    env.reservation_event("M1", r.clone()).await;
    env.eventually("mobile key", |e| {
        !e.sim.state().dormakaba_mobile_keys(p).is_empty()
    })
    .await;
    let mk = &env.sim.state().dormakaba_mobile_keys(p)[0];
    assert_eq!(mk.surname, "Jansen");
    assert!(mk.delivered);
    assert!(
        env.sim
            .state()
            .dormakaba_keys(p)
            .iter()
            .all(|k| k.key_count == 0),
        "registering for a mobile key encodes no card"
    );

    // App-guest mismatch: the lock system accepts, delivers nothing and logs it.
    let mut other = env.reservation(ReservationStatus::Confirmed, "Doe, John", 2);
    other.mobile_key = true;
    other.rooms = vec!["103".into()];
    other.common_areas.clear();
    env.reservation_event("M2", other).await;
    env.eventually("second mobile key", |e| {
        e.sim.state().dormakaba_mobile_keys(p).len() == 2
    })
    .await;
    let mk = &env.sim.state().dormakaba_mobile_keys(p)[1];
    assert_eq!(mk.surname, "Doe");
    assert!(!mk.delivered);
    assert!(
        env.sim
            .state()
            .dormakaba_events(p)
            .iter()
            .any(|e| e.code == "MobileKeyNotDelivered" && e.message.contains("Doe"))
    );

    // Mobile key by key request: sent to the guest the app knows; for the one it cannot
    // match, the desk hears why — never "sent".
    let id = env.key_request("M1", KeyAction::MobileKey, None, 1).await;
    env.wait_status(id, KeyResultStatus::Sent).await;
    let id = env.key_request("M2", KeyAction::MobileKey, None, 1).await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert_eq!(msg, dormakaba_adapter::handler::MOBILE_NOT_DELIVERED);

    // Cancelled → mobile access cancelled, guest checked out.
    let mut cancelled = r.clone();
    cancelled.status = ReservationStatus::Cancelled;
    env.reservation_event("M1", cancelled).await;
    env.eventually("cancellation", |e| {
        let s = e.sim.state();
        s.dormakaba_mobile_keys(p)[0].cancelled
            && s.dormakaba_bookings(p)
                .iter()
                .any(|b| b.reservation_id == "acme-M1" && b.checked_out)
    })
    .await;
    assert_eq!(env.calls("CancelGuestsMobileAccessToRoom"), 1);

    // Phone validation faults go to the DLQ with the fault's name.
    let mut bad = env.reservation(ReservationStatus::Confirmed, "Smit, Anna", 2);
    bad.mobile_key = true;
    bad.rooms = vec!["202".into()];
    bad.guest.mobile_phone = Some("0612345678".into());
    env.reservation_event("M3", bad).await;
    let dl = env.dead_letter("reservation", "M3").await;
    assert!(
        dl.reason.contains("UnableToDeliverToPhone"),
        "{}",
        dl.reason
    );
    assert_eq!(dl.class, accesshub_domain::ErrorClass::Permanent);
    env.finish().await;
}

/// Issue 26: the phone number the desk enters while issuing a key. A card request with it
/// encodes the card and sends the mobile key to that number (not the reservation's), and the
/// desk is told where, masked; a number the app cannot match is reported in the desk's words,
/// never "sent", after the earlier key was cancelled; a number the lock system refuses is
/// dead-lettered with its fault and without the number.
#[tokio::test]
async fn mobile_key_to_the_number_entered_at_issuance() {
    let mut env = Env::new(DormakabaProduct::Ambiance).await;
    let p = env.product;
    // The reservation carries no phone; the guest is registered in the app as Jansen +
    // +31612345678.
    let mut r = env.reservation(ReservationStatus::CheckedIn, "Jansen, Piet, K.", 2);
    r.guest.mobile_phone = None;
    env.reservation_event("P1", r.clone()).await;
    wait_applied(&env, "P1", 1).await;
    let entered = KeyRequest {
        request_id: Uuid::now_v7(),
        reservation_key: "P1".into(),
        action: KeyAction::NewKey,
        encoder_id: Some("1".into()),
        key_count: 1,
        requested_by: Some("desk".into()),
        mobile_phone: Some("+31 6 1234 5678".into()),
        mobile_key: true,
    };
    env.publish(&keyreq_event(&entered)).await;
    let msg = env
        .wait_status(entered.request_id, KeyResultStatus::Encoded)
        .await;
    assert_eq!(
        msg,
        "key ready: 1 card(s) encoded on encoder 1; mobile key sent to +31***78"
    );
    let keys = env.sim.state().dormakaba_mobile_keys(p);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].phone, "+31 6 1234 5678");
    assert!(keys[0].delivered);

    // The reservation's next update (a longer stay; it still asks for no mobile key itself)
    // keeps the key the desk sent.
    let mut longer = r.clone();
    longer.departure = longer.departure.succ_opt().unwrap();
    env.reservation_event("P1", longer).await;
    wait_applied(&env, "P1", 2).await;
    let keys = env.sim.state().dormakaba_mobile_keys(p);
    assert!(keys.len() == 1 && !keys[0].cancelled, "{keys:?}");
    assert_eq!(env.calls("CancelGuestsMobileAccessToRoom"), 0);

    // Another number, one the app does not know: the first key is cancelled, the new one
    // reaches nobody, and the desk hears why.
    let unknown = KeyRequest {
        request_id: Uuid::now_v7(),
        action: KeyAction::MobileKey,
        encoder_id: None,
        mobile_phone: Some("+31699999999".into()),
        ..entered.clone()
    };
    env.publish(&keyreq_event(&unknown)).await;
    let msg = env
        .wait_status(unknown.request_id, KeyResultStatus::Failed)
        .await;
    assert_eq!(msg, dormakaba_adapter::handler::MOBILE_NOT_DELIVERED);
    let keys = env.sim.state().dormakaba_mobile_keys(p);
    assert!(keys[0].cancelled, "{keys:?}");
    assert!(!keys[1].delivered && keys[1].phone == "+31699999999");

    // A number the lock system refuses: permanent, dead-lettered with the fault's name; the
    // lock system's text repeats the number, which nothing of ours repeats.
    let refused = KeyRequest {
        request_id: Uuid::now_v7(),
        mobile_phone: Some("0612345678".into()),
        ..unknown.clone()
    };
    env.publish(&keyreq_event(&refused)).await;
    let msg = env
        .wait_status(refused.request_id, KeyResultStatus::Failed)
        .await;
    let dl = env
        .dead_letter("keyreq", &refused.request_id.to_string())
        .await;
    for text in [&msg, &dl.reason] {
        assert!(text.contains("UnableToDeliverToPhone"), "{text}");
        assert!(
            !text.contains("0612345678") && !text.contains("612345678"),
            "{text}"
        );
    }
    assert!(
        env.sim
            .state()
            .dormakaba_events(p)
            .iter()
            .all(|e| !e.message.contains("0612345678")),
        "the lock system never took the refused number"
    );
    env.finish().await;
}

/// Issue 26: a room move keeps the guest's phone working. The desk sent a mobile key to the
/// number it entered; the reservation then moves to another room: the old room's key is
/// cancelled, the same phone gets the new room's key (sent after `ChangeKeyAccess` put the
/// room on the booking), and the key request that first sent it hears the outcome.
#[tokio::test]
async fn the_desk_mobile_key_is_sent_again_for_the_new_room_after_a_move() {
    let mut env = Env::new(DormakabaProduct::Ambiance).await;
    let p = env.product;
    let mut r = env.reservation(ReservationStatus::CheckedIn, "Jansen, Piet, K.", 2);
    r.guest.mobile_phone = None;
    env.reservation_event("MV", r.clone()).await;
    wait_applied(&env, "MV", 1).await;
    let req = KeyRequest {
        request_id: Uuid::now_v7(),
        reservation_key: "MV".into(),
        action: KeyAction::MobileKey,
        encoder_id: None,
        key_count: 1,
        requested_by: Some("desk".into()),
        mobile_phone: Some("+31 6 1234 5678".into()),
        mobile_key: true,
    };
    env.publish(&keyreq_event(&req)).await;
    env.wait_status(req.request_id, KeyResultStatus::Sent).await;
    let rid = desired::reservation_id(TENANT, "MV");
    let first_room = env.sim.state().dormakaba_mobile_keys(p)[0].room.clone();

    let mut moved = r.clone();
    moved.rooms = vec!["201".into()];
    env.reservation_event("MV", moved).await;
    wait_applied(&env, "MV", 2).await;
    let keys: Vec<_> = env
        .sim
        .state()
        .dormakaba_mobile_keys(p)
        .into_iter()
        .filter(|m| m.reservation_id == rid)
        .collect();
    let live: Vec<_> = keys.iter().filter(|m| !m.cancelled).collect();
    assert_eq!(live.len(), 1, "{keys:?}");
    assert_eq!(live[0].room, "201", "{keys:?}");
    assert_eq!(
        live[0].phone, "+31 6 1234 5678",
        "the number the desk entered"
    );
    assert!(live[0].delivered, "{keys:?}");
    assert!(
        keys.iter().any(|m| m.room == first_room && m.cancelled),
        "the old room's key is cancelled: {keys:?}"
    );
    let result = env.published_result(req.request_id).await;
    assert_eq!(result.status, KeyResultStatus::Sent);
    assert_eq!(
        result.message.as_deref(),
        Some("room moved to 201: mobile key sent again to +31***78")
    );
    // The stay's next update keeps the key at the new room.
    let mut longer = r.clone();
    longer.rooms = vec!["201".into()];
    longer.departure = longer.departure.succ_opt().unwrap();
    env.reservation_event("MV", longer).await;
    wait_applied(&env, "MV", 3).await;
    let live = env
        .sim
        .state()
        .dormakaba_mobile_keys(p)
        .into_iter()
        .filter(|m| m.reservation_id == rid && !m.cancelled)
        .count();
    assert_eq!(live, 1);
    assert_eq!(env.dlq_depth().await, 0);
    env.finish().await;
}

#[tokio::test]
async fn transient_faults_retry_then_succeed_and_permanent_ones_dead_letter() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    let p = env.product;
    let st = env.sim.state().clone();
    env.reservation_event(
        "F1",
        env.reservation(ReservationStatus::CheckedIn, "Doe, J", 2),
    )
    .await;

    // Encoder busy: the desk sees "encoder busy, retrying", then the key.
    st.dormakaba_set_encoder(Product::Saflok, 1, true, true)
        .unwrap();
    let id = env.key_request("F1", KeyAction::NewKey, Some("1"), 1).await;
    let msg = env.wait_status(id, KeyResultStatus::Pending).await;
    assert_eq!(msg, "encoder busy, retrying");
    st.dormakaba_set_encoder(Product::Saflok, 1, true, false)
        .unwrap();
    env.wait_status(id, KeyResultStatus::Encoded).await;
    assert_eq!(st.dormakaba_keys(p).len(), 1);

    // Injected transient faults (KeyJammed, 503, dropped connection) are retried.
    for kind in [
        FaultKind::SoapFault("KeyJammed".into()),
        FaultKind::Status503,
        FaultKind::DropConnection,
        FaultKind::SoapFault("BusyProcessingPreviousRequest".into()),
    ] {
        st.add_fault(FaultRule::next_n(Vendor::Dormakaba, kind, 1).on_path("#MakeDuplicateKey"));
        let id = env
            .key_request("F1", KeyAction::DuplicateKey, Some("2"), 1)
            .await;
        env.wait_status(id, KeyResultStatus::Encoded).await;
    }
    assert_eq!(st.dormakaba_keys(p).len(), 5);

    // Permanent: unknown room → DLQ naming the fault; the desk sees it too.
    let mut bad = env.reservation(ReservationStatus::CheckedIn, "Doe, J", 2);
    bad.rooms = vec!["999".into()];
    env.reservation_event("F2", bad).await;
    let id = env.key_request("F2", KeyAction::NewKey, Some("1"), 1).await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert!(msg.contains("RoomNumberNotFound"), "{msg}");
    assert_eq!(
        env.published_result(id).await.status,
        KeyResultStatus::Failed
    );
    let dl = env.dead_letter("keyreq", &id.to_string()).await;
    assert!(dl.reason.contains("RoomNumberNotFound"), "{}", dl.reason);
    assert_eq!(dl.attempts, 1, "permanent: no retries");

    // USB and unknown encoders: refused before any call.
    let before = st.calls_for(Vendor::Dormakaba).len();
    let id = env
        .key_request("F1", KeyAction::NewKey, Some("Back office"), 1)
        .await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert!(msg.contains("USB"), "{msg}");
    let dl = env.dead_letter("keyreq", &id.to_string()).await;
    assert!(dl.reason.contains("USB encoder"), "{}", dl.reason);
    let id = env.key_request("F1", KeyAction::NewKey, Some("7"), 1).await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert!(
        msg.contains("not in the dormakaba connection's encoder list"),
        "{msg}"
    );
    assert_eq!(st.calls_for(Vendor::Dormakaba).len(), before);

    // Credentials: permanent, named.
    st.add_fault(
        FaultRule::next_n(
            Vendor::Dormakaba,
            FaultKind::SoapFault("AuthHeaderNotRecognized".into()),
            1,
        )
        .on_path("#MakeDuplicateKey"),
    );
    let id = env
        .key_request("F1", KeyAction::DuplicateKey, Some("1"), 1)
        .await;
    let dl = env.dead_letter("keyreq", &id.to_string()).await;
    assert!(
        dl.reason.contains("AuthHeaderNotRecognized"),
        "{}",
        dl.reason
    );

    // A transient fault that never clears is retried briefly (the guest is at the desk),
    // then reported in the desk's words: answered, not dead-lettered.
    st.add_fault(
        FaultRule::next_n(
            Vendor::Dormakaba,
            FaultKind::SoapFault("KeyJammed".into()),
            100,
        )
        .on_path("#MakeDuplicateKey"),
    );
    let dlq_before = env.dlq_depth().await;
    let id = env
        .key_request("F1", KeyAction::DuplicateKey, Some("1"), 1)
        .await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert!(
        msg.starts_with(&format!(
            "card jammed in the encoder after {} attempts",
            dormakaba_adapter::handler::KEY_REQUEST_ATTEMPTS
        )),
        "{msg}"
    );
    assert_eq!(
        env.published_result(id).await.status,
        KeyResultStatus::Failed
    );
    assert_eq!(
        env.dlq_depth().await,
        dlq_before,
        "reported, not dead-lettered"
    );
    env.finish().await;
}

/// An encoder the connection lists but the lock system does not know fails at once, naming
/// it — not retried as "offline" until max_deliver.
#[tokio::test]
async fn an_encoder_unknown_to_the_lock_system_fails_at_once() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    env.reservation_event(
        "U1",
        env.reservation(ReservationStatus::CheckedIn, "Doe, J", 2),
    )
    .await;
    let id = env
        .key_request("U1", KeyAction::NewKey, Some("Lobby kiosk"), 1)
        .await;
    let msg = env.wait_status(id, KeyResultStatus::Failed).await;
    assert!(
        msg.starts_with("encoder 8 does not exist in the lock system"),
        "{msg}"
    );
    let dl = env.dead_letter("keyreq", &id.to_string()).await;
    assert_eq!(dl.attempts, 1, "permanent: no retries");
    assert_eq!(env.calls("CreateNewBooking"), 1, "one call, no retry");
    env.finish().await;
}

#[tokio::test]
async fn no_second_booking_or_card_after_a_crash() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    let p = env.product;
    // A lock system that does not de-duplicate: a repeated create would be a second booking.
    env.sim.state().set_dedupe(Vendor::Dormakaba, false);
    let r = env.reservation(ReservationStatus::CheckedIn, "Doe, J", 2);
    env.reservation_event("C1", r.clone()).await;

    // The first attempt's CreateNewBooking reached the lock system (card encoded), then the
    // worker died before recording anything: the binding has no record, the request is
    // marked in flight.
    let req = KeyRequest {
        request_id: Uuid::now_v7(),
        reservation_key: "C1".into(),
        action: KeyAction::NewKey,
        encoder_id: Some("1".into()),
        key_count: 1,
        requested_by: None,
        mobile_phone: None,
        mobile_key: false,
    };
    env.mark_in_flight(&req).await;
    let d = desired::desired_for_key_request(TENANT, &req, &r, &env.settings).unwrap();
    let client = SoapClient::new(SoapConfig::from_settings(&env.settings)).unwrap();
    client
        .create_new_booking(&desired::booking_request(&d, "1", 1, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(env.sim.state().dormakaba_keys(p).len(), 1);

    // Redelivery: the booking is probed (ExtendCheckOut), found, and not created again.
    let ev = keyreq_event(&req);
    env.publish(&ev).await;
    let msg = env
        .wait_status(req.request_id, KeyResultStatus::Encoded)
        .await;
    assert!(msg.contains("earlier attempt"), "{msg}");
    assert_eq!(
        env.sim.state().dormakaba_bookings(p).len(),
        1,
        "no second booking"
    );
    assert_eq!(env.sim.state().dormakaba_keys(p).len(), 1, "no extra card");
    assert_eq!(env.calls("CreateNewBooking"), 1);
    assert_eq!(env.calls("ExtendCheckOut"), 1, "the probe");
    // The same event delivered again: skipped (revision check / final outcome).
    let mut again = ev.clone();
    again.id = Uuid::now_v7();
    env.publish(&again).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.calls("CreateNewBooking"), 1);

    // Interrupted during a card-encoding call that is not idempotent (a second new key, via
    // ChangeKeyAccess): never guessed, the desk is asked to check the encoder.
    let req2 = KeyRequest {
        request_id: Uuid::now_v7(),
        action: KeyAction::NewKey,
        ..req.clone()
    };
    env.mark_in_flight(&req2).await;
    env.publish(&keyreq_event(&req2)).await;
    let msg = env
        .wait_status(req2.request_id, KeyResultStatus::Failed)
        .await;
    assert!(msg.contains("interrupted"), "{msg}");
    assert_eq!(env.sim.state().dormakaba_keys(p).len(), 1, "no extra card");
    assert_eq!(env.calls("ChangeKeyAccess"), 0);

    // A restarted worker carries on from the binding.
    if let Some(w) = env.worker.take() {
        w.shutdown().await.unwrap();
    }
    env.start().await;
    let id = env
        .key_request("C1", KeyAction::DuplicateKey, Some("2"), 1)
        .await;
    env.wait_status(id, KeyResultStatus::Encoded).await;
    assert_eq!(env.sim.state().dormakaba_bookings(p).len(), 1);
    env.finish().await;
}

/// The reservation's binding as recorded.
async fn reservation_binding(env: &Env, key: &str) -> Option<worker_runtime::Binding> {
    worker_runtime::get_binding(
        &env.db.pool,
        &worker_runtime::BindingKey {
            tenant: TENANT.into(),
            vendor: "dormakaba".into(),
            kind: "reservation".into(),
            booking_key: key.into(),
        },
    )
    .await
    .unwrap()
}

/// Waits until the reservation's binding has applied `rev`.
async fn wait_applied(env: &Env, key: &str, rev: i64) {
    let start = Instant::now();
    while reservation_binding(env, key)
        .await
        .is_none_or(|b| b.applied_revision < rev)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{key} rev {rev} applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// H3: the first attempt of a reservation with a mobile key registers the booking and sends
/// the key, then the worker dies before recording anything. The cancellation is the next
/// event the restarted worker sees (the crashed delivery comes back only after `ack_wait`):
/// it must check the guest out and cancel the key although no record says "booked".
#[tokio::test]
async fn a_cancellation_after_a_crashed_create_checks_the_guest_out() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    let p = env.product;
    if let Some(w) = env.worker.take() {
        w.shutdown().await.unwrap();
    }
    let (tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
    env.start_with(worker_runtime::AfterApply::new(
        DormakabaHandler::new(),
        move |_: &Event| {
            let _ = tx.send(());
            std::future::pending::<()>()
        },
    ))
    .await;
    let mut r = env.reservation(ReservationStatus::Confirmed, "Doe, J", 2);
    r.mobile_key = true;
    env.reservation_event("H3", r.clone()).await;
    tokio::time::timeout(Duration::from_secs(20), applied.recv())
        .await
        .unwrap();
    let rid = desired::reservation_id(TENANT, "H3");
    let live_keys = |env: &Env| {
        env.sim
            .state()
            .dormakaba_mobile_keys(p)
            .iter()
            .filter(|m| m.reservation_id == rid && !m.cancelled)
            .count()
    };
    let checked_out = |env: &Env| env.checked_out(&rid);
    assert_eq!(checked_out(&env), Some(false), "booking created");
    assert_eq!(live_keys(&env), 1, "mobile key sent");
    env.worker.take().unwrap().abort().await; // no record, no ack

    env.start().await;
    r.status = ReservationStatus::Cancelled;
    env.reservation_event("H3", r).await;
    wait_applied(&env, "H3", 2).await;
    assert_eq!(checked_out(&env), Some(true), "guest checked out");
    assert_eq!(live_keys(&env), 0, "mobile key cancelled");
    let b = reservation_binding(&env, "H3").await.unwrap();
    assert_eq!(b.status, "checked_out");
    env.finish().await;
}

/// H3, key-request side: a mobile-key request registers the booking (`CreateNewBooking`),
/// then the worker dies during the mobile-key call, before recording anything on the
/// reservation. The reservation's cancellation must still check the guest out.
#[tokio::test]
async fn a_cancellation_after_an_interrupted_key_request_checks_the_guest_out() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    let r = env.reservation(ReservationStatus::Confirmed, "Doe, J", 2);
    env.reservation_event("K3", r.clone()).await;
    wait_applied(&env, "K3", 1).await;
    env.sim.state().add_fault(
        FaultRule::next_n(Vendor::Dormakaba, FaultKind::Hang, 1).on_path("#IssueMobileKey"),
    );
    env.key_request("K3", KeyAction::MobileKey, None, 1).await;
    let rid = desired::reservation_id(TENANT, "K3");
    let checked_out = |env: &Env| env.checked_out(&rid);
    env.eventually("booking registered by the key request", |e| {
        checked_out(e) == Some(false)
    })
    .await;
    env.eventually("mobile key call under way", |e| {
        e.sim
            .state()
            .calls_for(Vendor::Dormakaba)
            .iter()
            .any(|c| c.operation.as_deref() == Some("IssueMobileKey"))
    })
    .await;
    env.worker.take().unwrap().abort().await;

    env.start().await;
    let mut cancelled = r;
    cancelled.status = ReservationStatus::Cancelled;
    env.reservation_event("K3", cancelled).await;
    wait_applied(&env, "K3", 2).await;
    assert_eq!(checked_out(&env), Some(true), "guest checked out");
    env.finish().await;
}

/// Issue 20 (convergence seed 7): a room change of a stay with a mobile key. The old room's
/// key must be cancelled while the lock system still has that room on the reservation
/// (`CancelGuestsMobileAccessToRoom` for a room the booking left is refused with
/// `InvalidWSParameter`), and the new room's key sent after the move.
#[tokio::test]
async fn a_room_change_cancels_the_old_rooms_mobile_key() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    let p = env.product;
    let mut r = env.reservation(ReservationStatus::Confirmed, "Jansen, Piet", 2);
    r.mobile_key = true;
    env.reservation_event("RC", r.clone()).await;
    wait_applied(&env, "RC", 1).await;
    r.rooms = vec!["201".into()];
    env.reservation_event("RC", r).await;
    wait_applied(&env, "RC", 2).await;
    let rid = desired::reservation_id(TENANT, "RC");
    let live: Vec<String> = env
        .sim
        .state()
        .dormakaba_mobile_keys(p)
        .iter()
        .filter(|m| m.reservation_id == rid && !m.cancelled)
        .map(|m| m.room.clone())
        .collect();
    assert_eq!(
        live,
        vec!["201".to_owned()],
        "only the new room's key is live"
    );
    let b = env
        .sim
        .state()
        .dormakaba_bookings(p)
        .into_iter()
        .find(|b| b.reservation_id == rid)
        .unwrap();
    assert_eq!(b.main_room, "201");
    assert_eq!(
        reservation_binding(&env, "RC").await.unwrap().status,
        "booked"
    );
    env.finish().await;
}

/// Issue 20: a lock system that does not de-duplicate `ReservationID`s applies a
/// `CreateNewBooking` whose answer is then lost. The retry must find that booking (probe)
/// and change it, not create a second one; the mobile key ends live once.
#[tokio::test]
async fn a_create_whose_answer_was_lost_is_not_repeated_at_a_lock_system_without_dedupe() {
    for fault in [
        FaultKind::Status503AfterCommit,
        FaultKind::ResetAfterCommit,
        FaultKind::Status500AfterCommit,
    ] {
        let mut env = Env::new(DormakabaProduct::Saflok).await;
        let p = env.product;
        let st = env.sim.state().clone();
        st.set_dedupe(Vendor::Dormakaba, false);
        st.add_fault(
            FaultRule::next_n(Vendor::Dormakaba, fault.clone(), 1).on_path("#CreateNewBooking"),
        );
        // And one IssueMobileKey failing before the lock system does anything: the retry
        // must not create the booking again either.
        st.add_fault(
            FaultRule::next_n(Vendor::Dormakaba, FaultKind::Status503, 1)
                .on_path("#IssueMobileKey"),
        );
        let mut r = env.reservation(ReservationStatus::Confirmed, "Jansen, Piet", 2);
        r.mobile_key = true;
        env.reservation_event("ND", r).await;
        wait_applied(&env, "ND", 1).await;
        let rid = desired::reservation_id(TENANT, "ND");
        let bookings = st
            .dormakaba_bookings(p)
            .iter()
            .filter(|b| b.reservation_id == rid && !b.checked_out)
            .count();
        assert_eq!(bookings, 1, "{fault:?}: one live booking");
        let keys = st
            .dormakaba_mobile_keys(p)
            .iter()
            .filter(|m| m.reservation_id == rid && !m.cancelled)
            .count();
        assert_eq!(keys, 1, "{fault:?}: one live mobile key");
        assert!(st.live_duplicates(Vendor::Dormakaba).is_empty());
        env.finish().await;
    }
}

/// Issue 20 (convergence seed 7 after the cancel fix): a change that empties the extra rooms
/// or the common areas must clear them at the lock system; `ChangeKeyAccess` keeps a list it
/// is not sent.
#[tokio::test]
async fn a_change_that_drops_every_extra_room_and_area_clears_them() {
    let mut env = Env::new(DormakabaProduct::Saflok).await;
    let p = env.product;
    let mut r = env.reservation(ReservationStatus::Confirmed, "Jansen, Piet", 2);
    r.mobile_key = true;
    env.reservation_event("EM", r.clone()).await;
    wait_applied(&env, "EM", 1).await;
    r.rooms = vec!["R-101".into()];
    r.common_areas.clear();
    env.reservation_event("EM", r).await;
    wait_applied(&env, "EM", 2).await;
    let rid = desired::reservation_id(TENANT, "EM");
    let b = env
        .sim
        .state()
        .dormakaba_bookings(p)
        .into_iter()
        .find(|b| b.reservation_id == rid)
        .unwrap();
    assert_eq!(b.main_room, "101");
    assert!(b.variable_rooms.is_empty(), "{:?}", b.variable_rooms);
    assert!(b.common_areas.is_empty(), "{:?}", b.common_areas);
    env.finish().await;
}
