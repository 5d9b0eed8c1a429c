//! `pull-bench`: a Sync that pulls N upstream reservations (default 100,000) from the BEX
//! simulator, page by page (`links.next`, 100 a page), stores each through booking-ingest's
//! durable path, and brings them through the reconciler's compare and cloudpass-worker to the
//! CloudPass simulator: the issue 21 "Sync re-reads the source of truth" path at scale, with
//! no webhook. Everything runs in this process (the simulators too), so the peak resident
//! memory (VmHWM) reported is the whole process's, an upper bound for the reconciler.
//!
//! Reports: the run's wall time, the pull phase (fetched, new), the time until the vendor
//! holds every vehicle booking, and VmHWM. Writes the "Upstream pull sync" section of
//! BENCHMARKS.md and target/bench/pull-bench.json.
//!
//! `pull-bench [N]` — or `PULL_BENCH_RESERVATIONS=N`. Guests are not fetched (one call per
//! reservation would measure the simulator); the reservations carry their guest name.

use std::{sync::Arc, time::Instant};

use accesshub_connections::{Connection, TenantStore};
use accesshub_store::SecretBox;
use accesshub_upstreams::{UpstreamCredentials, UpstreamStore};
use anyhow::{Context as _, bail};
use chrono::{Duration, Utc};
use cloudpass_adapter::inventory::CloudpassInventory;
use reconciler::{
    Reconciler, Scope, Settings, Trigger, connections::StaticConnections, inventory::Inventory,
    pull::Puller, store,
};
use serde_json::json;
use vendor_sim::bex;

const TENANT: &str = "pullbench";
const ADMIN: &str = "4711";

fn connection(base_url: &str) -> Connection {
    accesshub_bench::cloudpass_connection(TENANT, ADMIN, base_url)
}

/// A distinct valid plate per reservation (letters and digits only).
fn plate(i: usize) -> String {
    let letters: String = (0..3)
        .map(|k| char::from(b'A' + u8::try_from((i / 26usize.pow(k)) % 26).unwrap_or(0)))
        .collect();
    format!("{letters}{i:06}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PULL_BENCH_RESERVATIONS").ok())
        .map(|v| v.parse().context("N must be a number"))
        .transpose()?
        .unwrap_or(100_000);
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
    sim.state().seed_demo();
    let bexsim = bex::start_ephemeral().await?;
    let today = Utc::now().date_naive();
    let now = Utc::now().to_rfc3339();
    for i in 0..n {
        let arrival = today + Duration::days(i64::try_from(i % 5).unwrap_or(0));
        bexsim.put_reservation(
            ADMIN,
            bex::SimReservation {
                id: format!("R{i}"),
                attributes: json!({
                    "booking_nr": format!("BN{i}"), "start_date": arrival.to_string(),
                    "end_date": (arrival + Duration::days(2)).to_string(), "state": "confirmed",
                    "last_name": format!("Guest{i}"), "updated_at": now,
                    "license_plates": [plate(i)],
                }),
                guests: vec![],
            },
        );
    }
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec())?;
    TenantStore::new(db.pool.clone(), sbox.clone())
        .upsert(TENANT, TENANT)
        .await?;
    let upstreams = UpstreamStore::new(db.pool.clone(), sbox.clone());
    upstreams
        .set(
            TENANT,
            "bex",
            &UpstreamCredentials {
                base_url: bexsim.url(),
                secret: bex::DEMO_API_KEY.into(),
                options: json!({"rate_per_sec": 100000.0, "burst": 1000, "guests": false}),
            },
        )
        .await?;
    let conn = connection(&sim.cloudpass_url());
    // booking-ingest's relay publishes the pulled events; the worker applies them (and the
    // run's repairs) at CloudPass.
    let ingest = booking_ingest::start(booking_ingest::IngestConfig::for_test(
        tb.config("booking-ingest", &db.url),
        sbox,
    ))
    .await?;
    // Production settings (512 slots, `WorkerConfig::new`), not the tests' 8 slots, which
    // paced the vendor phase at ~120 bookings/s; no configured vendor rate limit.
    let mut worker_cfg = worker_runtime::WorkerConfig::new(
        tb.config(cloudpass_adapter::NAME, &db.url),
        Arc::new(worker_runtime::StaticConnections::new(vec![conn.clone()])),
    );
    worker_cfg.rate_limit = 0.0;
    let worker =
        worker_runtime::start(worker_cfg, cloudpass_adapter::CloudpassHandler::new()).await?;
    let inv: Arc<dyn Inventory> = Arc::new(CloudpassInventory::with_rate(10_000.0));
    let rec = Reconciler::new(
        db.pool.clone(),
        tb.bus.clone(),
        Arc::new(StaticConnections::new(vec![conn.clone()])),
        vec![inv],
        Settings {
            default_schedules: false,
            ..Settings::default()
        },
    )
    .with_puller(Puller::new(db.pool.clone(), tb.bus.clone(), upstreams));

    let started = Instant::now();
    store::request_run(
        &db.pool,
        &reconciler::connections::conn_ref(&conn),
        Scope::Upcoming(5),
        Trigger::Manual,
        Some("pull-bench"),
    )
    .await?;
    let run = rec
        .drain_queue()
        .await?
        .pop()
        .context("the run did not execute")?;
    let run_time = started.elapsed();
    let pulled = run.pull.unwrap_or_default();
    if pulled.fetched != i64::try_from(n)? {
        bail!("fetched {} of {n}: {:?}", pulled.fetched, run.error);
    }
    let pages = bexsim.calls();
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let held = sim
            .state()
            .cloudpass_bookings()
            .iter()
            .filter(|b| b.reference.starts_with("ah:pullbench:"))
            .count();
        if held >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {held} of {n} vehicle bookings at CloudPass after 10 minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let through = started.elapsed();
    let hwm_mb = accesshub_bench::vm_hwm_kb() / 1024;
    let body = format!(
        "{}\n\n| figure | value |\n|---|---|\n\
         | upstream reservations (BEX simulator, 100 a page) | {n} ({pages} API calls) |\n\
         | sync run (pull + compare + repairs published) | **{:.1} s** |\n\
         | pulled: fetched / new / changed / vanished | {} / {} / {} / {} |\n\
         | until CloudPass holds every vehicle booking | **{:.1} s** |\n\
         | peak RSS of the process (simulators included) | **{hwm_mb} MB** |\n",
        accesshub_bench::machine(),
        run_time.as_secs_f64(),
        pulled.fetched,
        pulled.new,
        pulled.changed,
        pulled.vanished,
        through.as_secs_f64(),
    );
    println!("{body}");
    accesshub_bench::write_section("Upstream pull sync", &body)?;
    accesshub_bench::record_figures(
        "pull-bench",
        &[
            ("reservations", n as f64),
            ("run_secs", run_time.as_secs_f64()),
            ("through_secs", through.as_secs_f64()),
            ("peak_rss_mb", hwm_mb as f64),
        ],
    )?;
    worker.shutdown().await?;
    ingest.shutdown().await;
    bexsim.shutdown().await;
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
    Ok(())
}
