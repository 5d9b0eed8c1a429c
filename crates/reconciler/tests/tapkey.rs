//! Tapkey end to end with tapkey-worker in-process: a grant revoked by hand in the portal is
//! re-issued, a pass whose removal event was lost has its grants revoked, grants we did not
//! issue are never touched, and a second run finds everything in sync.

#![allow(clippy::unwrap_used)]

mod common;

use accesshub_testkit::eventually;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use accesshub_connections::{Connection, Secret, TapkeySettings, VendorSettings};
use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source};
use reconciler::{
    Counts, RunStatus, Scope, Trigger, connections::conn_ref, inventory::Inventory, store,
};
use serde_json::json;
use tapkey_adapter::inventory::TapkeyInventory;
use vendor_sim::tapkey as tk;

const TENANT: &str = "cowork";

fn connection(base: &str) -> Connection {
    let mut pass_types = BTreeMap::new();
    pass_types.insert(
        "day".to_owned(),
        vec![
            tk::DEMO_LOCK_FRONT.to_owned(),
            tk::DEMO_LOCK_MEETING.to_owned(),
        ],
    );
    pass_types.insert("meet".to_owned(), vec![tk::DEMO_LOCK_MEETING.to_owned()]);
    Connection {
        tenant: TENANT.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Tapkey(TapkeySettings {
            authority_url: base.into(),
            base_url: base.into(),
            client_id: tk::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(tk::DEMO_CLIENT_SECRET),
            owner_account_id: tk::DEMO_OWNER_ID.into(),
            pass_types,
        }),
        version: 1,
    }
}

fn pass(key: &str, rev: i64, pass_type: &str, status: PassStatus) -> Event {
    Event::new(
        TENANT,
        "hq",
        key,
        rev,
        Source::Nexudus,
        chrono::Utc::now(),
        EventBody::Pass(Pass {
            status,
            holder: PassHolder {
                id: format!("h-{key}"),
                email: format!("{}@example.com", key.to_lowercase()),
                name: None,
            },
            pass_type: pass_type.into(),
            pass_type_name: None,
            valid_from: Some("2026-01-01T08:00:00Z".parse().unwrap()),
            expires_at: "2031-01-01T00:00:00Z".parse().unwrap(),
        }),
    )
}

async fn store_desired(db: &accesshub_testkit::TestDb, ev: &Event) {
    let EventBody::Pass(p) = &ev.body else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id,
                               payload, starts_at, ends_at)
         VALUES ($1, 'pass', $2, $3, $4, 'nexudus', $5, $6, $7, $8)
         ON CONFLICT (tenant_id, kind, booking_key) DO UPDATE SET revision = EXCLUDED.revision,
             event_id = EXCLUDED.event_id, payload = EXCLUDED.payload, updated_at = now()",
    )
    .bind(&ev.tenant)
    .bind(&ev.booking_key)
    .bind(&ev.site)
    .bind(ev.revision)
    .bind(ev.id)
    .bind(serde_json::to_value(ev).unwrap())
    .bind(p.valid_from)
    .bind(p.expires_at)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn grants_of(db: &accesshub_testkit::TestDb, key: &str) -> BTreeMap<String, String> {
    let ids: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT vendor_ids FROM bindings WHERE tenant_id = $1 AND vendor = 'tapkey' AND booking_key = $2",
    )
    .bind(TENANT)
    .bind(key)
    .fetch_optional(&db.pool)
    .await
    .unwrap();
    ids.and_then(|v| serde_json::from_value(v["grants"].clone()).ok())
        .unwrap_or_default()
}

fn active(sim: &vendor_sim::SimHandle, id: &str) -> bool {
    sim.state()
        .tapkey_grants()
        .iter()
        .any(|g| g.id == id && g.active)
}

/// The owner working in the Tapkey portal.
struct Portal {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Portal {
    async fn login(base: &str) -> Portal {
        let http = reqwest::Client::new();
        let t: serde_json::Value = http
            .post(format!("{base}/connect/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", tk::DEMO_CLIENT_ID),
                ("client_secret", tk::DEMO_CLIENT_SECRET),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Portal {
            http,
            api: format!("{base}/api/v1/Owners/{}", tk::DEMO_OWNER_ID),
            token: t["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn revoke(&self, grant: &str) {
        let r = self
            .http
            .post(format!("{}/Grants/{grant}/Revoke", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn grant(&self, email: &str) -> String {
        let r: serde_json::Value = self
            .http
            .put(format!("{}/Grants", self.api))
            .bearer_auth(&self.token)
            .json(
                &json!({"boundLockId": tk::DEMO_LOCK_FRONT, "contact": {"identifier": email},
                          "validFrom": "2026-01-01T00:00:00.000Z"}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["id"].as_str().unwrap().to_owned()
    }
}

/// Isolated Postgres and NATS, the Tapkey simulator with its demo fixture, and tapkey-worker
/// in-process on the test connection.
struct Stack {
    db: accesshub_testkit::TestDb,
    tb: accesshub_testkit::TestBus,
    sim: vendor_sim::SimHandle,
    conn: Connection,
    worker: worker_runtime::WorkerHandle,
}

impl Stack {
    async fn start() -> Stack {
        accesshub_telemetry::init_for_tests();
        let (db, tb) = accesshub_testkit::isolated().await;
        let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
            .await
            .unwrap();
        sim.state().seed_demo();
        let conn = connection(&sim.tapkey_url());
        let worker = worker_runtime::start(
            worker_runtime::WorkerConfig::for_test(
                tb.config(tapkey_adapter::NAME, &db.url),
                Arc::new(worker_runtime::StaticConnections::new(vec![conn.clone()])),
            ),
            tapkey_adapter::TapkeyHandler::new(),
        )
        .await
        .unwrap();
        Stack {
            db,
            tb,
            sim,
            conn,
            worker,
        }
    }

    async fn finish(self) {
        self.worker.shutdown().await.unwrap();
        self.sim.shutdown().await;
        self.tb.cleanup().await;
        self.db.drop_db().await;
    }
}

#[tokio::test]
async fn revoked_grant_reissued_lost_removal_revoked_foreign_untouched() {
    let stack = Stack::start().await;
    let (db, tb, sim, conn) = (&stack.db, &stack.tb, &stack.sim, &stack.conn);

    for ev in [
        pass("P1", 1, "day", PassStatus::Active),
        pass("P2", 1, "meet", PassStatus::Active),
        pass("P3", 1, "day", PassStatus::Active),
        pass("P4", 1, "day", PassStatus::Active),
    ] {
        store_desired(db, &ev).await;
        common::publish(tb, &ev).await;
    }
    eventually("grants issued", Duration::from_secs(15), || async {
        let mut n = 0;
        for k in ["P1", "P2", "P3", "P4"] {
            n += grants_of(db, k).await.len();
        }
        n == 7
    })
    .await;

    // Drift: P2's only grant and one of P3's revoked by hand; P4 removed upstream but the
    // event never arrived (only the desired state has it); a grant issued by hand.
    let portal = Portal::login(&sim.tapkey_url()).await;
    let p2 = grants_of(db, "P2").await;
    portal.revoke(&p2[tk::DEMO_LOCK_MEETING]).await;
    let p3 = grants_of(db, "P3").await;
    portal.revoke(&p3[tk::DEMO_LOCK_FRONT]).await;
    store_desired(db, &pass("P4", 2, "day", PassStatus::Removed)).await;
    let p4 = grants_of(db, "P4").await;
    let foreign = portal.grant("visitor@example.com").await;

    let inv: Arc<dyn Inventory> = Arc::new(TapkeyInventory::new(100.0));
    let rec = common::reconciler(db, tb, conn, inv);
    let c = conn_ref(conn);
    store::request_run(&db.pool, &c, Scope::Active, Trigger::Api, Some("sync now"))
        .await
        .unwrap();
    let run = rec.drain_queue().await.unwrap().pop().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.counts,
        Counts {
            checked: 4,
            in_sync: 1,
            created: 1,
            updated: 1,
            removed: 2,
            failed: 0
        }
    );

    eventually("repairs applied", Duration::from_secs(15), || async {
        let p2 = grants_of(db, "P2").await;
        let p3 = grants_of(db, "P3").await;
        p2.values().all(|g| active(sim, g))
            && p2.len() == 1
            && p3.len() == 2
            && p3.values().all(|g| active(sim, g))
            && p4.values().all(|g| !active(sim, g))
    })
    .await;
    assert!(
        active(sim, &foreign),
        "a grant we did not issue is never touched"
    );

    store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, None)
        .await
        .unwrap();
    let run2 = rec.drain_queue().await.unwrap().pop().unwrap();
    assert_eq!(
        run2.counts,
        Counts {
            checked: 4,
            in_sync: 4,
            ..Counts::default()
        },
        "{:?}",
        run2.error
    );
    assert!(active(sim, &foreign));

    stack.finish().await;
}

/// Overwrites a binding's vendor ids, as an older build or a crash left them.
async fn set_record(db: &accesshub_testkit::TestDb, key: &str, ids: serde_json::Value) {
    sqlx::query(
        "UPDATE bindings SET vendor_ids = $3 WHERE tenant_id = $1 AND vendor = 'tapkey' AND booking_key = $2",
    )
    .bind(TENANT)
    .bind(key)
    .bind(ids)
    .execute(&db.pool)
    .await
    .unwrap();
}

fn with_holder(mut ev: Event, email: &str) -> Event {
    if let EventBody::Pass(p) = &mut ev.body {
        p.holder.email = email.into();
    }
    ev
}

/// Active grants of the contact with this e-mail.
fn active_of(sim: &vendor_sim::SimHandle, email: &str) -> usize {
    let st = sim.state();
    let Some(c) = st
        .tapkey_contacts()
        .into_iter()
        .find(|c| c.identifier == email)
    else {
        return 0;
    };
    st.tapkey_grants()
        .iter()
        .filter(|g| g.contact_id == c.id && g.active)
        .count()
}

/// H2(c): grants no binding holds — P5's after the crash case (the record names the contact
/// but no grant, as older builds left it), P6's old holder's after an e-mail change whose
/// binding forgot them — are found by the contact marker and revoked by a full sync; the new
/// holder gets grants; a grant of an unmarked contact is never touched.
#[tokio::test]
async fn a_full_sync_finds_and_revokes_grants_no_binding_holds() {
    let stack = Stack::start().await;
    let (db, tb, sim, conn) = (&stack.db, &stack.tb, &stack.sim, &stack.conn);
    for key in ["P5", "P6"] {
        let ev = pass(key, 1, "day", PassStatus::Active);
        store_desired(db, &ev).await;
        common::publish(tb, &ev).await;
    }
    eventually("grants issued", Duration::from_secs(15), || async {
        grants_of(db, "P5").await.len() == 2 && grants_of(db, "P6").await.len() == 2
    })
    .await;
    let contact = |email: &str| {
        sim.state()
            .tapkey_contacts()
            .into_iter()
            .find(|c| c.identifier == email)
            .unwrap()
    };
    assert_eq!(
        contact("p5@example.com").comment.as_deref(),
        Some("accesshub:cowork")
    );
    // P5: removed upstream; its record knows the contact but no grant id.
    store_desired(db, &pass("P5", 2, "day", PassStatus::Removed)).await;
    let p5_contact = contact("p5@example.com").id;
    set_record(
        db,
        "P5",
        json!({"contact_id": p5_contact, "valid_from": "2026-01-01T08:00:00Z"}),
    )
    .await;
    // P6: the holder's e-mail changed; the record forgot the old holder's grants.
    store_desired(
        db,
        &with_holder(pass("P6", 2, "day", PassStatus::Active), "new6@example.com"),
    )
    .await;
    set_record(db, "P6", json!({})).await;
    let portal = Portal::login(&sim.tapkey_url()).await;
    let foreign = portal.grant("visitor@example.com").await;

    let inv: Arc<dyn Inventory> = Arc::new(TapkeyInventory::new(100.0));
    let rec = common::reconciler(db, tb, conn, inv);
    let run = common::run(&rec, db, conn, Scope::Full).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.counts,
        Counts {
            checked: 2,
            created: 1,
            removed: 4,
            ..Counts::default()
        }
    );
    eventually("repaired", Duration::from_secs(15), || async {
        active_of(sim, "p5@example.com") == 0
            && active_of(sim, "p6@example.com") == 0
            && active_of(sim, "new6@example.com") == 2
    })
    .await;
    assert!(active(sim, &foreign), "not ours: untouched");
    eventually("P6 recorded", Duration::from_secs(15), || async {
        grants_of(db, "P6").await.len() == 2
    })
    .await;
    let run2 = common::run(&rec, db, conn, Scope::Full).await;
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

    stack.finish().await;
}
