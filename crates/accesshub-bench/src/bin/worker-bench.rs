//! Worker benchmark: events applied at the Tapkey simulator per second (a backlog drained by
//! one worker), and end-to-end latency (publish → grant exists at the vendor) at a paced
//! 1,000 events/s. Real NATS and Postgres (isolated namespace and database), simulator
//! in-process. Writes the "## Workers" section of BENCHMARKS.md.
//!
//! `cargo run --release -p tapkey-worker --bin worker-bench [-- BACKLOG RATE SECONDS]`

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use accesshub_bench::cpu::{CpuSnapshot, cores};
use accesshub_bench::publish_event as publish;
use accesshub_connections::{Connection, Secret, TapkeySettings, VendorSettings};
use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source};
use tapkey_adapter::TapkeyHandler;
use worker_runtime::{AfterApply, Handler, StaticConnections, WorkerConfig};

/// Tapkey's handler, recording when each booking's grant became visible (the PUT returned).
fn timed(done: Arc<Mutex<HashMap<String, Instant>>>) -> impl Handler {
    AfterApply::new(TapkeyHandler::new(), move |event: &Event| {
        if let Ok(mut d) = done.lock() {
            d.insert(event.booking_key.clone(), Instant::now());
        }
        std::future::ready(())
    })
}

fn event(key: &str) -> Event {
    Event::new(
        "bench",
        "hq",
        key,
        1,
        Source::Nexudus,
        chrono::Utc::now(),
        EventBody::Pass(Pass {
            status: PassStatus::Active,
            holder: PassHolder {
                id: key.to_owned(),
                email: format!("{key}@example.com"),
                name: None,
            },
            pass_type: "day".into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
        }),
    )
}

/// mimalloc: glibc's malloc costs a worker (many small, short-lived allocations per message
/// and vendor call, across threads) noticeably more CPU per event.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::install_crypto_provider();
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    // 20,000: a drain of a few seconds, so start-up (consumer, token, connections) and the
    // last stragglers weigh little in the rate.
    let backlog = args.first().copied().unwrap_or(20_000);
    let rate = args.get(1).copied().unwrap_or(1_000);
    let secs = args.get(2).copied().unwrap_or(10);

    let (db, tb) = accesshub_testkit::isolated().await;
    eprintln!("database {}", db.name);
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
    sim.state().seed_demo();
    let mut pass_types = BTreeMap::new();
    pass_types.insert(
        "day".to_owned(),
        vec![vendor_sim::tapkey::DEMO_LOCK_FRONT.to_owned()],
    );
    let conn = Connection {
        tenant: "bench".into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Tapkey(TapkeySettings {
            authority_url: sim.tapkey_url(),
            base_url: sim.tapkey_url(),
            client_id: vendor_sim::tapkey::DEMO_CLIENT_ID.into(),
            client_secret: Secret::new(vendor_sim::tapkey::DEMO_CLIENT_SECRET),
            owner_account_id: vendor_sim::tapkey::DEMO_OWNER_ID.into(),
            pass_types,
        }),
        version: 1,
    };
    let mut cfg = WorkerConfig::new(
        tb.config(tapkey_adapter::NAME, &db.url),
        Arc::new(StaticConnections::new(vec![conn])),
    );
    cfg.rate_limit = 0.0; // measure the runtime, not the configured vendor limit
    // Slots: the production default unless BENCH_SLOTS says otherwise (experiments).
    cfg.concurrency = std::env::var("BENCH_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cfg.concurrency);
    let slots = cfg.concurrency;
    let done = Arc::new(Mutex::new(HashMap::new()));

    // 1. Throughput: drain a backlog.
    let t = Instant::now();
    accesshub_bench::publish_backlog(&tb.bus, (0..backlog).map(|i| event(&format!("t{i}"))))
        .await?;
    eprintln!("backlog of {backlog} published in {:?}", t.elapsed());
    // CPU of the drain: worker + simulator (this process), Postgres, nats-server. Rates move
    // with whatever else runs on the shared machine; CPU per event does not.
    let cpu_before = CpuSnapshot::take();
    let handle = worker_runtime::start(cfg, timed(done.clone())).await?;
    let start = Instant::now();
    loop {
        let n = done.lock().map(|d| d.len()).unwrap_or(0) as u64;
        if n >= backlog || start.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = start.elapsed();
    let at_sim = sim.state().tapkey_grants().len() as u64;
    let throughput = at_sim as f64 / drained.as_secs_f64();
    eprintln!("drained {at_sim} in {drained:?}: {throughput:.0}/s");
    // The same backlog fully done: every binding recorded in Postgres (the worker acks each
    // message right after its record is committed).
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bindings WHERE applied_revision = 1")
            .fetch_one(&db.pool)
            .await?;
        if n as u64 >= backlog || start.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recorded = start.elapsed();
    let cpu = CpuSnapshot::take().since(&cpu_before);
    let load_drain = accesshub_bench::load_average();
    let recorded_rate = backlog as f64 / recorded.as_secs_f64();
    eprintln!("recorded {backlog} in {recorded:?}: {recorded_rate:.0}/s");
    let per = cpu.per_item_us(backlog);
    let ceiling = cpu.ceiling_per_s(backlog, cores());
    eprintln!(
        "CPU per event: bench process {:.0} µs, Postgres {:.0} µs, nats-server {:.0} µs, total {:.0} µs → ceiling {ceiling:.0}/s on {} cores (load {load_drain})",
        per.own,
        per.postgres,
        per.nats,
        per.total(),
        cores()
    );

    // 2. Latency at a paced rate.
    let total = rate * secs;
    let published: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = t0 + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        let ev = event(&format!("l{i}"));
        let bus = tb.bus.clone();
        let published = published.clone();
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            if let Ok(mut p) = published.lock() {
                p.insert(ev.booking_key.clone(), at);
            }
            publish(&bus, &ev).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let achieved = total as f64 / t0.elapsed().as_secs_f64();
    let wait = Instant::now();
    loop {
        let n = done
            .lock()
            .map(|d| d.keys().filter(|k| k.starts_with('l')).count())
            .unwrap_or(0) as u64;
        if n >= total || wait.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat: Vec<Duration> = {
        let d = done.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let p = published.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        p.iter()
            .filter_map(|(k, at)| d.get(k).map(|v| v.saturating_duration_since(*at)))
            .collect()
    };
    lat.sort();
    let applied = lat.len();
    let load_paced = accesshub_bench::load_average();
    if std::env::var_os("BENCH_METRICS").is_some() {
        // Diagnostics: where a message's time goes (vendor calls, lock, group commit).
        for line in handle.registry().encode().lines() {
            if line.contains("_sum") || line.contains("_count") {
                eprintln!("{line}");
            }
        }
    }
    handle.shutdown().await?;
    let grants = sim.state().tapkey_grants().len();
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;

    use accesshub_bench::{ms, percentile};
    let body = format!(
        "tapkey-worker (runtime + Tapkey client) against the in-process Tapkey simulator; real \
NATS JetStream (memory streams) and PostgreSQL; one worker process, {slots} slots, no vendor rate \
limit. Per event: session advisory lock, then binding read + durable attempt marker in one \
statement (both batched across messages in flight; a batch under 32 lingers 1 ms), two vendor HTTP calls \
for a new holder (a contact PUT marking the contact as ours, then the grant PUT by contact \
id; the grants list is skipped because the marker proves no earlier attempt), a progress \
record of the contact and the grant's window before the grant PUT and the binding upsert \
after it, both by group commit (one statement per batch), double ack after the commit. CPU \
per event counts every Postgres and nats-server process, so work of others sharing them at \
the time is included.\n\n\
| measure | value |\n| --- | --- |\n\
| events applied at the simulator per second (backlog of {backlog} drained) | {throughput:.0}/s |\n\
| same backlog recorded in Postgres (all bindings committed) per second | {recorded_rate:.0}/s |\n\
| end-to-end at {rate} events/s offered ({achieved:.0}/s achieved, {secs} s): applied | {applied} of {total} |\n\
| publish → grant at vendor, p50 | {} |\n\
| publish → grant at vendor, p99 | {} |\n\
| publish → grant at vendor, max | {} |\n\
| grants at the simulator (no duplicates expected: {}) | {grants} |\n\
| CPU per event while draining: bench process (worker + simulator) | {:.0} µs |\n\
| CPU per event while draining: Postgres (all processes) | {:.0} µs |\n\
| CPU per event while draining: nats-server | {:.0} µs |\n\
| CPU per event while draining: total | {:.0} µs |\n\
| CPU ceiling at that cost ({} cores, nothing else running) | {ceiling:.0}/s |\n\
| load average (1/5/15 min) after the drain / after the paced run | {load_drain} / {load_paced} |\n\n\
Target (issue 5): ≥ 5,000 events/s and p99 < 100 ms. The simulator runs in the bench \
process, so its CPU counts in \"bench process\".\n",
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(lat.last().copied().unwrap_or_default()),
        backlog + total,
        per.own,
        per.postgres,
        per.nats,
        per.total(),
        cores(),
    );
    accesshub_bench::write_section("Workers", &body)?;
    accesshub_bench::record_figures(
        "worker",
        &[
            ("events_per_s", throughput),
            ("cpu_us_per_event", per.total()),
            ("cpu_us_per_event_own", per.own),
            ("cpu_us_per_event_postgres", per.postgres),
            ("cpu_us_per_event_nats", per.nats),
            ("cpu_ceiling_per_s", ceiling),
            ("offered_per_s", rate as f64),
            ("achieved_per_s", achieved),
            ("p50_ms", accesshub_bench::millis(percentile(&lat, 50.0))),
            ("p99_ms", accesshub_bench::millis(percentile(&lat, 99.0))),
        ],
    )?;
    Ok(())
}
