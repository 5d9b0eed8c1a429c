//! Nexudus passes by pull (issue 21): Nexudus has no webhook for coworker time passes, so the
//! reconciler polls them (incremental by `UpdatedOn`) and Sync Now lists them all. Real NATS
//! and Postgres, the Nexudus and Tapkey simulators and tapkey-worker in-process; no webhook,
//! and no `CoworkerEmail`: the holder's e-mail comes from the coworkers API.
//! - Install: Sync Now grants the passes Nexudus holds (mapped pass types, not expired).
//! - A pass created in Nexudus becomes a grant for the right e-mail within one poll interval.
//! - A pass deleted in Nexudus is revoked by the next Sync Now.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use accesshub_connections::{Connection, Secret, TapkeySettings, VendorSettings};
use chrono::Utc;
use reconciler::{RunStatus, Scope, Settings, inventory::Inventory, pull::Puller};
use serde_json::{Value, json};
use tapkey_adapter::inventory::TapkeyInventory;
use tokio_util::sync::CancellationToken;
use vendor_sim::{nexudus as nx, tapkey as tk};

const TENANT: &str = "cowork";

fn connection(base: &str) -> Connection {
    let mut pass_types = BTreeMap::new();
    pass_types.insert("31".to_owned(), vec![tk::DEMO_LOCK_FRONT.to_owned()]);
    Connection {
        tenant: TENANT.into(),
        name: "default".into(),
        enabled: true,
        sites: vec!["7".into()],
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

/// A pass as Nexudus serves it (no e-mail on it).
fn pass(unique: &str, coworker: i64, time_pass: i64, expires_in_days: i64) -> Value {
    let now = Utc::now();
    json!({
        "Id": 1000 + coworker, "UniqueId": unique, "CoworkerId": coworker, "BusinessId": 7,
        "TimePassId": time_pass, "TimePassName": "Day pass",
        "ExpireDate": (now + chrono::Duration::days(expires_in_days)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "Used": false, "UsedDate": null, "RemainingUses": 1,
        "CreatedOn": now.to_rfc3339(), "UpdatedOn": now.to_rfc3339(),
    })
}

/// Installs the tenant with the Nexudus simulator's API user.
async fn install_nexudus(
    db: &accesshub_testkit::TestDb,
    nexsim: &nx::NexudusSim,
) -> (
    accesshub_upstreams::UpstreamStore,
    accesshub_store::SecretBox,
) {
    let secret = format!("{}:{}", nx::DEMO_USER, nx::DEMO_PASSWORD);
    common::install_upstream(db, TENANT, "nexudus", nexsim.url(), secret).await
}

/// Whether `email` holds an active grant at the Tapkey simulator.
fn granted(sim: &vendor_sim::SimHandle, email: &str) -> bool {
    let contacts = sim.state().tapkey_contacts();
    let Some(c) = contacts.iter().find(|c| c.identifier == email) else {
        return false;
    };
    sim.state()
        .tapkey_grants()
        .iter()
        .any(|g| g.contact_id == c.id && g.active && g.state == "Ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexudus_passes_are_polled_and_synced_into_tapkey_grants_without_webhooks() {
    let (db, tb, sim) = common::setup().await;
    let nexsim = nx::start_ephemeral().await.unwrap();
    nexsim.put_coworker("101", "Ana Alves", "ana@example.com");
    nexsim.put_coworker("102", "Bo Berg", "bo@example.com");
    nexsim.put_coworker("103", "Cy Cole", "cy@example.com");
    nexsim.put_pass(pass("pass-ana", 101, 31, 30));
    nexsim.put_pass(pass("pass-expired", 102, 31, -1));
    nexsim.put_pass(pass("pass-unmapped", 102, 99, 30));

    let (upstreams, sbox) = install_nexudus(&db, &nexsim).await;
    // booking-ingest's relay publishes what the pulls store (its outbox), as in production.
    let ingest = booking_ingest::start(booking_ingest::IngestConfig::for_test(
        tb.config("booking-ingest", &db.url),
        sbox,
    ))
    .await
    .unwrap();
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
    let inv: Arc<dyn Inventory> = Arc::new(TapkeyInventory::new(1000.0));
    let rec = reconciler::Reconciler::new(
        db.pool.clone(),
        tb.bus.clone(),
        Arc::new(reconciler::connections::StaticConnections::new(vec![
            conn.clone(),
        ])),
        vec![inv],
        Settings {
            default_schedules: false,
            upstream_poll: Duration::from_secs(1),
            ..Settings::default()
        },
    )
    .with_puller(Puller::new(db.pool.clone(), tb.bus.clone(), upstreams));

    // Install: Sync Now grants what Nexudus holds (mapped, not expired).
    let run = common::run(&rec, &db, &conn, Scope::Active).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let p = run.pull.unwrap();
    assert_eq!((p.fetched, p.new, p.vanished), (1, 1, 0), "{p:?}");
    common::eventually("Ana's grant", || granted(&sim, "ana@example.com")).await;
    assert!(
        !granted(&sim, "bo@example.com"),
        "expired and unmapped passes"
    );

    // The service polls every second: a new pass becomes a grant within an interval or two.
    let stop = CancellationToken::new();
    let serving = tokio::spawn(rec.clone().serve(stop.clone()));
    nexsim.put_pass(pass("pass-cy", 103, 31, 10));
    accesshub_testkit::eventually("Cy's grant from a poll", Duration::from_secs(10), || {
        std::future::ready(granted(&sim, "cy@example.com"))
    })
    .await;
    stop.cancel();
    serving.await.unwrap();

    // Deleted in Nexudus: the next Sync Now revokes it.
    assert!(nexsim.delete_pass("pass-ana"));
    let run = common::run(&rec, &db, &conn, Scope::Active).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let p = run.pull.unwrap();
    assert_eq!((p.fetched, p.vanished), (1, 1), "{p:?}");
    common::eventually("Ana's grant revoked", || !granted(&sim, "ana@example.com")).await;
    assert!(granted(&sim, "cy@example.com"));

    // Cy's e-mail changes in Nexudus (its webhook asks for this re-read): the grant follows.
    tokio::time::sleep(Duration::from_millis(5)).await;
    nexsim.put_coworker("103", "Cy Cole", "cy.cole@example.com");
    let run = common::run(&rec, &db, &conn, Scope::Active).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.pull.unwrap().changed, 1);
    common::eventually("the grant follows the new e-mail", || {
        granted(&sim, "cy.cole@example.com") && !granted(&sim, "cy@example.com")
    })
    .await;

    worker.shutdown().await.unwrap();
    ingest.shutdown().await;
    nexsim.shutdown().await;
    common::teardown(db, tb, sim).await;
}

/// The poll's mark is kept in Postgres: a reconciler restarted after a poll asks Nexudus only
/// for what changed since that poll (it neither re-lists everything nor starts blind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_poller_goes_on_from_the_last_poll() {
    let (db, tb, sim) = common::setup().await;
    let nexsim = nx::start_ephemeral().await.unwrap();
    nexsim.put_coworker("101", "Ana Alves", "ana@example.com");
    let two_hours_ago = (Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let mut old = pass("pass-old", 101, 31, 10);
    old["UpdatedOn"] = json!(two_hours_ago);
    nexsim.put_pass(old);
    let (upstreams, _) = install_nexudus(&db, &nexsim).await;
    let conn = connection(&sim.tapkey_url());

    // The first poll of the connection lists everything.
    let first = Puller::new(db.pool.clone(), tb.bus.clone(), upstreams.clone());
    let p = first.poll(&conn, Utc::now()).await.unwrap().unwrap();
    assert_eq!(
        (p.counts.fetched, p.counts.new, p.failed),
        (1, 1, 0),
        "{p:?}"
    );
    drop(first);

    // While "down": a pass changed long before the last poll (already read), and a new one.
    let mut older = pass("pass-older", 101, 31, 10);
    older["UpdatedOn"] = json!(two_hours_ago);
    nexsim.put_pass(older);
    nexsim.put_pass(pass("pass-new", 101, 31, 10));

    // A new process: only the change since the last poll is asked for.
    let restarted = Puller::new(db.pool.clone(), tb.bus.clone(), upstreams);
    let p = restarted.poll(&conn, Utc::now()).await.unwrap().unwrap();
    assert_eq!((p.counts.fetched, p.counts.new), (1, 1), "{p:?}");
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT booking_key FROM bookings WHERE tenant_id = $1 ORDER BY booking_key",
    )
    .bind(TENANT)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored, ["pass-new", "pass-old"]);

    nexsim.shutdown().await;
    common::teardown(db, tb, sim).await;
}

/// Passes are keyed by source too (issue 21 item 6): another upstream of the tenant holds the
/// plain key, so the Nexudus pass is stored as `nexudus:<UniqueId>`; Sync Now must recognize it
/// as the pass Nexudus still lists (not mark it removed) and the other upstream's pass stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_under_its_source_key_is_not_marked_removed_while_nexudus_lists_it() {
    use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source};
    let (db, tb, sim) = common::setup().await;
    let nexsim = nx::start_ephemeral().await.unwrap();
    nexsim.put_coworker("101", "Ana Alves", "ana@example.com");
    nexsim.put_pass(pass("pass-1", 101, 31, 10));
    let (upstreams, _) = install_nexudus(&db, &nexsim).await;
    let conn = connection(&sim.tapkey_url());
    let puller = Puller::new(db.pool.clone(), tb.bus.clone(), upstreams);
    // Another upstream's pass "pass-1" (the same plain key).
    let other = Event::new(
        TENANT,
        "7",
        "pass-1",
        1,
        Source::Native,
        Utc::now(),
        EventBody::Pass(Pass {
            status: PassStatus::Active,
            holder: PassHolder {
                id: "x".into(),
                email: "other@example.com".into(),
                name: None,
            },
            pass_type: "31".into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: Utc::now() + chrono::Duration::days(10),
        }),
    );
    puller.storer().store("seed", other).await.unwrap();

    let inv: Arc<dyn Inventory> = Arc::new(TapkeyInventory::new(1000.0));
    let rec = common::reconciler(&db, &tb, &conn, inv).with_puller(puller);
    for round in ["install", "again"] {
        let run = common::run(&rec, &db, &conn, Scope::Active).await;
        let p = run.pull.unwrap();
        assert_eq!(p.vanished, 0, "{round}: {p:?}");
        assert_eq!(p.fetched, 1, "{round}: {p:?}");
    }
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT booking_key, source, ends_access FROM bookings WHERE kind = 'pass'
          ORDER BY booking_key",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("nexudus:pass-1".to_owned(), "nexudus".to_owned(), false),
            ("pass-1".to_owned(), "native".to_owned(), false)
        ]
    );

    nexsim.shutdown().await;
    common::teardown(db, tb, sim).await;
}
