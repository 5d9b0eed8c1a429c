//! `workers-bench`: each vendor worker (CloudPass, dormakaba SOAP, iPassan, Tapkey) draining a
//! backlog on file-backed streams, with the simulator answering at once and with 100 ms
//! vendor latency, on the local nats-server (R1) and on a private 3-node cluster (R3). The
//! 100 ms runs show what bounds throughput: slots ÷ (latency × vendor calls per event), not
//! the latency itself; on R1 they run at the default 512 slots and again at 1,024. Writes the "## Workers on production settings" section of
//! BENCHMARKS.md and target/bench/workers.json.
//!
//! `workers-bench [BACKLOG]` (default 10,000 events per run; 20 runs).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_bench::{
    cpu::{CpuSnapshot, CpuUse, cores},
    mix::{Applied, Flow},
    summary::thousands,
};
use anyhow::Context as _;
use vendor_sim::{FaultKind, FaultRule};
use worker_runtime::{StaticConnections, WorkerConfig};

/// mimalloc, as the services' image has it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated vendor latency of the slow runs (issue 25: vendors answer in 50–500 ms).
const SLOW_MS: u64 = 100;
/// Goals (issue 25) at 0 ms and at 100 ms.
const GOAL_FAST: f64 = 5_000.0;
const GOAL_SLOW: f64 = 3_000.0;
/// Slots (`ACCESSHUB_WORKER_CONCURRENCY`) of the extra R1 runs at 100 ms.
const MORE_SLOTS: usize = 1_024;
/// A run that has not drained by then reports what it applied (keeps `make bench` bounded).
const RUN_TIMEOUT_SECS: u64 = 120;

/// Where the streams live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// The local nats-server, streams R1.
    R1,
    /// A private 3-node cluster, streams R3.
    R3,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::R1 => "r1",
            Topology::R3 => "r3",
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone)]
struct Run {
    flow: Flow,
    topology: Topology,
    latency_ms: u64,
    applied: usize,
    backlog: u64,
    per_s: f64,
    calls_per_event: f64,
    slots: usize,
    /// Whether `slots` is the production default.
    default_slots: bool,
    cpu: CpuUse,
    ceiling: f64,
}

impl Run {
    /// Events/s the slots allow when every vendor call takes the simulated latency.
    fn slots_bound(&self) -> Option<f64> {
        (self.latency_ms > 0).then(|| {
            self.slots as f64 / (self.latency_ms as f64 / 1000.0 * self.calls_per_event.max(1.0))
        })
    }

    fn goal(&self) -> f64 {
        if self.latency_ms == 0 {
            GOAL_FAST
        } else {
            GOAL_SLOW
        }
    }

    fn key(&self) -> String {
        let slots = if self.default_slots {
            String::new()
        } else {
            format!("_{}slots", self.slots)
        };
        format!(
            "{}_{}_{}ms{slots}",
            self.flow.name(),
            self.topology.name(),
            self.latency_ms
        )
    }

    /// Met, or by how much it missed and what bounds it.
    fn verdict(&self) -> String {
        let goal = self.goal();
        if self.per_s >= goal {
            return "met".into();
        }
        let short = goal - self.per_s;
        let bound = match self.slots_bound() {
            Some(l) if l < self.ceiling => format!(
                "bound by slots: {} slots ÷ ({} ms × {:.1} calls/event) = {}/s",
                self.slots,
                self.latency_ms,
                self.calls_per_event,
                thousands(l)
            ),
            _ => format!(
                "bound by CPU: {:.0} µs/event (worker+sim {:.0}, Postgres {:.0}, NATS {:.0}) → {}/s on {} cores",
                self.cpu.total(),
                self.cpu.own,
                self.cpu.postgres,
                self.cpu.nats,
                thousands(self.ceiling),
                cores()
            ),
        };
        format!(
            "missed by {}/s ({:.0} %); {bound}",
            thousands(short),
            100.0 * short / goal
        )
    }
}

/// Drains `backlog` events of `flow` through its worker on a fresh namespace of `nats_url`.
#[allow(clippy::too_many_arguments)]
async fn run(
    flow: Flow,
    topology: Topology,
    latency_ms: u64,
    backlog: u64,
    db_url: &str,
    nats_url: &str,
    sim: &vendor_sim::SimHandle,
    n: usize,
    slots: Option<usize>,
) -> anyhow::Result<Run> {
    let replicas = if topology == Topology::R3 { 3 } else { 1 };
    let (common, bus) = accesshub_bench::production_bus(db_url, nats_url, replicas).await?;
    let tenant = format!("w{n}");
    // Fresh simulator state per run: an empty call log to count this run's calls, and no
    // iPassan slot taken by an earlier run.
    sim.state().reset();
    accesshub_bench::mix::seed(sim.state())?;
    if latency_ms > 0 {
        sim.state().add_fault(FaultRule::probability(
            flow.sim_vendor(),
            FaultKind::Latency(Duration::from_millis(latency_ms)),
            1.0,
        ));
    }
    let events = (0..backlog)
        .map(|i| flow.event(&tenant, &tenant, i))
        .collect::<Result<Vec<_>, _>>()?;
    accesshub_bench::publish_backlog(&bus, events).await?;
    let mut cfg = WorkerConfig::new(
        accesshub_bench::service_config(&common, flow.worker()),
        Arc::new(StaticConnections::new(vec![flow.connection(&tenant, sim)])),
    );
    cfg.rate_limit = 0.0; // the runtime and the vendor's latency, not a configured limit
    cfg.concurrency = slots.unwrap_or(cfg.concurrency);
    let slots_used = cfg.concurrency;
    let applied = Applied::default();
    let cpu_before = CpuSnapshot::take();
    let start = Instant::now();
    let worker = flow.start_worker(cfg, applied.clone()).await?;
    let got = applied
        .wait_for(backlog as usize, Duration::from_secs(RUN_TIMEOUT_SECS))
        .await;
    let drained = start.elapsed();
    let cpu = CpuSnapshot::take().since(&cpu_before);
    worker.shutdown().await?;
    bus.delete_streams().await;
    let calls = sim.state().calls_for(flow.sim_vendor()).len();
    let r = Run {
        flow,
        topology,
        latency_ms,
        applied: got,
        backlog,
        per_s: got as f64 / drained.as_secs_f64(),
        calls_per_event: calls as f64 / got.max(1) as f64,
        slots: slots_used,
        default_slots: slots.is_none(),
        cpu: cpu.per_item_us(got as u64),
        ceiling: cpu.ceiling_per_s(got as u64, cores()),
    };
    eprintln!(
        "{} {} {} ms, {} slots: {got}/{backlog} in {drained:?} = {:.0}/s, {:.2} calls/event, CPU {:.0} µs/event (load {})",
        flow.name(),
        topology.name(),
        latency_ms,
        r.slots,
        r.per_s,
        r.calls_per_event,
        r.cpu.total(),
        accesshub_bench::load_average()
    );
    Ok(r)
}

/// Waits until the cluster's JetStream answers (its meta leader is elected after start).
async fn cluster_ready(cluster: &accesshub_e2e::NatsCluster) -> anyhow::Result<()> {
    let urls = cluster.urls();
    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // `$JS.API.INFO` answers without an error once the JetStream meta leader is elected.
        let answer = client.request("$JS.API.INFO", "".into()).await;
        if let Ok(m) = &answer
            && !String::from_utf8_lossy(&m.payload).contains("\"error\"")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "cluster JetStream not ready: {answer:?}\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::install_crypto_provider();
    let backlog: u64 = std::env::args()
        .nth(1)
        .map(|v| v.parse().context("BACKLOG must be a number"))
        .transpose()?
        .unwrap_or(10_000);
    let db = accesshub_testkit::TestDb::new().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
    let local = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let cluster = accesshub_e2e::NatsCluster::start()?;
    cluster_ready(&cluster).await?;
    let mut runs = Vec::new();
    let mut n = 0;
    for (topology, url) in [
        (Topology::R1, local.clone()),
        (Topology::R3, cluster.urls()),
    ] {
        for flow in Flow::ALL {
            let mut shapes = vec![(0, None), (SLOW_MS, None)];
            if topology == Topology::R1 {
                shapes.push((SLOW_MS, Some(MORE_SLOTS)));
            }
            for (latency, slots) in shapes {
                n += 1;
                runs.push(
                    run(
                        flow, topology, latency, backlog, &db.url, &url, &sim, n, slots,
                    )
                    .await?,
                );
            }
        }
    }
    drop(cluster);
    sim.shutdown().await;
    db.drop_db().await;

    let find = |flow: Flow, t: Topology, l: u64| {
        runs.iter()
            .find(|r| r.flow == flow && r.topology == t && r.latency_ms == l && r.default_slots)
    };
    let mut table = String::from(
        "| worker | streams | vendor latency | slots | events applied/s | goal | vendor calls per event | slots bound | CPU per event: worker+sim / Postgres / NATS | CPU ceiling | status |\n\
         |---|---|---|---:|---:|---|---:|---:|---|---:|---|\n",
    );
    for r in &runs {
        table.push_str(&format!(
            "| {} | {} | {} ms | {} | **{}/s**{} | ≥ {}/s | {:.2} | {} | {:.0} / {:.0} / {:.0} µs | {}/s | {} |\n",
            r.flow.worker(),
            if r.topology == Topology::R1 { "R1 (file)" } else { "R3 (file, 3 nodes)" },
            r.latency_ms,
            thousands(r.slots as f64),
            thousands(r.per_s),
            if (r.applied as u64) < r.backlog {
                format!(" ({} of {} applied in {RUN_TIMEOUT_SECS} s)", r.applied, r.backlog)
            } else {
                String::new()
            },
            thousands(r.goal()),
            r.calls_per_event,
            r.slots_bound().map(|l| format!("{}/s", thousands(l))).unwrap_or("—".into()),
            r.cpu.own,
            r.cpu.postgres,
            r.cpu.nats,
            thousands(r.ceiling),
            r.verdict(),
        ));
    }
    let mut ratios =
        String::from("| worker | vendor latency | R1 | R3 | R3 ÷ R1 |\n|---|---|---:|---:|---:|\n");
    for flow in Flow::ALL {
        for l in [0, SLOW_MS] {
            if let (Some(a), Some(b)) = (find(flow, Topology::R1, l), find(flow, Topology::R3, l)) {
                ratios.push_str(&format!(
                    "| {} | {l} ms | {}/s | {}/s | {:.2}× |\n",
                    flow.worker(),
                    thousands(a.per_s),
                    thousands(b.per_s),
                    b.per_s / a.per_s.max(1e-9)
                ));
            }
        }
    }
    let slots = runs.first().map(|r| r.slots).unwrap_or(0);
    let body = format!(
        "`workers-bench {backlog}`: each worker drains a backlog of {backlog} events (the \
events booking-ingest makes of BEX, Clock, connecX and Nexudus webhooks) from file-backed \
streams, one worker at a time, production settings ({slots} slots, `WorkerConfig::new`) but \
no vendor rate limit, and on R1 at {SLOW_MS} ms once more with {MORE_SLOTS} slots \
(`ACCESSHUB_WORKER_CONCURRENCY`); the simulator in-process, answering at once or after {SLOW_MS} ms on \
every call (its latency fault). R1: the machine's nats-server; R3: a private 3-node \
nats-server cluster on loopback (`accesshub_e2e::NatsCluster`), every stream R3. The rate \
runs from the worker's start (consumer, token) to the last event applied. \"Slots bound\" is \
slots ÷ (latency × vendor calls per event): with {SLOW_MS} ms per call the slots (messages \
processed at once), not the latency, set the ceiling. CPU per event counts this process (worker and simulator), every \
Postgres and every nats-server process. Load average at the end: {}.\n\n{table}\n\
Replication cost (R3 ÷ R1, same run):\n\n{ratios}",
        accesshub_bench::load_average()
    );
    accesshub_bench::write_section("Workers on production settings", &body)?;
    let mut figures: Vec<(String, f64)> = Vec::new();
    for r in &runs {
        figures.push((format!("{}_per_s", r.key()), r.per_s));
        figures.push((format!("{}_cpu_us_per_event", r.key()), r.cpu.total()));
        figures.push((format!("{}_calls_per_event", r.key()), r.calls_per_event));
        if let Some(l) = r.slots_bound() {
            figures.push((format!("{}_slots_bound_per_s", r.key()), l));
        }
    }
    figures.push(("backlog".into(), backlog as f64));
    let refs: Vec<(&str, f64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    accesshub_bench::record_figures("workers", &refs)?;
    Ok(())
}
