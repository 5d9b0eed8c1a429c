//! Run bookkeeping against the real Postgres (and NATS): queueing is deduplicated per
//! connection, the advisory lock lets only one replica run a connection, a crashed replica's
//! run is taken over, schedules fire once and move on DST-correctly.

use std::sync::Arc;

use accesshub_connections::{
    CloudpassAdministration, CloudpassSettings, Connection, Secret, VendorSettings,
};
use chrono::Utc;
use cloudpass_adapter::inventory::CloudpassInventory;
use reconciler::{
    ConnectionRef, Reconciler, RunStatus, Scope, Settings, Trigger,
    connections::StaticConnections,
    inventory::Inventory,
    lock,
    store::{self, RequestOutcome},
};

fn cref(tenant: &str) -> ConnectionRef {
    ConnectionRef {
        tenant: tenant.into(),
        vendor: "cloudpass".into(),
        name: "default".into(),
    }
}

fn cloudpass_conn(tenant: &str, base_url: &str) -> Connection {
    Connection {
        tenant: tenant.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Cloudpass(CloudpassSettings {
            base_url: base_url.into(),
            client_id: vendor_sim::cloudpass::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(vendor_sim::cloudpass::DEMO_CLIENT_SECRET),
            administrations: [(
                "adm-1".to_owned(),
                CloudpassAdministration {
                    site_id: vendor_sim::cloudpass::DEMO_SITE_AMSTERDAM.into(),
                    time_restriction_id: None,
                },
            )]
            .into(),
            default_time_restriction_id: vendor_sim::cloudpass::DEMO_TR_AMSTERDAM_24_7.into(),
            reapply_time_restriction: false,
            window_before_minutes: 30,
            window_after_minutes: 30,
        }),
        version: 1,
    }
}

#[tokio::test]
async fn second_request_for_a_connection_gets_the_active_run() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let c = cref("acme");
    let first = store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, Some("op"))
        .await
        .unwrap();
    let RequestOutcome::Queued(run) = first else {
        panic!("expected queued")
    };
    assert_eq!(run.status, RunStatus::Queued);
    let second = store::request_run(&db.pool, &c, Scope::Active, Trigger::Api, None)
        .await
        .unwrap();
    assert_eq!(second, RequestOutcome::AlreadyActive(run.clone()));
    // Another connection is independent.
    let other = store::request_run(
        &db.pool,
        &cref("other"),
        Scope::Upcoming(5),
        Trigger::Api,
        None,
    )
    .await
    .unwrap();
    assert!(matches!(other, RequestOutcome::Queued(_)));
    // Once claimed (running) it still blocks a new request; finished, it does not.
    let claimed = store::claim_next(&db.pool, "r1").await.unwrap().unwrap();
    assert_eq!(claimed.id, run.id);
    assert!(matches!(
        store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, None).await.unwrap(),
        RequestOutcome::AlreadyActive(r) if r.id == run.id && r.status == RunStatus::Running
    ));
    store::finish(
        &db.pool,
        run.id,
        RunStatus::Succeeded,
        &Default::default(),
        None,
    )
    .await
    .unwrap();
    assert!(matches!(
        store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, None).await.unwrap(),
        RequestOutcome::Queued(r) if r.id != run.id
    ));
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn connection_lock_admits_one_replica_and_survives_a_crash() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let c = cref("acme");
    let held = lock::try_lock(&db.pool, &c)
        .await
        .unwrap()
        .expect("first lock");
    assert!(lock::try_lock(&db.pool, &c).await.unwrap().is_none());
    assert!(
        lock::try_lock(&db.pool, &cref("other"))
            .await
            .unwrap()
            .is_some()
    );
    // A replica that dies drops its session: the lock is free again.
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = lock::try_lock(&db.pool, &c)
        .await
        .unwrap()
        .expect("lock after crash");
    again.release().await;
    assert!(lock::try_lock(&db.pool, &c).await.unwrap().is_some());
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn two_replicas_one_connection_one_runs_the_other_requeues() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral())
        .await
        .unwrap();
    sim.state().seed_demo();
    let conns = StaticConnections::new(vec![cloudpass_conn("acme", &sim.cloudpass_url())]);
    let inv: Arc<dyn Inventory> = Arc::new(CloudpassInventory::new().unwrap());
    let mk = |runner: &str| {
        Reconciler::new(
            db.pool.clone(),
            bus.bus.clone(),
            Arc::new(conns.clone()),
            vec![inv.clone()],
            Settings {
                runner: runner.into(),
                default_schedules: false,
                ..Settings::default()
            },
        )
    };
    let (a, b) = (mk("replica-a"), mk("replica-b"));
    let c = cref("acme");
    let RequestOutcome::Queued(run) =
        store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, None)
            .await
            .unwrap()
    else {
        panic!()
    };
    // Replica B holds the connection (a run in progress elsewhere); A claims the queued run
    // but must not execute it.
    let b_lock = lock::try_lock(&db.pool, &c).await.unwrap().unwrap();
    let claimed = store::claim_next(&db.pool, "replica-a")
        .await
        .unwrap()
        .unwrap();
    assert!(a.execute(claimed).await.unwrap().is_none());
    let r = store::get_run(&db.pool, run.id).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Queued, "requeued, not run twice");
    b_lock.release().await;
    // Now B drains the queue and runs it.
    let done = b.drain_queue().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, run.id);
    assert_eq!(done[0].status, RunStatus::Succeeded, "{:?}", done[0].error);
    sim.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_crashed_replicas_run_is_taken_over() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let c = cref("acme");
    store::request_run(&db.pool, &c, Scope::Full, Trigger::Manual, None)
        .await
        .unwrap();
    let run = store::claim_next(&db.pool, "dead-replica")
        .await
        .unwrap()
        .unwrap();
    // Its heartbeat is old and nobody holds the lock.
    sqlx::query("UPDATE sync_runs SET heartbeat_at = now() - interval '10 minutes' WHERE id = $1")
        .bind(run.id)
        .execute(&db.pool)
        .await
        .unwrap();
    let rec = Reconciler::new(
        db.pool.clone(),
        bus.bus.clone(),
        Arc::new(StaticConnections::default()),
        vec![],
        Settings {
            lease: std::time::Duration::from_secs(60),
            default_schedules: false,
            ..Settings::default()
        },
    );
    // While the original replica still holds the lock (alive but slow), nothing happens.
    let alive = lock::try_lock(&db.pool, &c).await.unwrap().unwrap();
    assert_eq!(rec.take_over_stale().await.unwrap(), 0);
    alive.release().await;
    assert_eq!(rec.take_over_stale().await.unwrap(), 1);
    let r = store::get_run(&db.pool, run.id).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Queued);
    // Executed by the new replica: the connection is unknown here, so it fails cleanly.
    let done = rec.drain_queue().await.unwrap();
    assert_eq!(done[0].status, RunStatus::Failed);
    assert!(
        done[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no connection")
    );
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn schedules_fire_once_and_move_to_the_next_local_time() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let c = cref("acme");
    // Set just before the spring-forward night in Amsterdam.
    let now: chrono::DateTime<Utc> = "2026-03-28T12:00:00Z".parse().unwrap();
    let s = store::set_schedule(
        &db.pool,
        &c,
        "0 3 * * *",
        "Europe/Amsterdam",
        Scope::Upcoming(5),
        true,
        now,
    )
    .await
    .unwrap();
    // 29 Mar 2026 03:00 CEST = 01:00Z.
    assert_eq!(
        s.next_run_at,
        "2026-03-29T01:00:00Z"
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    );
    // Not due yet.
    assert!(
        store::fire_due_schedules(&db.pool, now)
            .await
            .unwrap()
            .is_empty()
    );
    let at = s.next_run_at + chrono::Duration::seconds(5);
    let fired = store::fire_due_schedules(&db.pool, at).await.unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].trigger, Trigger::Schedule);
    assert_eq!(fired[0].scope, Scope::Upcoming(5));
    // Firing again at the same moment does nothing (moved on); next is 30 Mar 03:00 CEST.
    assert!(
        store::fire_due_schedules(&db.pool, at)
            .await
            .unwrap()
            .is_empty()
    );
    let list = store::list_schedules(&db.pool, Some("acme")).await.unwrap();
    assert_eq!(
        list[0].next_run_at,
        "2026-03-30T01:00:00Z"
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    );
    assert_eq!(list[0].last_run_id, Some(fired[0].id));
    // A due schedule while a run is active does not queue a second one.
    let later = list[0].next_run_at + chrono::Duration::seconds(1);
    assert!(
        store::fire_due_schedules(&db.pool, later)
            .await
            .unwrap()
            .is_empty()
    );
    // Default schedule: nightly 03:00 in the given zone; existing schedules are kept.
    store::ensure_default_schedule(&db.pool, &c, "UTC", now)
        .await
        .unwrap();
    store::ensure_default_schedule(&db.pool, &cref("new"), "Europe/Amsterdam", now)
        .await
        .unwrap();
    let all = store::list_schedules(&db.pool, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].timezone, "Europe/Amsterdam");
    assert_eq!(all[1].cron, reconciler::schedule::DEFAULT_CRON);
    // Bad input is refused.
    assert!(
        store::set_schedule(&db.pool, &c, "61 * * * *", "UTC", Scope::Full, true, now)
            .await
            .is_err()
    );
    bus.cleanup().await;
    db.drop_db().await;
}
