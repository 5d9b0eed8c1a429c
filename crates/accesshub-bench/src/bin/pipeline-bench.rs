//! `pipeline-bench`: the whole pipeline on production settings. Signed webhooks of four
//! upstreams (BEX, Clock, connecX, Nexudus, round robin) go over HTTP into booking-ingest,
//! through its durable outbox to file-backed JetStream streams, to the four workers
//! (CloudPass, dormakaba SOAP, iPassan, Tapkey) and on to the vendor simulators. Measures the
//! maximum rate (a burst sent as fast as 128 clients get answers, until every booking is
//! applied at its vendor) and webhook → vendor latency at a fixed offered rate. Everything
//! runs in this process (ingest, workers, simulators); Postgres and nats-server are the
//! machine's. The load generator and the simulators run on a runtime of their own (the
//! harness), so the CPU accesshub itself costs per booking is told apart from theirs. Writes
//! the "## Whole pipeline" section of BENCHMARKS.md and target/bench/pipeline.json.
//!
//! `pipeline-bench [BURST] [RATE] [SECONDS]` (defaults 20,000, 1,000/s, 10 s).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_bench::{
    cpu::{CpuSnapshot, cores, harness_runtime},
    http_load::{open_loop, send_all, signed_webhook},
    millis,
    mix::{Applied, Flow},
    ms, percentile,
    summary::thousands,
};
use accesshub_store::SecretBox;
use anyhow::Context as _;
use worker_runtime::{StaticConnections, WorkerConfig};

/// mimalloc, as the services' image has it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "pipe";
const SECRET: &str = "pipeline-bench-secret";
/// Goals (issue 25).
const GOAL_RATE: f64 = 5_000.0;
const GOAL_P99_MS: f64 = 50.0;
/// Connections of the burst and of the paced run.
const BURST_CONNS: usize = 128;
const PACED_CONNS: u64 = 64;

/// Booking `i` of the mix: its webhook as request bytes, signed now.
fn request(host: &str, i: u64) -> anyhow::Result<Vec<u8>> {
    let flow = Flow::of(i);
    let body = serde_json::to_vec(&flow.webhook(TENANT, i))?;
    Ok(signed_webhook(
        host,
        flow.source().as_str(),
        TENANT,
        SECRET,
        &body,
    ))
}

/// Booking `i`'s key, as booking-ingest's mapping makes it.
fn key(i: u64) -> anyhow::Result<String> {
    Ok(Flow::of(i).event(TENANT, TENANT, i)?.booking_key)
}

fn arg(n: usize, default: u64) -> anyhow::Result<u64> {
    std::env::args()
        .nth(n)
        .map(|v| v.parse().context("arguments are numbers"))
        .transpose()
        .map(|v| v.unwrap_or(default))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::install_crypto_provider();
    let burst = arg(1, 20_000)?;
    let rate = arg(2, 1_000)?;
    let secs = arg(3, 10)?;

    let db = accesshub_testkit::TestDb::new().await;
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let (common, bus) = accesshub_bench::production_bus(&db.url, &nats, 1).await?;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec())?;
    accesshub_bench::mix::bench_tenant(&db.pool, sbox.clone(), TENANT, SECRET).await?;
    // Load generator and simulators: not accesshub, counted apart.
    let harness = harness_runtime()?;
    let sim = harness
        .spawn(vendor_sim::start(vendor_sim::SimConfig::ephemeral()))
        .await??;
    accesshub_bench::mix::seed(sim.state())?;

    let ingest = booking_ingest::start(booking_ingest::IngestConfig::for_test(
        accesshub_bench::service_config(&common, "booking-ingest"),
        sbox,
    ))
    .await
    .context("start booking-ingest")?;
    let addr = ingest.addr();
    let host = addr.to_string();
    let applied = Applied::default();
    let mut workers = Vec::new();
    for flow in Flow::ALL {
        let mut cfg = WorkerConfig::new(
            accesshub_bench::service_config(&common, flow.worker()),
            Arc::new(StaticConnections::new(vec![flow.connection(TENANT, &sim)])),
        );
        cfg.rate_limit = 0.0; // the pipeline, not a configured vendor limit
        workers.push(flow.start_worker(cfg, applied.clone()).await?);
    }

    // Warm-up: tokens, connections, prepared statements.
    let warm = 40u64;
    let warm_reqs: Vec<Vec<u8>> = (0..warm)
        .map(|i| request(&host, i))
        .collect::<Result<_, _>>()?;
    send_all(addr, 8, Arc::new(warm_reqs)).await;
    let got = applied
        .wait_for(warm as usize, Duration::from_secs(60))
        .await;
    anyhow::ensure!(got >= warm as usize, "warm-up: {got} of {warm} applied");

    // 1. Maximum rate: a burst, until every booking is at its vendor.
    eprintln!("burst of {burst} webhooks…");
    let reqs: Vec<Vec<u8>> = (warm..warm + burst)
        .map(|i| request(&host, i))
        .collect::<Result<_, _>>()?;
    let cpu_before = CpuSnapshot::take();
    let t0 = Instant::now();
    let statuses = harness
        .spawn(send_all(addr, BURST_CONNS, Arc::new(reqs)))
        .await?;
    let accepted_in = t0.elapsed();
    let accepted = statuses.iter().filter(|s| **s == Some(202)).count();
    let want = warm as usize + accepted;
    let got = applied.wait_for(want, Duration::from_secs(600)).await;
    let through = t0.elapsed();
    let cpu = CpuSnapshot::take().since(&cpu_before);
    let burst_applied = got - warm as usize;
    let max_rate = burst_applied as f64 / through.as_secs_f64();
    let accept_rate = accepted as f64 / accepted_in.as_secs_f64();
    let per = cpu.per_item_us(burst_applied as u64);
    let ceiling = cpu.ceiling_per_s(burst_applied as u64, cores());
    let own_ceiling = cpu.ceiling_without_harness_per_s(burst_applied as u64, cores());
    let load_burst = accesshub_bench::load_average();
    eprintln!(
        "burst: {accepted} accepted in {accepted_in:?}, {burst_applied} applied in {through:?} = {max_rate:.0}/s; CPU {:.0} µs/booking",
        per.total()
    );

    // 2. Latency at a fixed offered rate: webhook due → applied at its vendor.
    eprintln!("{rate}/s for {secs} s…");
    let first = warm + burst;
    let total = rate * secs;
    let keys: Vec<String> = (first..first + total).map(key).collect::<Result<_, _>>()?;
    let (sent, paced_start) = {
        let host = host.clone();
        harness
            .spawn(open_loop(addr, rate, total, PACED_CONNS, move |i| {
                request(&host, first + i).unwrap_or_default()
            }))
            .await?
    };
    let achieved = total as f64 / paced_start.elapsed().as_secs_f64();
    let paced_ok = sent.iter().filter(|s| s.status == Some(202)).count();
    applied
        .wait_for(want + paced_ok, Duration::from_secs(120))
        .await;
    let mut all = Vec::new();
    let mut by_flow: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    for s in &sent {
        let Some(key) = keys.get(s.index as usize) else {
            continue;
        };
        if let Some(at) = applied.at(key) {
            let d = at.saturating_duration_since(s.due);
            all.push(d);
            by_flow[(s.index + first) as usize % 4].push(d);
        }
    }
    all.sort();
    for v in &mut by_flow {
        v.sort();
    }
    let (p50, p99, max) = (
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or_default(),
    );
    let load_paced = accesshub_bench::load_average();

    for w in workers {
        w.shutdown().await?;
    }
    ingest.shutdown().await;
    let held: Vec<(Flow, usize)> = Flow::ALL
        .iter()
        .map(|f| (*f, sim.state().live_objects(f.sim_vendor()).len()))
        .collect();
    harness.spawn(sim.shutdown()).await?;
    bus.delete_streams().await;
    db.drop_db().await;
    harness.shutdown_background();

    let status = |met: bool| if met { "met" } else { "missed" };
    let rate_note = if max_rate >= GOAL_RATE {
        String::new()
    } else {
        format!(
            " Missed by {}/s ({:.0} %): the whole pipeline costs {:.0} µs of CPU per booking \
(ingest and four workers {:.0} µs, load generator and simulators {:.0} µs, Postgres {:.0} µs, \
nats-server {:.0} µs), so {} cores carry at most {}/s: bound by CPU per booking. accesshub's \
own part, {:.0} µs, would let {} cores carry {}/s with the load generator and the simulators \
elsewhere, as in production.",
            thousands(GOAL_RATE - max_rate),
            100.0 * (GOAL_RATE - max_rate) / GOAL_RATE,
            per.total(),
            per.own - per.harness,
            per.harness,
            per.postgres,
            per.nats,
            cores(),
            thousands(ceiling),
            per.without_harness(),
            cores(),
            thousands(own_ceiling)
        )
    };
    let p99_note = if millis(p99) < GOAL_P99_MS {
        String::new()
    } else {
        format!(" p99 missed by {:.1} ms.", millis(p99) - GOAL_P99_MS)
    };
    let mut flows = String::new();
    for (i, flow) in Flow::ALL.iter().enumerate() {
        let v = &by_flow[i];
        flows.push_str(&format!(
            "| webhook → applied, {} ({} ← {}): p50 / p99 | {} / {} ({} bookings) |\n",
            flow.name(),
            flow.worker(),
            flow.source().as_str(),
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            v.len()
        ));
    }
    let held: Vec<String> = held
        .iter()
        .map(|(f, n)| format!("{} {n}", f.name()))
        .collect();
    let body = format!(
        "`pipeline-bench {burst} {rate} {secs}`: signed webhooks of BEX, Clock, connecX and \
Nexudus (round robin, each a new booking) over HTTP/1.1 keep-alive into booking-ingest \
(in-process, its real HTTP path: signature, mapping, one Postgres transaction with the outbox \
row, relay to JetStream), BOOKINGS on file storage (R1), the four workers with production \
settings (512 slots each, no vendor rate limit) and the vendor simulators answering at once; \
all in this process (the load generator and simulators on a runtime of their own, whose CPU is \
counted apart), with the machine's Postgres and nats-server. \"Applied\" is when the \
worker's vendor call returned.\n\n\
| measure | value |\n|---|---|\n\
| burst of {burst} webhooks, {BURST_CONNS} clients: accepted (202) | {accepted} at {}/s |\n\
| **maximum rate: burst accepted → every booking applied at its vendor** | **{}/s** ({burst_applied} in {:.2} s; goal ≥ {}/s: {}) |\n\
| CPU per booking during the burst: ingest + workers / load generator + simulators / Postgres / nats-server / total | {:.0} / {:.0} / {:.0} / {:.0} / {:.0} µs |\n\
| → CPU-bound ceiling ({} cores ÷ CPU per booking) | {}/s |\n\
| → the same without the load generator and simulators (accesshub's own {:.0} µs per booking) | {}/s |\n\
| fixed rate {rate}/s offered ({:.0}/s achieved, {secs} s, {PACED_CONNS} connections): applied | {} of {total} |\n\
| **webhook due → applied at vendor: p50 / p99 / max** | {} / **{}** / {} (goal p99 < {GOAL_P99_MS} ms: {}) |\n\
{flows}\
| live objects at the simulators at the end | {} |\n\
| load average (1/5/15 min) after the burst / after the paced run | {load_burst} / {load_paced} |\n\
\n{}{}\n",
        thousands(accept_rate),
        thousands(max_rate),
        through.as_secs_f64(),
        thousands(GOAL_RATE),
        status(max_rate >= GOAL_RATE),
        per.own - per.harness,
        per.harness,
        per.postgres,
        per.nats,
        per.total(),
        cores(),
        thousands(ceiling),
        per.without_harness(),
        thousands(own_ceiling),
        achieved,
        all.len(),
        ms(p50),
        ms(p99),
        ms(max),
        status(millis(p99) < GOAL_P99_MS),
        held.join(", "),
        rate_note.trim_start(),
        p99_note,
    );
    accesshub_bench::write_section("Whole pipeline", &body)?;
    accesshub_bench::record_figures(
        "pipeline",
        &[
            ("max_rate_per_s", max_rate),
            ("accepted_per_s", accept_rate),
            ("cpu_us_per_booking", per.total()),
            ("cpu_us_per_booking_own", per.own),
            ("cpu_us_per_booking_harness", per.harness),
            ("cpu_ceiling_without_harness_per_s", own_ceiling),
            ("cpu_us_per_booking_postgres", per.postgres),
            ("cpu_us_per_booking_nats", per.nats),
            ("cpu_ceiling_per_s", ceiling),
            ("offered_per_s", rate as f64),
            ("achieved_per_s", achieved),
            ("p50_ms", millis(p50)),
            ("p99_ms", millis(p99)),
            ("max_ms", millis(max)),
        ],
    )?;
    Ok(())
}
