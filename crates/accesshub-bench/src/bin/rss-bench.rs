//! `rss-bench`: resident memory of every service as the image runs it (the one `accesshub`
//! binary, called by each service's name through a link), idle and under load, and the
//! container image's size (`deploy/image-size.sh`). The services run as processes against
//! the machine's Postgres and nats-server (file-backed streams) and the vendor simulators in
//! this process. Idle: VmRSS a few seconds after every service is ready. Under load: VmHWM
//! (the peak) after a burst of webhooks of all four upstreams went through booking-ingest and
//! the workers to the simulators, a full sync of each connection by the reconciler and a
//! burst of admin API reads. Writes the "## Memory and image size" section of BENCHMARKS.md
//! and target/bench/rss.json.
//!
//! `rss-bench [BOOKINGS]` (default 20,000). `RSS_BENCH_IMAGE_SIZE=0` skips the image size.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_bench::{
    http_load::{post_request, send_all, signed_webhook},
    mix::Flow,
    summary::SERVICES,
};
use accesshub_connections::{ConnectionStore, EgressPolicy};
use accesshub_e2e::{Proc, free_port};
use accesshub_store::SecretBox;
use anyhow::{Context as _, bail};
use reconciler::{Scope, Trigger, store};

const TENANT: &str = "rss";
const SECRET: &str = "rss-bench-secret";
const ADMIN_TOKEN: &str = "rss-bench-admin-token";
/// Goal (issue 25): idle resident memory per service.
const GOAL_IDLE_MB: f64 = 30.0;

/// A `/proc/<pid>/status` field in MB (`VmRSS`, `VmHWM`).
fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A directory of links named after the services to the image's binary, next to this one
/// (`target/<profile>/accesshub`): the services run as the image runs them.
fn links() -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no binary directory")?;
    let bin = dir.join("accesshub");
    if !bin.exists() {
        bail!(
            "{} not built: cargo build -p accesshub-image --bin accesshub (make bench builds it)",
            bin.display()
        );
    }
    let links = std::env::temp_dir().join(format!("rss-bench-{}", std::process::id()));
    std::fs::create_dir_all(&links)?;
    for s in SERVICES {
        let l = links.join(s);
        let _ = std::fs::remove_file(&l);
        std::os::unix::fs::symlink(&bin, &l)?;
    }
    Ok((links, bin))
}

/// A started service with its ops port.
struct Service {
    name: &'static str,
    proc: Proc,
    port: u16,
}

async fn ready(http: &reqwest::Client, svc: &mut Service) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if !svc.proc.running() {
            bail!("{} exited:\n{}", svc.name, svc.proc.log());
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{}/readyz", svc.port))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} not ready in 60 s:\n{}", svc.name, svc.proc.log())
}

/// Runs `deploy/image-size.sh --markdown` on the `accesshub` binary already built (`make
/// bench`'s release build; a debug build of this bench measures the debug binary, an upper
/// bound) and returns its total in MB and its table.
fn image_size() -> anyhow::Result<(f64, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("no binary directory")?;
    let release = profile_dir.file_name().is_some_and(|d| d == "release");
    let target_dir = profile_dir.parent().context("no target directory")?;
    let out = std::process::Command::new(root.join("deploy/image-size.sh"))
        .arg("--markdown")
        .current_dir(&root)
        .env(
            "IMAGE_SIZE_PROFILE",
            if release { "release" } else { "dev" },
        )
        .env("IMAGE_SIZE_SKIP_BUILD", "1")
        .env("CARGO_TARGET_DIR", target_dir)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("image total:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "image-size.sh: no total\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let table = text
        .find("\n| what")
        .map(|i| text[i + 1..].trim().to_owned())
        .unwrap_or_default();
    Ok((total, table))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::install_crypto_provider();
    let bookings: u64 = std::env::args()
        .nth(1)
        .map(|v| v.parse().context("BOOKINGS must be a number"))
        .transpose()?
        .unwrap_or(20_000);
    let (links, bin) = links()?;
    let db = accesshub_testkit::TestDb::new().await;
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let (common, bus) = accesshub_bench::production_bus(&db.url, &nats, 1).await?;
    let enc_key = SecretBox::generate_spec();
    let sbox = SecretBox::from_spec(&enc_key)?;
    accesshub_bench::mix::bench_tenant(&db.pool, sbox.clone(), TENANT, SECRET).await?;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
    accesshub_bench::mix::seed(sim.state())?;
    let conns: Vec<_> = Flow::ALL
        .iter()
        .map(|f| f.connection(TENANT, &sim))
        .collect();
    let store =
        ConnectionStore::new(db.pool.clone(), sbox).with_egress(EgressPolicy::loopback_http());
    for c in &conns {
        store.upsert(c).await?;
    }
    // The workers read their connections from this file (as the e2e stack runs them).
    let conns_file = links.join("connections.json");
    std::fs::write(&conns_file, serde_json::to_vec(&conns)?)?;

    let env = |port: u16| -> Vec<(String, String)> {
        [
            ("DATABASE_URL", db.url.clone()),
            ("NATS_URL", nats.clone()),
            ("ACCESSHUB_NAMESPACE", common.namespace.clone()),
            ("ACCESSHUB_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("ACCESSHUB_ENCRYPTION_KEY", enc_key.clone()),
            ("ACCESSHUB_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("ACCESSHUB_EGRESS_ALLOW", "http://127.0.0.1:*".to_owned()),
            (
                "ACCESSHUB_CONNECTIONS_FILE",
                conns_file.display().to_string(),
            ),
            // The load, not a configured vendor limit (production default 50 calls/s).
            ("ACCESSHUB_WORKER_RATE_LIMIT", "0".to_owned()),
            // One tenant at full speed (production default 500 webhooks/s per tenant).
            ("ACCESSHUB_INGEST_TENANT_RATE", "100000".to_owned()),
            ("ACCESSHUB_INGEST_TENANT_BURST", "100000".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let http = reqwest::Client::new();
    let mut services = Vec::new();
    for name in SERVICES {
        let port = free_port();
        let proc = Proc::spawn(name, &links.join(name), &[], &env(port))?;
        let mut svc = Service { name, proc, port };
        ready(&http, &mut svc).await?;
        services.push(svc);
    }
    // Idle: every service ready, nothing to do.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle: Vec<f64> = services
        .iter()
        .map(|s| s.proc.pid().map_or(f64::NAN, |p| status_mb(p, "VmRSS")))
        .collect();
    eprintln!("idle RSS: {idle:?}");

    // Under load 1: webhooks of all four upstreams through ingest and the workers.
    let ingest = services
        .iter()
        .find(|s| s.name == "booking-ingest")
        .context("no ingest")?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ingest.port));
    let host = addr.to_string();
    let reqs: Vec<Vec<u8>> = (0..bookings)
        .map(|i| {
            let flow = Flow::of(i);
            serde_json::to_vec(&flow.webhook(TENANT, i))
                .map(|b| signed_webhook(&host, flow.source().as_str(), TENANT, SECRET, &b))
        })
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    let statuses = send_all(addr, 64, Arc::new(reqs)).await;
    let accepted = statuses.iter().filter(|s| **s == Some(202)).count();
    // Applied: each worker records a binding once the vendor holds the booking.
    let deadline = Instant::now() + Duration::from_secs(600);
    let applied = loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT booking_key) FROM bindings WHERE applied_revision >= 1",
        )
        .fetch_one(&db.pool)
        .await?;
        if n as usize >= accepted || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let load_secs = t0.elapsed().as_secs_f64();
    eprintln!("{accepted} accepted, {applied} at the vendors in {load_secs:.1} s");

    // Under load 2: a full sync of every connection.
    let t1 = Instant::now();
    for c in &conns {
        store::request_run(
            &db.pool,
            &reconciler::connections::conn_ref(c),
            Scope::Full,
            Trigger::Manual,
            Some("rss-bench"),
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_runs WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&db.pool)
        .await?;
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sync_secs = t1.elapsed().as_secs_f64();

    // Under load 3: admin API reads (sync runs and connections of the tenant).
    let admin = services
        .iter()
        .find(|s| s.name == "accesshub-admin")
        .context("no admin")?;
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin.port));
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let get = |path: &str| {
        // `POST ` → `GET `: the same request head without a body.
        let mut r = post_request(
            &admin_addr.to_string(),
            path,
            &[("authorization", auth.as_str())],
            b"",
        );
        r.splice(0..5, *b"GET ");
        r
    };
    let admin_reqs: Vec<Vec<u8>> = (0..2_000)
        .map(|i| {
            if i % 2 == 0 {
                get(&format!("/admin/v1/syncs?tenant={TENANT}"))
            } else {
                get(&format!("/admin/v1/connections?tenant={TENANT}"))
            }
        })
        .collect();
    let admin_ok = send_all(admin_addr, 16, Arc::new(admin_reqs))
        .await
        .iter()
        .filter(|s| **s == Some(200))
        .count();
    let peak: Vec<f64> = services
        .iter()
        .map(|s| s.proc.pid().map_or(f64::NAN, |p| status_mb(p, "VmHWM")))
        .collect();
    let load = accesshub_bench::load_average();
    for s in &mut services {
        s.proc.terminate(Duration::from_secs(5));
    }
    sim.shutdown().await;
    bus.delete_streams().await;
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(&links);

    let image = if std::env::var("RSS_BENCH_IMAGE_SIZE").as_deref() == Ok("0") {
        None
    } else {
        match image_size() {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("image size: {e:#}");
                None
            }
        }
    };

    let mut table = String::from(
        "| service | idle RSS | goal | status | peak RSS under load (VmHWM) |\n|---|---:|---|---|---:|\n",
    );
    for (i, s) in SERVICES.iter().enumerate() {
        let met = idle[i] < GOAL_IDLE_MB;
        table.push_str(&format!(
            "| {s} | {:.1} MB | < {GOAL_IDLE_MB:.0} MB | {} | {:.1} MB |\n",
            idle[i],
            if met {
                "met".to_owned()
            } else {
                format!("missed by {:.1} MB", idle[i] - GOAL_IDLE_MB)
            },
            peak[i]
        ));
    }
    let image_md = match &image {
        Some((total, t)) => format!(
            "Container image (`deploy/image-size.sh --markdown`, the {} build): **{total:.1} MB** \
(target < 100 MB).\n\n{t}\n",
            if bin
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d == "release")
            {
                "release"
            } else {
                "debug (an upper bound)"
            }
        ),
        None => "Container image: not measured in this run.\n".to_owned(),
    };
    let body = format!(
        "`rss-bench {bookings}`: the services as the image runs them (links to `{}`), each \
its own process, against the machine's Postgres and nats-server (file-backed streams) and \
the vendor simulators in the bench process. Idle: VmRSS 5 s after every service answered \
`/readyz`. Under load, each process's peak (VmHWM) after: {bookings} webhooks of BEX, Clock, \
connecX and Nexudus (round robin, 64 clients; {accepted} accepted, {applied} recorded as applied \
by the workers after {load_secs:.1} s; no vendor rate limit); a full sync of the four connections \
({sync_secs:.1} s); 2,000 admin API reads, 16 clients ({admin_ok} answered 200). Load \
average at the end: {load}.\n\n{table}\n{image_md}",
        bin.display(),
    );
    accesshub_bench::write_section("Memory and image size", &body)?;
    let mut figures: Vec<(String, f64)> = Vec::new();
    for (i, s) in SERVICES.iter().enumerate() {
        figures.push((format!("{s}_idle_mb"), idle[i]));
        figures.push((format!("{s}_peak_mb"), peak[i]));
    }
    if let Some((total, _)) = image {
        figures.push(("image_mb".into(), total));
    }
    let refs: Vec<(&str, f64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    accesshub_bench::record_figures("rss", &refs)?;
    Ok(())
}
