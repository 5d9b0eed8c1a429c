//! `ingest-bench`: durable webhook accepts per second and latency at a fixed rate, next to
//! raw PostgreSQL single-row commits measured in the same run. Starts booking-ingest
//! in-process on a fresh database and NATS namespace; writes the "## Ingest" section of
//! BENCHMARKS.md. Run in release: `cargo run --release -p booking-ingest --bin ingest-bench`.
//! `BENCH_SECS` (default 10), `BENCH_CONCURRENCY` (default 512) and `BENCH_COMMITTERS`
//! (default 8, the service's default) tune it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use accesshub_bench::{ms, percentile, write_section};
use accesshub_store::SecretBox;
use anyhow::Context as _;
use booking_ingest::{IngestConfig, SourceRegistration};

/// mimalloc: glibc's malloc (fastbin consolidation under many small, short-lived request
/// buffers) cost ~20 % of the service's CPU in the ingest profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench-secret";
const TENANT: &str = "bench";

fn body(n: u64) -> Vec<u8> {
    format!(
        r#"{{"booking_id":"b-{n}","facility_id":"gym-1","building_id":"b1","resident":{{"id":"r{n}","email":"r{n}@example.com","first_name":"Bench","last_name":"Mark"}},"start":"2030-07-01T08:00:00Z","end":"2030-07-01T09:00:00Z","status":"booked","updated_at":"2025-06-20T09:15:00Z"}}"#
    )
    .into_bytes()
}

async fn post(client: &reqwest::Client, url: &str, n: u64) -> Result<u16, reqwest::Error> {
    let b = body(n);
    let ts = chrono::Utc::now().timestamp();
    let sig = booking_ingest::sign(SECRET, ts, &b);
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-accesshub-timestamp", ts.to_string())
        .header("x-accesshub-signature", sig)
        .body(b)
        .send()
        .await?;
    Ok(r.status().as_u16())
}

async fn raw_commits(pool: &sqlx::PgPool, secs: u64) -> anyhow::Result<f64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_commit (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = pool.clone();
        let stop = stop.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut tx) = pool.begin().await else {
                    continue;
                };
                if sqlx::query("INSERT INTO bench_commit (v) VALUES ('x')")
                    .execute(&mut *tx)
                    .await
                    .is_ok()
                    && tx.commit().await.is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn proc_cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the 1st, utime the 12th.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// CPU used so far by this process, by the Postgres backends serving this database, and by
/// nats-server: per-request CPU is what the machine's other load does not distort.
async fn cpu_snapshot(pool: &sqlx::PgPool) -> (f64, HashMap<String, f64>, f64) {
    let own = proc_cpu_secs("self");
    let pids: Vec<(i32,)> =
        sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let pg = pids
        .into_iter()
        .map(|(p,)| (p.to_string(), proc_cpu_secs(&p.to_string())))
        .collect();
    let nats = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "nats-server")
        })
        .map(|e| proc_cpu_secs(&e.file_name().to_string_lossy()))
        .sum();
    (own, pg, nats)
}

/// CPU seconds between two snapshots: (this process, Postgres backends, nats-server).
fn cpu_delta(
    a: &(f64, HashMap<String, f64>, f64),
    b: &(f64, HashMap<String, f64>, f64),
) -> (f64, f64, f64) {
    let pg =
        b.1.iter()
            .map(|(pid, v)| v - a.1.get(pid).copied().unwrap_or(0.0))
            .sum();
    (b.0 - a.0, pg, b.2 - a.2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::var("BENCH_LOG").is_ok() {
        let _ = accesshub_telemetry::init("ingest-bench", accesshub_config::LogFormat::Pretty);
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let conc: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let db = accesshub_testkit::TestDb::new().await;
    let namespace = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut common =
        accesshub_config::CommonConfig::for_test("booking-ingest", &namespace, &db.url);
    common.streams.file_storage = true;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec())?;
    booking_ingest::register_source(
        &db.pool,
        &sbox,
        &SourceRegistration {
            tenant: TENANT.into(),
            tenant_name: None,
            source: "connecx".into(),
            secret: SECRET.into(),
            site_defaults: None,
        },
    )
    .await?;

    eprintln!("raw PostgreSQL single-row commits ({secs}s)…");
    let commit_rate = raw_commits(&db.pool, secs.min(5)).await?;

    let mut cfg = IngestConfig::for_test(common.clone(), sbox);
    cfg.committers = std::env::var("BENCH_COMMITTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let committers = cfg.committers;
    cfg.db_connections = 16;
    let handle = booking_ingest::start(cfg).await.context("start ingest")?;
    let url = format!("http://{}/webhooks/connecx/{TENANT}", handle.addr());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()?;
    let seq = Arc::new(AtomicU64::new(0));

    // Warm-up.
    for _ in 0..200 {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        post(&client, &url, n).await?;
    }

    eprintln!("max throughput with {conc} concurrent clients ({secs}s)…");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, seq, stop, ok, bad) = (
            client.clone(),
            url.clone(),
            seq.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                match post(&client, &url, n).await {
                    Ok(202) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let cpu_before = cpu_snapshot(&db.pool).await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = cpu_snapshot(&db.pool).await;
    let metrics_text = handle.registry().encode();
    let mean = |name: &str| {
        let get = |suffix: &str| {
            metrics_text
                .lines()
                .find(|l| l.starts_with(&format!("{name}_{suffix} ")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        get("sum") / get("count").max(1.0)
    };
    let commit_batch = mean("accesshub_ingest_commit_batch_size");
    let relay_batch = mean("accesshub_outbox_relay_batch_size");
    let accepted = ok.load(Ordering::Relaxed);
    let (cpu_own, cpu_pg, cpu_nats) = cpu_delta(&cpu_before, &cpu_after);
    let per_req = |cpu: f64| cpu * 1e6 / (accepted.max(1) as f64);
    let cpu_total_us = per_req(cpu_own + cpu_pg + cpu_nats);
    let capacity = 2.0 * 1e6 / cpu_total_us.max(1.0);
    let load = accesshub_bench::load_average();
    let rate = accepted as f64 / elapsed;
    let failed = bad.load(Ordering::Relaxed);

    // Relay catch-up after the burst.
    let drain_start = Instant::now();
    loop {
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&db.pool)
                .await?;
        if pending == 0 || drain_start.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drain_start.elapsed();

    eprintln!("latency at a fixed 2,000 req/s ({secs}s)…");
    let total = 2_000 * secs;
    let mut ticker = tokio::time::interval(Duration::from_micros(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut lat_tasks = Vec::with_capacity(total as usize);
    let fixed_start = Instant::now();
    for _ in 0..total {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        let n = seq.fetch_add(1, Ordering::Relaxed);
        lat_tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let s = post(&client, &url, n).await;
            (t.elapsed(), matches!(s, Ok(202)))
        }));
    }
    let mut lat = Vec::with_capacity(total as usize);
    let mut lat_fail = 0u64;
    for t in lat_tasks {
        if let Ok((d, good)) = t.await {
            if good {
                lat.push(d);
            } else {
                lat_fail += 1;
            }
        }
    }
    let achieved = total as f64 / fixed_start.elapsed().as_secs_f64();
    lat.sort();
    let (p50, p99, max) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or_default(),
    );

    handle.shutdown().await;
    let events = {
        let bus = accesshub_bus::connect(&common).await?;
        let stream = bus.js.get_stream(bus.stream_name("BOOKINGS")).await?;
        let n = stream.get_info().await?.state.messages;
        bus.delete_streams().await;
        n
    };
    db.drop_db().await;

    let body = format!(
        "`cargo run --release -p booking-ingest --bin ingest-bench` — booking-ingest in-process \
         ({committers} committers, batches ≤ 500, 16 DB connections), connecX webhooks signed per request, \
         HTTP/1.1 over loopback; clients, service, PostgreSQL and NATS share the machine.\n\n\
         | measure | result |\n|---|---|\n\
         | PostgreSQL single-row INSERT + COMMIT (8 connections, same run) | {commit_rate:.0} commits/s |\n\
         | durable webhook accepts, {conc} concurrent clients, {secs} s | **{rate:.0} accepted/s** ({accepted} accepted, {failed} not 202) |\n\
         | CPU per accepted webhook during the burst: bench process (clients + service) / Postgres backends / nats-server | {own:.0} µs / {pg:.0} µs / {nats:.0} µs |\n\
         | mean deliveries per commit / rows per relay pass (whole run) | {commit_batch:.1} / {relay_batch:.1} |\n\
         | → ceiling on 2 otherwise idle cores (2 CPU-s ÷ CPU per webhook) | {capacity:.0} accepted/s |\n\
         | load average (1/5/15 min) at the end of the burst | {load} |\n\
         | outbox drained to JetStream after the burst | {drain} |\n\
         | fixed rate 2,000 req/s ({achieved:.0}/s achieved), {secs} s: p50 / p99 / max | {p50} / {p99} / {max} ({lat_fail} not 202) |\n\
         | events in BOOKINGS at the end (file storage) | {events} |\n",
        drain = ms(drain),
        own = per_req(cpu_own),
        pg = per_req(cpu_pg),
        nats = per_req(cpu_nats),
        p50 = ms(p50),
        p99 = ms(p99),
        max = ms(max),
    );
    write_section("Ingest", &body)?;
    accesshub_bench::record_figures(
        "ingest",
        &[
            ("accepted_per_s", rate),
            ("pg_commits_per_s", commit_rate),
            ("fixed_rate_offered_per_s", 2_000.0),
            ("fixed_rate_achieved_per_s", achieved),
            ("p50_ms", accesshub_bench::millis(p50)),
            ("p99_ms", accesshub_bench::millis(p99)),
        ],
    )?;
    Ok(())
}
