//! tapkey-worker end to end: events on the namespaced BOOKINGS stream → worker → Tapkey
//! simulator, against the real NATS and Postgres.

#![allow(clippy::unwrap_used)] // tests may unwrap (helpers too)

use accesshub_testkit::eventually;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_connections::{Connection, Secret, TapkeySettings, VendorSettings};
use accesshub_domain::{
    DeadLetter, ErrorClass, Event, EventBody, Pass, PassHolder, PassStatus, Source, headers,
    subjects,
};
use accesshub_testkit::{TestBus, TestDb};
use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, Utc};
use tapkey_adapter::TapkeyHandler;
use vendor_sim::{FaultKind, FaultRule, SimConfig, SimHandle, Vendor, tapkey as tk};
use worker_runtime::{Handler, StaticConnections, WorkerConfig, WorkerHandle};

struct Env {
    db: TestDb,
    tb: TestBus,
    sim: SimHandle,
}

fn connection(sim: &SimHandle) -> Connection {
    let mut pass_types = BTreeMap::new();
    pass_types.insert(
        "day".to_owned(),
        vec![
            tk::DEMO_LOCK_FRONT.to_owned(),
            tk::DEMO_LOCK_MEETING.to_owned(),
        ],
    );
    Connection {
        tenant: "cowork".into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Tapkey(TapkeySettings {
            authority_url: sim.tapkey_url(),
            base_url: sim.tapkey_url(),
            client_id: tk::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(tk::DEMO_CLIENT_SECRET),
            owner_account_id: tk::DEMO_OWNER_ID.into(),
            pass_types,
        }),
        version: 1,
    }
}

impl Env {
    /// Waits until the server holds no pull request of a crashed worker. One still queued
    /// there is served first: a message published meanwhile goes to the dead worker's inbox
    /// and comes back only after `ack_wait`, together with the crashed message and in stream
    /// order — the test then sees a same-revision retry, not the newer revision it is about.
    async fn until_no_pull_request_waits(&self) {
        use futures::StreamExt as _;
        let name = self
            .tb
            .bus
            .stream_name(accesshub_domain::subjects::BOOKINGS_STREAM);
        let start = Instant::now();
        loop {
            let stream = self.tb.bus.js.get_stream(&name).await.unwrap();
            let mut waiting = 0;
            let mut consumers = stream.consumers();
            while let Some(c) = consumers.next().await {
                waiting += c.unwrap().num_waiting;
            }
            if waiting == 0 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{waiting} pull request(s) still waiting"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn new() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
        sim.state().seed_demo();
        Env { db, tb, sim }
    }

    fn config(&self) -> WorkerConfig {
        WorkerConfig::for_test(
            self.tb.config(tapkey_adapter::NAME, &self.db.url),
            Arc::new(StaticConnections::new(vec![connection(&self.sim)])),
        )
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

    /// Active grants of `email` as (lock, validBefore).
    fn grants_of(&self, email: &str) -> Vec<(String, Option<DateTime<Utc>>)> {
        let contacts = self.sim.state().tapkey_contacts();
        let Some(c) = contacts.iter().find(|c| c.identifier == email) else {
            return vec![];
        };
        let mut v: Vec<_> = self
            .sim
            .state()
            .tapkey_grants()
            .into_iter()
            .filter(|g| g.contact_id == c.id && g.active)
            .map(|g| (g.bound_lock_id, g.valid_before))
            .collect();
        v.sort();
        v
    }

    async fn finish(self, h: WorkerHandle) {
        h.shutdown().await.unwrap();
        self.sim.shutdown().await;
        self.tb.cleanup().await;
        self.db.drop_db().await;
    }
}

fn expiry(days: i64) -> DateTime<Utc> {
    use chrono::DurationRound as _;
    (Utc::now() + chrono::Duration::days(days))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap()
}

fn pass_event(
    key: &str,
    rev: i64,
    status: PassStatus,
    pass_type: &str,
    exp: DateTime<Utc>,
) -> Event {
    Event::new(
        "cowork",
        "hq",
        key,
        rev,
        Source::Nexudus,
        Utc::now(),
        EventBody::Pass(Pass {
            status,
            holder: PassHolder {
                id: format!("cw-{key}"),
                email: format!("{key}@example.com"),
                name: Some(format!("Member {key}")),
            },
            pass_type: pass_type.into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: exp,
        }),
    )
}

fn locks() -> Vec<String> {
    let mut v = vec![
        tk::DEMO_LOCK_FRONT.to_owned(),
        tk::DEMO_LOCK_MEETING.to_owned(),
    ];
    v.sort();
    v
}

#[tokio::test]
async fn pass_lifecycle_grants_reissues_and_revokes() {
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let exp1 = expiry(3);
    env.publish(&pass_event("m1", 1, PassStatus::Active, "day", exp1))
        .await;
    eventually("grants on both locks", Duration::from_secs(10), || async {
        env.grants_of("m1@example.com").len() == 2
    })
    .await;
    let g = env.grants_of("m1@example.com");
    assert_eq!(g.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), locks());
    assert!(g.iter().all(|x| x.1 == Some(exp1)));
    // Contact created by e-mail.
    assert!(
        env.sim
            .state()
            .tapkey_contacts()
            .iter()
            .any(|c| c.identifier == "m1@example.com")
    );

    // Expiry moved: grants re-issued to match, old ones revoked.
    let exp2 = expiry(10);
    env.publish(&pass_event("m1", 2, PassStatus::Active, "day", exp2))
        .await;
    eventually("re-issued", Duration::from_secs(10), || async {
        let g = env.grants_of("m1@example.com");
        g.len() == 2 && g.iter().all(|x| x.1 == Some(exp2))
    })
    .await;
    let all: Vec<_> = env.sim.state().tapkey_grants();
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().filter(|g| g.state == "Revoked").count(), 2);

    // Used → revoked.
    env.publish(&pass_event("m1", 3, PassStatus::Used, "day", exp2))
        .await;
    eventually("revoked", Duration::from_secs(10), || async {
        env.grants_of("m1@example.com").is_empty()
    })
    .await;
    // Removed and expired passes end up revoked as well.
    env.publish(&pass_event("m2", 1, PassStatus::Active, "day", expiry(1)))
        .await;
    eventually("m2 granted", Duration::from_secs(10), || async {
        env.grants_of("m2@example.com").len() == 2
    })
    .await;
    env.publish(&pass_event("m2", 2, PassStatus::Removed, "day", expiry(1)))
        .await;
    env.publish(&pass_event("m3", 1, PassStatus::Active, "day", expiry(2)))
        .await;
    eventually("m3 granted", Duration::from_secs(10), || async {
        env.grants_of("m3@example.com").len() == 2
    })
    .await;
    env.publish(&pass_event(
        "m3",
        2,
        PassStatus::Active,
        "day",
        Utc::now() - chrono::Duration::hours(1),
    ))
    .await;
    eventually(
        "m2 removed, m3 expired",
        Duration::from_secs(10),
        || async {
            env.grants_of("m2@example.com").is_empty() && env.grants_of("m3@example.com").is_empty()
        },
    )
    .await;
    env.finish(h).await;
}

#[tokio::test]
async fn duplicates_and_reordering_create_no_extra_grants() {
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let exp = expiry(5);
    let r2 = pass_event("d1", 2, PassStatus::Active, "day", exp);
    let r1 = pass_event("d1", 1, PassStatus::Active, "day", expiry(1));
    env.publish(&r2).await;
    env.publish(&r2).await; // same Nats-Msg-Id: deduplicated by JetStream
    let mut again = r2.clone();
    again.id = uuid::Uuid::now_v7();
    env.publish(&again).await; // same revision, new id: skipped by the revision check
    env.publish(&r1).await; // older revision arriving late: skipped
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = env.grants_of("d1@example.com");
    assert_eq!(g.len(), 2);
    assert!(g.iter().all(|x| x.1 == Some(exp)));
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::Tapkey, "PUT", "/Grants"),
        2
    );
    env.finish(h).await;
}

#[tokio::test]
async fn converges_under_20_percent_vendor_faults_without_duplicates() {
    let env = Env::new().await;
    let st = env.sim.state();
    st.add_fault(
        FaultRule::probability(Vendor::Tapkey, FaultKind::Status503, 0.08).on_path("/api/v1"),
    );
    st.add_fault(
        FaultRule::probability(Vendor::Tapkey, FaultKind::Status500, 0.04).on_path("/api/v1"),
    );
    st.add_fault(
        FaultRule::probability(
            Vendor::Tapkey,
            FaultKind::Status429 {
                retry_after_secs: 0,
            },
            0.04,
        )
        .on_path("/api/v1"),
    );
    st.add_fault(
        FaultRule::probability(Vendor::Tapkey, FaultKind::DropConnection, 0.04).on_path("/api/v1"),
    );
    let mut cfg = env.config();
    cfg.max_deliver = 30;
    let h = worker_runtime::start(cfg, TapkeyHandler::new())
        .await
        .unwrap();
    let n = 40;
    for i in 0..n {
        env.publish(&pass_event(
            &format!("f{i}"),
            1,
            PassStatus::Active,
            "day",
            expiry(2),
        ))
        .await;
    }
    eventually("all converge", Duration::from_secs(60), || async {
        (0..n).all(|i| env.grants_of(&format!("f{i}@example.com")).len() == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grants = st.tapkey_grants();
    // Exactly one grant per (member, lock): no duplicates created by retries.
    assert_eq!(grants.len(), 2 * n, "grants: {}", grants.len());
    assert!(grants.iter().all(|g| g.active));
    assert!(
        st.calls_for(Vendor::Tapkey)
            .iter()
            .any(|c| c.injected_fault)
    );
    env.finish(h).await;
}

/// Applies for real, then "crashes" before the runtime can record the binding and ack.
fn crash_after_apply(
    applied: tokio::sync::mpsc::UnboundedSender<()>,
) -> impl Handler<Ids = <TapkeyHandler as Handler>::Ids> {
    worker_runtime::AfterApply::new(TapkeyHandler::new(), move |_: &Event| {
        let _ = applied.send(());
        std::future::pending::<()>()
    })
}

impl Env {
    /// Grant lists received by the simulator.
    fn lists(&self) -> usize {
        self.sim
            .state()
            .count_calls(Vendor::Tapkey, "GET", "/Grants")
    }

    /// A worker whose handler crashes right after applying, and news of each apply.
    async fn start_crashing(&self) -> (WorkerHandle, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let h = self.start(crash_after_apply(tx)).await;
        (h, rx)
    }
}

async fn applied(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
}

async fn binding_of(env: &Env, key: &str) -> Option<worker_runtime::Binding> {
    worker_runtime::get_binding(
        &env.db.pool,
        &worker_runtime::BindingKey {
            tenant: "cowork".into(),
            vendor: "tapkey".into(),
            kind: "pass".into(),
            booking_key: key.into(),
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn crash_between_vendor_call_and_ack_creates_no_second_grant() {
    let env = Env::new().await;
    let (h, mut rx) = env.start_crashing().await;
    env.publish(&pass_event("c1", 1, PassStatus::Active, "day", expiry(2)))
        .await;
    applied(&mut rx).await;
    assert_eq!(env.grants_of("c1@example.com").len(), 2);
    assert_eq!(
        env.lists(),
        0,
        "a new pass's first attempt skips the grants list"
    );
    h.abort().await; // no binding, no ack
    let h = env.start(TapkeyHandler::new()).await;
    eventually(
        "redelivered and recorded",
        Duration::from_secs(20),
        || async {
            binding_of(&env, "c1")
                .await
                .is_some_and(|b| b.applied_revision == 1)
        },
    )
    .await;
    assert_eq!(env.sim.state().tapkey_grants().len(), 2, "no second grant");
    assert_eq!(
        env.sim
            .state()
            .count_calls(Vendor::Tapkey, "PUT", "/Grants"),
        2
    );
    env.finish(h).await;
}

/// The grants list is skipped only on a booking's provably first attempt: after a crash
/// between the grant PUT and the record, a *newer* revision (a first delivery, no binding yet)
/// must still find and replace the crashed attempt's grants — a plain "no binding and first
/// delivery" rule would leave them active next to new ones.
#[tokio::test]
async fn after_a_crash_a_newer_revision_still_finds_the_crashed_attempts_grants() {
    use chrono::DurationRound as _;
    let env = Env::new().await;
    // Revision 1 stays unacknowledged after the crash. A short ack_wait would let its
    // redelivery reach the new worker before revision 2 on a loaded machine, and then this
    // would test a same-revision retry instead of a newer revision's first delivery.
    let cfg = || {
        let mut cfg = env.config();
        cfg.ack_wait = Duration::from_secs(10);
        cfg
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = worker_runtime::start(cfg(), crash_after_apply(tx))
        .await
        .unwrap();
    let from = (Utc::now() - chrono::Duration::hours(1))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    let with_from = |rev: i64, exp: DateTime<Utc>| {
        let mut ev = pass_event("c2", rev, PassStatus::Active, "day", exp);
        if let EventBody::Pass(p) = &mut ev.body {
            p.valid_from = Some(from);
        }
        ev
    };
    env.publish(&with_from(1, expiry(2))).await;
    applied(&mut rx).await;
    assert_eq!(env.grants_of("c2@example.com").len(), 2);
    assert_eq!(env.lists(), 0);
    h.abort().await; // crashed: grants at Tapkey, no binding, no ack
    env.until_no_pull_request_waits().await;
    let exp2 = expiry(5);
    env.publish(&with_from(2, exp2)).await;
    let h = worker_runtime::start(cfg(), TapkeyHandler::new())
        .await
        .unwrap();
    eventually(
        "revision 2 applied, revision 1 skipped",
        Duration::from_secs(60),
        || async {
            let skipped = h.registry().encode().lines().any(|l| {
                l.starts_with("accesshub_worker_messages_total")
                    && l.contains("outcome=\"skipped\"")
                    && !l.ends_with(" 0")
            });
            let g = env.grants_of("c2@example.com");
            g.len() == 2 && g.iter().all(|x| x.1 == Some(exp2)) && skipped
        },
    )
    .await;
    let all = env.sim.state().tapkey_grants();
    assert_eq!(
        all.iter().filter(|g| g.active).count(),
        2,
        "one grant per lock"
    );
    assert_eq!(all.iter().filter(|g| g.state == "Revoked").count(), 2);
    env.finish(h).await;
}

fn nameless(key: &str) -> Event {
    let mut ev = pass_event(key, 1, PassStatus::Active, "day", expiry(2));
    if let EventBody::Pass(p) = &mut ev.body {
        p.holder.name = None;
    }
    ev
}

/// A new holder without a name, on the booking's first attempt: one contact PUT (which marks
/// the contact as ours — a grant PUT naming the contact by e-mail would let Tapkey create it
/// unmarked) and one grant PUT per lock, no grants list. A crash right after still ends with
/// one grant per lock, and the contact id is recorded.
#[tokio::test]
async fn a_new_holder_costs_a_contact_put_and_one_call_per_lock_even_across_a_crash() {
    let env = Env::new().await;
    let st = env.sim.state().clone();
    let (h, mut rx) = env.start_crashing().await;
    env.publish(&nameless("n1")).await;
    applied(&mut rx).await;
    assert_eq!(st.count_calls(Vendor::Tapkey, "PUT", "/Contacts"), 1);
    assert_eq!(env.lists(), 0);
    assert_eq!(st.count_calls(Vendor::Tapkey, "PUT", "/Grants"), 2);
    assert_eq!(
        env.grants_of("n1@example.com").len(),
        2,
        "contact made by Tapkey"
    );
    h.abort().await;
    let h = env.start(TapkeyHandler::new()).await;
    env.publish(&nameless("n2")).await;
    let applied = |key: &'static str| {
        let env = &env;
        async move {
            binding_of(env, key)
                .await
                .is_some_and(|b| b.applied_revision == 1)
        }
    };
    eventually("both applied", Duration::from_secs(20), || async {
        applied("n1").await && applied("n2").await
    })
    .await;
    assert_eq!(env.grants_of("n1@example.com").len(), 2);
    assert_eq!(env.grants_of("n2@example.com").len(), 2);
    assert_eq!(
        st.tapkey_grants().len(),
        4,
        "no second grant after the crash"
    );
    assert_eq!(st.count_calls(Vendor::Tapkey, "PUT", "/Grants"), 4);
    for key in ["n1", "n2"] {
        let b = binding_of(&env, key).await.unwrap();
        let contact = st
            .tapkey_contacts()
            .into_iter()
            .find(|c| c.identifier == format!("{key}@example.com"))
            .unwrap();
        assert_eq!(b.vendor_ids["contact_id"], contact.id.as_str(), "{key}");
        assert_eq!(
            contact.comment.as_deref(),
            Some("accesshub:cowork"),
            "marked as ours"
        );
        assert_eq!(b.vendor_ids["grants"].as_object().unwrap().len(), 2);
    }
    env.finish(h).await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_tokens_refresh() {
    let env = Env::new().await;
    let st = env.sim.state();
    st.add_fault(
        FaultRule::next_n(
            Vendor::Tapkey,
            FaultKind::Status429 {
                retry_after_secs: 2,
            },
            1,
        )
        .on_path("/Grants"),
    );
    let h = env.start(TapkeyHandler::new()).await;
    let t0 = Instant::now();
    env.publish(&pass_event("ra", 1, PassStatus::Active, "day", expiry(2)))
        .await;
    eventually("granted", Duration::from_secs(15), || async {
        env.grants_of("ra@example.com").len() == 2
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(st.count_calls(Vendor::Tapkey, "POST", "/connect/token"), 1);
    // Tokens expire at the vendor: the next event refreshes once and succeeds.
    st.advance_clock(Duration::from_secs(2 * 3600));
    env.publish(&pass_event("tr", 1, PassStatus::Active, "day", expiry(2)))
        .await;
    eventually("granted after refresh", Duration::from_secs(15), || async {
        env.grants_of("tr@example.com").len() == 2
    })
    .await;
    assert_eq!(st.count_calls(Vendor::Tapkey, "POST", "/connect/token"), 2);
    env.finish(h).await;
}

#[tokio::test]
async fn unmapped_pass_type_is_dead_lettered_with_reason() {
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let ev = pass_event("u1", 1, PassStatus::Active, "weekend", expiry(2));
    env.publish(&ev).await;
    let stream = env
        .tb
        .bus
        .js
        .get_stream(env.tb.bus.stream_name(subjects::DLQ_STREAM))
        .await
        .unwrap();
    let subj = env
        .tb
        .bus
        .subject(&subjects::dlq(tapkey_adapter::NAME, &ev.subject()));
    eventually("dead letter", Duration::from_secs(10), || async {
        stream.get_last_raw_message_by_subject(&subj).await.is_ok()
    })
    .await;
    let m = stream.get_last_raw_message_by_subject(&subj).await.unwrap();
    let dl: DeadLetter = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(dl.class, ErrorClass::Permanent);
    assert!(
        dl.reason.contains("\"weekend\" is not mapped"),
        "{}",
        dl.reason
    );
    assert_eq!(dl.booking_key.as_deref(), Some("u1"));
    assert!(env.grants_of("u1@example.com").is_empty());
    env.finish(h).await;
}

impl Env {
    /// Stores `ev` as the booking's desired state (what booking-ingest writes) and publishes it.
    async fn ingest(&self, ev: &Event) {
        sqlx::query(
            "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload) \
             VALUES ($1, 'pass', $2, $3, $4, 'nexudus', $5, $6) \
             ON CONFLICT (tenant_id, kind, booking_key) DO UPDATE SET revision = EXCLUDED.revision, \
             event_id = EXCLUDED.event_id, payload = EXCLUDED.payload",
        )
        .bind(&ev.tenant)
        .bind(&ev.booking_key)
        .bind(&ev.site)
        .bind(ev.revision)
        .bind(ev.id)
        .bind(serde_json::to_value(ev).unwrap())
        .execute(&self.db.pool)
        .await
        .unwrap();
        self.publish(ev).await;
    }

    /// Publishes a reconciler removal of grant `vendor_id` for booking `key`.
    async fn publish_remove(&self, key: &str, vendor_id: &str) {
        use accesshub_domain::sync;
        let cmd = sync::RemoveCommand {
            run_id: 1,
            tenant: "cowork".into(),
            vendor: "tapkey".into(),
            connection: "default".into(),
            kind: accesshub_domain::EventKind::Pass,
            booking_key: key.into(),
            reference: format!("{key}#stray"),
            vendor_id: vendor_id.into(),
        };
        let mut hm = async_nats::HeaderMap::new();
        hm.insert(sync::HEADER_RUN, "1");
        hm.insert(sync::HEADER_ACTION, "remove");
        let msg = PublishMessage::build()
            .payload(serde_json::to_vec(&cmd).unwrap().into())
            .headers(hm);
        self.tb
            .bus
            .js
            .send_publish(
                self.tb
                    .bus
                    .subject(&subjects::sync("tapkey", "cowork", key)),
                msg,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Active grant ids of every contact.
    fn active_ids(&self) -> Vec<String> {
        let g = self.sim.state().tapkey_grants();
        g.into_iter().filter(|g| g.active).map(|g| g.id).collect()
    }

    /// The worker's `accesshub_worker_messages_total` for `outcome`.
    fn outcomes(h: &WorkerHandle, outcome: &str) -> u64 {
        h.registry()
            .encode()
            .lines()
            .filter(|l| {
                l.starts_with("accesshub_worker_messages_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

fn with_holder(mut ev: Event, email: &str) -> Event {
    if let EventBody::Pass(p) = &mut ev.body {
        p.holder.email = email.into();
    }
    ev
}

/// Issue item 2: a Nexudus update with a new `CoworkerEmail` moves the pass to the new holder;
/// the old holder's grants are revoked, not dropped from the binding and forgotten.
#[tokio::test]
async fn a_holder_email_change_revokes_the_old_holders_grants() {
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let exp = expiry(3);
    env.publish(&with_holder(
        pass_event("hc", 1, PassStatus::Active, "day", exp),
        "a@x.example",
    ))
    .await;
    eventually("a@x granted", Duration::from_secs(10), || async {
        env.grants_of("a@x.example").len() == 2
    })
    .await;
    env.publish(&with_holder(
        pass_event("hc", 2, PassStatus::Active, "day", exp),
        "b@x.example",
    ))
    .await;
    eventually("b@x granted", Duration::from_secs(10), || async {
        env.grants_of("b@x.example").len() == 2
            && binding_of(&env, "hc")
                .await
                .is_some_and(|b| b.applied_revision == 2)
    })
    .await;
    assert_eq!(
        env.grants_of("a@x.example"),
        vec![],
        "old holder keeps no access"
    );
    let g = env.grants_of("b@x.example");
    assert_eq!(g.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), locks());
    assert!(g.iter().all(|x| x.1 == Some(exp)));
    env.finish(h).await;
}

/// Crashes after applying revision 1 of `key` (Active, no `valid_from`: as from Nexudus),
/// then publishes revision 2 with `status` and a later `occurred_at`, restarts the worker and
/// waits until revision 2 is applied.
async fn crash_then(env: &Env, key: &str, status: PassStatus) -> WorkerHandle {
    let (h, mut rx) = env.start_crashing().await;
    let exp = expiry(2);
    let rev1 = pass_event(key, 1, PassStatus::Active, "day", exp);
    env.publish(&rev1).await;
    applied(&mut rx).await;
    assert_eq!(env.grants_of(&format!("{key}@example.com")).len(), 2);
    h.abort().await; // grants at Tapkey, no applied revision, no ack
    let mut rev2 = pass_event(key, 2, status, "day", exp);
    rev2.occurred_at = rev1.occurred_at + chrono::Duration::seconds(7);
    env.publish(&rev2).await;
    let h = env.start(TapkeyHandler::new()).await;
    eventually("revision 2 applied", Duration::from_secs(20), || async {
        binding_of(env, key)
            .await
            .is_some_and(|b| b.applied_revision == 2)
    })
    .await;
    h
}

/// H2(b): Nexudus never sends `valid_from`, so the start falls back to the event's
/// `occurred_at`, which differs per revision. A crash between the grant PUTs and the binding
/// write, then a later `Removed` revision: the crashed attempt's grants are revoked.
#[tokio::test]
async fn after_a_crash_a_later_removal_revokes_the_crashed_attempts_grants() {
    let env = Env::new().await;
    let h = crash_then(&env, "cr", PassStatus::Removed).await;
    assert_eq!(env.grants_of("cr@example.com"), vec![], "no access left");
    env.finish(h).await;
}

/// The same crash, then a later `Active` revision: the crashed attempt's grants are adopted —
/// exactly one grant per lock, no second PUT.
#[tokio::test]
async fn after_a_crash_a_later_active_revision_adopts_the_crashed_attempts_grants() {
    let env = Env::new().await;
    let h = crash_then(&env, "ca", PassStatus::Active).await;
    let all = env.sim.state().tapkey_grants();
    assert_eq!(all.len(), 2, "no second grant: {all:?}");
    assert!(all.iter().all(|g| g.active));
    let b = binding_of(&env, "ca").await.unwrap();
    let mut recorded: Vec<String> = b.vendor_ids["grants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    recorded.sort();
    let mut ids = env.active_ids();
    ids.sort();
    assert_eq!(recorded, ids, "the binding holds the adopted grants");
    env.finish(h).await;
}

/// M4: a removal the reconciler decided before a newer event re-confirmed the pass must not
/// revoke the grant the pass holds now; a removal of a grant of ours that no pass wants does;
/// a grant that is not ours is never touched.
#[tokio::test]
async fn a_stale_removal_keeps_a_grant_its_pass_still_wants() {
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let exp = expiry(3);
    env.ingest(&pass_event("st", 1, PassStatus::Active, "day", exp))
        .await;
    eventually("granted", Duration::from_secs(10), || async {
        binding_of(&env, "st")
            .await
            .is_some_and(|b| b.applied_revision == 1)
    })
    .await;
    let b = binding_of(&env, "st").await.unwrap();
    let kept = b.vendor_ids["grants"][tk::DEMO_LOCK_FRONT]
        .as_str()
        .unwrap()
        .to_owned();
    // A grant of ours (the holder's marked contact, mapped lock, a pass-shaped validity) that
    // no pass wants, reported under a key no booking has.
    let contact = b.vendor_ids["contact_id"].as_str().unwrap().to_owned();
    let st = env.sim.state();
    let hand = |contact: &str, lock: &str| {
        let from = Utc::now() - chrono::Duration::days(1);
        st.tapkey_add_grant(tk::DEMO_OWNER_ID, lock, contact, from, Some(expiry(9)))
    };
    let stray = hand(&contact, tk::DEMO_LOCK_MEETING);
    // Someone else's grant on a mapped lock: not ours.
    let visitor = st.tapkey_add_contact(tk::DEMO_OWNER_ID, "visitor@example.com", None);
    let foreign = hand(&visitor, tk::DEMO_LOCK_FRONT);
    env.publish_remove("st", &kept).await;
    env.publish_remove(&tapkey_adapter::inventory::stray_key(&contact), &stray)
        .await;
    env.publish_remove("st", &foreign).await;
    eventually(
        "three removals handled",
        Duration::from_secs(15),
        || async { Env::outcomes(&h, "applied") >= 4 },
    )
    .await;
    let active = env.active_ids();
    assert!(active.contains(&kept), "the pass still wants it");
    assert!(!active.contains(&stray), "ours and unwanted: revoked");
    assert!(active.contains(&foreign), "not ours: untouched");
    assert_eq!(env.grants_of("st@example.com").len(), 2);
    env.finish(h).await;
}

/// A pass of holder `email` with an upstream start `from` (as native sources send it).
fn pass_of(
    key: &str,
    rev: i64,
    status: PassStatus,
    email: &str,
    from: DateTime<Utc>,
    exp: DateTime<Utc>,
) -> Event {
    let mut ev = with_holder(pass_event(key, rev, status, "day", exp), email);
    if let EventBody::Pass(p) = &mut ev.body {
        p.valid_from = Some(from);
    }
    ev
}

impl Env {
    /// Waits until `key`'s binding has applied `rev`.
    async fn wait_applied(&self, key: &str, rev: i64) {
        eventually(
            &format!("{key} revision {rev} applied"),
            Duration::from_secs(20),
            || async {
                binding_of(self, key)
                    .await
                    .is_some_and(|b| b.applied_revision == rev)
            },
        )
        .await;
    }

    /// The grants `key`'s binding records, as (lock, validBefore, active) at Tapkey.
    async fn recorded_grants(&self, key: &str) -> Vec<(String, Option<DateTime<Utc>>, bool)> {
        let b = binding_of(self, key).await.unwrap();
        let all = self.sim.state().tapkey_grants();
        let mut v: Vec<_> = b.vendor_ids["grants"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_str()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| all.iter().find(|g| g.id == id))
            .map(|g| (g.bound_lock_id.clone(), g.valid_before, g.active))
            .collect();
        v.sort();
        v
    }
}

/// Issue 20 (convergence seeds 1063, 1074, 1092, 1102, 1166): two passes of the same holder
/// on the same locks with the same start and different expiries. Each keeps its own grants
/// when the other is applied again, and ending one revokes only its own.
#[tokio::test]
async fn two_passes_of_one_holder_keep_their_own_grants() {
    use chrono::DurationRound as _;
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let from = (Utc::now() - chrono::Duration::hours(1))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    let (e1, e2) = (expiry(3), expiry(4));
    let who = "same@x.example";
    env.publish(&pass_of("p1", 1, PassStatus::Active, who, from, e1))
        .await;
    env.wait_applied("p1", 1).await;
    env.publish(&pass_of("p2", 1, PassStatus::Active, who, from, e2))
        .await;
    env.wait_applied("p2", 1).await;
    // Applied again (not a first attempt: the grants are listed and judged).
    env.publish(&pass_of("p2", 2, PassStatus::Active, who, from, e2))
        .await;
    env.wait_applied("p2", 2).await;
    env.publish(&pass_of("p1", 2, PassStatus::Active, who, from, e1))
        .await;
    env.wait_applied("p1", 2).await;
    let both: Vec<_> = {
        let mut v: Vec<_> = locks()
            .into_iter()
            .flat_map(|l| [(l.clone(), Some(e1)), (l, Some(e2))])
            .collect();
        v.sort();
        v
    };
    assert_eq!(env.grants_of(who), both, "both passes keep their access");
    let own =
        |e: DateTime<Utc>| -> Vec<_> { locks().into_iter().map(|l| (l, Some(e), true)).collect() };
    assert_eq!(env.recorded_grants("p1").await, own(e1));
    assert_eq!(env.recorded_grants("p2").await, own(e2));
    // Ending p1 revokes p1's grants only.
    env.publish(&pass_of("p1", 3, PassStatus::Removed, who, from, e1))
        .await;
    env.wait_applied("p1", 3).await;
    let left: Vec<_> = locks().into_iter().map(|l| (l, Some(e2))).collect();
    assert_eq!(env.grants_of(who), left, "only p1's grants are revoked");
    assert_eq!(env.recorded_grants("p2").await, own(e2));
    env.finish(h).await;
}

/// Two passes Tapkey cannot tell apart (same holder, locks, start and expiry): Tapkey holds
/// one grant per lock (an identical grant is refused with 409), both passes record it, and it
/// is revoked only when the last pass recording it ends (docs/sync.md, "What is ours").
#[tokio::test]
async fn indistinguishable_passes_share_a_grant_until_the_last_one_ends() {
    use chrono::DurationRound as _;
    let env = Env::new().await;
    let h = env.start(TapkeyHandler::new()).await;
    let from = (Utc::now() - chrono::Duration::hours(1))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    let exp = expiry(3);
    let who = "twin@x.example";
    for key in ["t1", "t2"] {
        env.publish(&pass_of(key, 1, PassStatus::Active, who, from, exp))
            .await;
        env.wait_applied(key, 1).await;
    }
    let one: Vec<_> = locks().into_iter().map(|l| (l, Some(exp))).collect();
    assert_eq!(env.grants_of(who), one, "one grant per lock");
    let shared: Vec<_> = locks().into_iter().map(|l| (l, Some(exp), true)).collect();
    assert_eq!(env.recorded_grants("t1").await, shared);
    assert_eq!(env.recorded_grants("t2").await, shared);
    env.publish(&pass_of("t1", 2, PassStatus::Removed, who, from, exp))
        .await;
    env.wait_applied("t1", 2).await;
    assert_eq!(env.grants_of(who), one, "t2 still wants them");
    env.publish(&pass_of("t2", 2, PassStatus::Removed, who, from, exp))
        .await;
    env.wait_applied("t2", 2).await;
    assert_eq!(env.grants_of(who), vec![], "the last pass revoked them");
    env.finish(h).await;
}

/// VENDORS.md: the contact PUT returns an existing contact unchanged, so a contact made by
/// hand before the pass gets our marker by a PATCH of its comment — appended to the human's
/// text, not replacing it — once; its grants then bear our mark for the reconciler.
#[tokio::test]
async fn a_contact_made_by_hand_gets_our_marker_appended_to_its_comment() {
    let env = Env::new().await;
    let st = env.sim.state();
    let id = st.tapkey_add_contact(tk::DEMO_OWNER_ID, "hand@x.example", Some("VIP, desk 4"));
    let h = env.start(TapkeyHandler::new()).await;
    let exp = expiry(3);
    env.publish(&with_holder(
        pass_event("hm", 1, PassStatus::Active, "day", exp),
        "hand@x.example",
    ))
    .await;
    env.wait_applied("hm", 1).await;
    let comment = |id: &str| {
        st.tapkey_contacts()
            .into_iter()
            .find(|c| c.id == id)
            .and_then(|c| c.comment)
    };
    assert_eq!(
        comment(&id).as_deref(),
        Some("VIP, desk 4 accesshub:cowork")
    );
    assert_eq!(env.grants_of("hand@x.example").len(), 2);
    // Already marked: applied again, no second PATCH.
    env.publish(&with_holder(
        pass_event("hm", 2, PassStatus::Active, "day", expiry(4)),
        "hand@x.example",
    ))
    .await;
    env.wait_applied("hm", 2).await;
    assert_eq!(
        comment(&id).as_deref(),
        Some("VIP, desk 4 accesshub:cowork")
    );
    assert_eq!(st.count_calls(Vendor::Tapkey, "PATCH", "/Contacts"), 1);
    env.finish(h).await;
}
