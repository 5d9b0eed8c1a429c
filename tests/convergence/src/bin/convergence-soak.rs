//! `make soak`: the long convergence run — thousands of seeded histories per vendor — printing
//! histories run, faults injected and failures found (each with its seed and shrunk history).
//! `--seed S` replays one history. Exits non-zero when any history did not converge.

use accesshub_convergence::{Env, Model, Report, Shape, check, vendors};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Convergence checker: random upstream histories with faults, per vendor")]
struct Args {
    /// Vendors to check (tapkey, cloudpass, ipassan, dormakaba); all when omitted.
    #[arg(long = "vendor")]
    vendors: Vec<String>,
    /// Histories per vendor.
    #[arg(long, default_value_t = 1000)]
    histories: u64,
    /// First seed (seeds run from here upwards).
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Replay exactly this seed (overrides --histories and --first-seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Bookings per history.
    #[arg(long, default_value_t = 3)]
    bookings: usize,
    /// Steps per history.
    #[arg(long, default_value_t = 14)]
    ops: usize,
    /// Inject only faults that fire before the vendor applies a call (by default, half the
    /// fault ops of every history hit after the vendor applied the call: answer lost).
    #[arg(long)]
    before_commit_only: bool,
    /// Faults after commit (the default; kept so older command lines still work).
    #[arg(long, hide = true, conflicts_with = "before_commit_only")]
    after_commit: bool,
    /// Chance before each step of a NATS or Postgres restart.
    #[arg(long, default_value_t = Shape::default().restart_rate)]
    restart_rate: f64,
    /// Chance before each step of offboarding the connection (or bringing it back).
    #[arg(long, default_value_t = Shape::default().offboard_rate)]
    offboard_rate: f64,
    /// Extra runs spent shrinking each failing history.
    #[arg(long, default_value_t = 40)]
    shrink_runs: usize,
    /// Environments run side by side per vendor, each with its own PostgreSQL, nats-server
    /// and simulators, taking every `jobs`-th seed. Histories mostly wait for the pipeline to
    /// settle, so a few at once use a machine's cores better than one.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

async fn one<M: Model + Clone + Send + Sync + 'static>(
    model: M,
    args: &Args,
) -> anyhow::Result<Report> {
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed + args.histories).collect(),
    };
    let shape = Shape {
        bookings: args.bookings,
        ops: args.ops,
        after_commit_share: if args.before_commit_only { 0.0 } else { 1.0 },
        restart_rate: args.restart_rate,
        offboard_rate: args.offboard_rate,
    };
    let jobs = args.jobs.clamp(1, seeds.len().max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for job in 0..jobs {
        let mine: Vec<u64> = seeds.iter().copied().skip(job).step_by(jobs).collect();
        let (model, shrink_runs) = (model.clone(), args.shrink_runs);
        tasks.spawn(async move {
            let mut env = Env::new().await?;
            let report = check(&mut env, &model, mine, shape, shrink_runs).await;
            env.finish().await;
            anyhow::Ok(report?)
        });
    }
    let mut report = Report {
        vendor: M::NAME,
        ..Report::default()
    };
    while let Some(done) = tasks.join_next().await {
        report.absorb(done??);
    }
    println!("{report}");
    Ok(report)
}

/// SIGINT or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Interrupted, the soak returns instead of dying, so the runtime drops every history:
    // their private postgres and nats-server processes stop and their directories go.
    tokio::select! {
        r = soak(args) => r,
        r = interrupted() => {
            r?;
            anyhow::bail!("interrupted: private servers stopped, nothing reported")
        }
    }
}

async fn soak(args: Args) -> anyhow::Result<()> {
    let wanted = |v: &str| args.vendors.is_empty() || args.vendors.iter().any(|w| w == v);
    let mut reports = Vec::new();
    // One vendor after the other: the machine's cores go to the vendor under test.
    if wanted("tapkey") {
        reports.push(one(vendors::Tapkey, &args).await?);
    }
    if wanted("cloudpass") {
        reports.push(one(vendors::Cloudpass, &args).await?);
    }
    if wanted("ipassan") {
        reports.push(one(vendors::Ipassan, &args).await?);
    }
    if wanted("dormakaba") {
        reports.push(one(vendors::Dormakaba, &args).await?);
    }
    println!("\nsummary:");
    for r in &reports {
        println!(
            "  {:<10} {:>6} histories {:>7} events {:>5} crashes {:>6} faults ({:>5} after commit) {:>4} restarts {:>4} offboards {:>4} failures {:>8.1} s",
            r.vendor,
            r.histories,
            r.events,
            r.crashes,
            r.faults_injected,
            r.faults_after_commit,
            r.restarts,
            r.offboards,
            r.failures.len(),
            r.elapsed.as_secs_f64()
        );
    }
    let failures: usize = reports.iter().map(|r| r.failures.len()).sum();
    if failures > 0 {
        anyhow::bail!("{failures} histories did not converge");
    }
    Ok(())
}
