//! `ingest-bench`: durable webhook accepts per second and latency at a fixed rate, next to
//! raw PostgreSQL single-row commits measured in the same run. Starts booking-ingest
//! in-process on a fresh database and NATS namespace; writes the "## Ingest" section of
//! BENCHMARKS.md. Run in release: `cargo run --release -p booking-ingest --bin ingest-bench`.
//! `BENCH_SECS` (default 10), `BENCH_CONCURRENCY` (default 128: enough to keep the
//! committers batching; more clients cost CPU per request on this 2-core machine without
//! raising the rate) and `BENCH_COMMITTERS` (default: the service's default) tune it.
//! The burst's requests (each a different booking, signed) are built before it starts, as
//! `wrk` sends pre-built requests: the CPU measured is the service's, not the client's HMAC.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use accesshub_bench::{http_load::RawHttpConn, ms, percentile, write_section};
use accesshub_connections::{Secret, TenantStore};
use accesshub_store::SecretBox;
use anyhow::Context as _;
use booking_ingest::IngestConfig;

/// mimalloc: glibc's malloc (fastbin consolidation under many small, short-lived request
/// buffers) cost ~20 % of the service's CPU in the ingest profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench-secret";
const TENANT: &str = "bench";
/// Offered rate of the latency run (issue 2: p99 < 20 ms at 2,000/s).
const FIXED_RATE: u64 = 2_000;
/// Connections of the latency run.
const LATENCY_CONNS: u64 = 64;

fn body(n: u64) -> Vec<u8> {
    format!(
        r#"{{"booking_id":"b-{n}","facility_id":"gym-1","building_id":"b1","resident":{{"id":"r{n}","email":"r{n}@example.com","first_name":"Bench","last_name":"Mark"}},"start":"2030-07-01T08:00:00Z","end":"2030-07-01T09:00:00Z","status":"booked","updated_at":"2025-06-20T09:15:00Z"}}"#
    )
    .into_bytes()
}

/// One signed connecX webhook as request bytes.
fn request(host: &str, n: u64) -> Vec<u8> {
    accesshub_bench::http_load::signed_webhook(host, "connecx", TENANT, SECRET, &body(n))
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

/// Mean of a Prometheus histogram in `text` (`_sum` / `_count`), since `earlier` if given.
fn hist_mean(text: &str, earlier: Option<&str>, name: &str) -> f64 {
    let get = |t: &str, suffix: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("{name}_{suffix} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (s0, c0) = earlier.map_or((0.0, 0.0), |e| (get(e, "sum"), get(e, "count")));
    (get(text, "sum") - s0) / (get(text, "count") - c0).max(1.0)
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
        .unwrap_or(128);
    let db = accesshub_testkit::TestDb::new().await;
    let namespace = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut common =
        accesshub_config::CommonConfig::for_test("booking-ingest", &namespace, &db.url);
    common.streams.file_storage = true;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec())?;
    let tenants = TenantStore::new(db.pool.clone(), sbox.clone());
    tenants.upsert(TENANT, TENANT).await?;
    tenants
        .set_source_secret(
            TENANT,
            "connecx",
            Some(Secret::new(SECRET)),
            std::time::Duration::ZERO,
        )
        .await?;

    eprintln!("raw PostgreSQL single-row commits ({secs}s)…");
    let commit_rate = raw_commits(&db.pool, secs.min(5)).await?;

    let mut cfg = IngestConfig::for_test(common.clone(), sbox);
    if let Some(n) = std::env::var("BENCH_COMMITTERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.committers = n;
    }
    let committers = cfg.committers;
    let handle = booking_ingest::start(cfg).await.context("start ingest")?;
    let addr = handle.addr();
    let host = addr.to_string();
    let seq = Arc::new(AtomicU64::new(0));

    // Warm-up.
    {
        let mut c = RawHttpConn::connect(addr).await?;
        for _ in 0..200 {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            c.send(&request(&host, n)).await?;
        }
    }

    // More than this machine can accept in `secs`; past the end requests are built on the fly.
    let prebuilt: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..secs * 20_000)
            .map(|_| request(&host, seq.fetch_add(1, Ordering::Relaxed)))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));

    eprintln!("max throughput with {conc} concurrent clients ({secs}s)…");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (host, seq, stop, ok, bad, prebuilt, next) = (
            host.clone(),
            seq.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
            prebuilt.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match RawHttpConn::connect(addr).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            bad.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let built;
                let req = match prebuilt.get(i) {
                    Some(r) => r.as_slice(),
                    None => {
                        built = request(&host, seq.fetch_add(1, Ordering::Relaxed));
                        built.as_slice()
                    }
                };
                match c.send(req).await {
                    Ok(202) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => bad.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        conn = None;
                        bad.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let cpu_before = accesshub_bench::cpu::CpuSnapshot::take();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = accesshub_bench::cpu::CpuSnapshot::take().since(&cpu_before);
    let burst_metrics = handle.registry().encode();
    let commit_batch = hist_mean(&burst_metrics, None, "accesshub_ingest_commit_batch_size");
    let relay_batch = hist_mean(&burst_metrics, None, "accesshub_outbox_relay_batch_size");
    let commit_ms = 1e3 * hist_mean(&burst_metrics, None, "accesshub_ingest_commit_seconds");
    let accepted = ok.load(Ordering::Relaxed);
    let per_req = cpu.per_item_us(accepted);
    let capacity = cpu.ceiling_per_s(accepted, accesshub_bench::cpu::cores());
    let load = accesshub_bench::load_average();
    let rate = accepted as f64 / elapsed;
    let failed = bad.load(Ordering::Relaxed);

    // Relay catch-up after the burst.
    let drain_start = Instant::now();
    loop {
        let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox ")
            .fetch_one(&db.pool)
            .await?;
        if pending == 0 || drain_start.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drain_start.elapsed();
    let drained_metrics = handle.registry().encode();

    eprintln!("latency at a fixed {FIXED_RATE} req/s ({secs}s)…");
    // Open loop (see `open_loop`): latency counts from each request's due time.
    let total = FIXED_RATE * secs;
    let (sent, fixed_start) = {
        let (host, seq) = (host.clone(), seq.clone());
        accesshub_bench::http_load::open_loop(addr, FIXED_RATE, total, LATENCY_CONNS, move |_| {
            request(&host, seq.fetch_add(1, Ordering::Relaxed))
        })
        .await
    };
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter(|s| s.status == Some(202))
        .map(|s| s.latency)
        .collect();
    let lat_fail = total - lat.len() as u64;
    let achieved = total as f64 / fixed_start.elapsed().as_secs_f64();
    let fixed_metrics = handle.registry().encode();
    let fixed_batch = hist_mean(
        &fixed_metrics,
        Some(&drained_metrics),
        "accesshub_ingest_commit_batch_size",
    );
    let fixed_commit_ms = 1e3
        * hist_mean(
            &fixed_metrics,
            Some(&drained_metrics),
            "accesshub_ingest_commit_seconds",
        );
    lat.sort();
    let (p50, p99, max) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or_default(),
    );

    // Freed only now: returning ~140 MB to the OS between the burst and the latency run put
    // the allocator's purging into the latency run's tail.
    drop(prebuilt);
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
         ({committers} committers with a connection each, batches ≤ 500), connecX webhooks, each a different booking and signed with the tenant's secret, \
         HTTP/1.1 keep-alive over loopback from a lean client (`accesshub_bench::http_load`; the burst's requests are built before it, as `wrk` sends pre-built requests); clients, service, PostgreSQL and NATS share the machine.\n\n\
         | measure | result |\n|---|---|\n\
         | PostgreSQL single-row INSERT + COMMIT (8 connections, same run) | {commit_rate:.0} commits/s |\n\
         | durable webhook accepts, {conc} concurrent clients, {secs} s | **{rate:.0} accepted/s** ({accepted} accepted, {failed} not 202) |\n\
         | CPU per accepted webhook during the burst: bench process (clients + service) / Postgres (all processes) / nats-server | {own:.0} µs / {pg:.0} µs / {nats:.0} µs |\n\
         | during the burst: mean deliveries per commit / mean time per commit / rows per relay pass | {commit_batch:.1} / {commit_ms:.1} ms / {relay_batch:.1} |\n\
         | → ceiling on this machine's otherwise idle cores (cores ÷ CPU per webhook) | {capacity:.0} accepted/s |\n\
         | load average (1/5/15 min) at the end of the burst | {load} |\n\
         | outbox drained to JetStream after the burst | {drain} |\n\
         | fixed rate {FIXED_RATE} req/s, open loop over {LATENCY_CONNS} connections, latency from each request's due time ({achieved:.0}/s achieved), {secs} s: p50 / p99 / max | {p50} / {p99} / {max} ({lat_fail} not 202) |\n\
         | during the fixed rate: mean deliveries per commit / mean time per commit | {fixed_batch:.1} / {fixed_commit_ms:.1} ms |\n\
         | events in BOOKINGS at the end (file storage) | {events} |\n",
        drain = ms(drain),
        own = per_req.own,
        pg = per_req.postgres,
        nats = per_req.nats,
        p50 = ms(p50),
        p99 = ms(p99),
        max = ms(max),
    );
    write_section("Ingest", &body)?;
    accesshub_bench::record_figures(
        "ingest",
        &[
            ("accepted_per_s", rate),
            ("cpu_us_per_webhook", per_req.total()),
            ("cpu_us_per_webhook_own", per_req.own),
            ("cpu_us_per_webhook_postgres", per_req.postgres),
            ("cpu_us_per_webhook_nats", per_req.nats),
            ("cpu_ceiling_per_s", capacity),
            ("pg_commits_per_s", commit_rate),
            ("fixed_rate_offered_per_s", FIXED_RATE as f64),
            ("fixed_rate_achieved_per_s", achieved),
            ("p50_ms", accesshub_bench::millis(p50)),
            ("p99_ms", accesshub_bench::millis(p99)),
        ],
    )?;
    Ok(())
}
