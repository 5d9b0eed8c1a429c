//! `vendor-sim`: serves the CloudPass, Tapkey, iPassan and dormakaba simulators plus the
//! control API, and the Clock PMS+ upstream simulator (the booking system `make dev`'s
//! dormakaba "Sync" pulls from), seeded with the demo fixtures (see `docs/simulators.md`).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vendor_sim::SimConfig;

/// Command line / environment configuration.
#[derive(Debug, Parser)]
#[command(
    name = "vendor-sim",
    about = "In-memory vendor simulators for accesshub"
)]
struct Args {
    /// Address to bind every server to.
    #[arg(long, env = "VENDOR_SIM_BIND_IP", default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Control API port.
    #[arg(long, env = "VENDOR_SIM_CONTROL_PORT", default_value_t = 18080)]
    control_port: u16,
    /// CloudPass port.
    #[arg(long, env = "VENDOR_SIM_CLOUDPASS_PORT", default_value_t = 18081)]
    cloudpass_port: u16,
    /// Tapkey port.
    #[arg(long, env = "VENDOR_SIM_TAPKEY_PORT", default_value_t = 18082)]
    tapkey_port: u16,
    /// iPassan port.
    #[arg(long, env = "VENDOR_SIM_IPASSAN_PORT", default_value_t = 18083)]
    ipassan_port: u16,
    /// dormakaba (Saflok + Ambiance SOAP) port.
    #[arg(long, env = "VENDOR_SIM_DORMAKABA_PORT", default_value_t = 18084)]
    dormakaba_port: u16,
    /// Clock PMS+ API (upstream) port; 0 leaves it off.
    #[arg(long, env = "VENDOR_SIM_CLOCK_PORT", default_value_t = 18085)]
    clock_port: u16,
    /// The Clock PMS+ account the demo bookings belong to (`make dev`'s Utrecht hotel).
    #[arg(long, env = "VENDOR_SIM_CLOCK_ACCOUNT", default_value = "77")]
    clock_account: String,
    /// Tapkey access-token lifetime in seconds.
    #[arg(long, env = "VENDOR_SIM_TAPKEY_TOKEN_TTL_SECS", default_value_t = 3600)]
    tapkey_token_ttl_secs: u64,
    /// CloudPass / iPassan access-token lifetime in seconds.
    #[arg(long, env = "VENDOR_SIM_TOKEN_TTL_SECS", default_value_t = 3600)]
    token_ttl_secs: u64,
    /// RNG seed for probabilistic faults and key data.
    #[arg(long, env = "VENDOR_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Start empty instead of with the demo fixtures.
    #[arg(long, env = "VENDOR_SIM_NO_DEMO")]
    no_demo: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let a = Args::parse();
    let cfg = SimConfig {
        bind_ip: a.bind_ip,
        cloudpass_port: a.cloudpass_port,
        tapkey_port: a.tapkey_port,
        ipassan_port: a.ipassan_port,
        dormakaba_port: a.dormakaba_port,
        control_port: a.control_port,
        tapkey_token_ttl: Duration::from_secs(a.tapkey_token_ttl_secs),
        other_token_ttl: Duration::from_secs(a.token_ttl_secs),
        seed: a.seed,
    };
    let sim = match vendor_sim::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vendor-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !a.no_demo {
        sim.state().seed_demo();
    }
    // The upstream the demo's dormakaba connection pulls from (HTTP Digest, 5 calls/s).
    let clock = if a.clock_port == 0 {
        None
    } else {
        match vendor_sim::clock::start(
            std::net::SocketAddr::new(a.bind_ip, a.clock_port),
            vendor_sim::clock::DEMO_USER,
            vendor_sim::clock::DEMO_API_KEY,
        )
        .await
        {
            Ok(c) => {
                if !a.no_demo {
                    c.seed_demo(&a.clock_account);
                }
                tracing::info!(clock = %c.account_url(&a.clock_account), "Clock PMS+ simulator ready");
                Some(c)
            }
            Err(e) => {
                eprintln!("vendor-sim: {e}");
                sim.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
    };
    tracing::info!(
        control = %sim.control_url(),
        cloudpass = %sim.cloudpass_url(),
        tapkey = %sim.tapkey_url(),
        ipassan = %sim.ipassan_url(),
        saflok = %sim.dormakaba_url(),
        ambiance = %sim.ambiance_url(),
        "vendor simulators ready"
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("vendor-sim: cannot wait for Ctrl-C: {e}");
    }
    if let Some(c) = clock {
        c.shutdown().await;
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}
