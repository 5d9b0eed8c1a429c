//! `accessctl`: the operator/SRE command line. Each subcommand lives in its own module under
//! `cmd/`; this file only wires them together so they can be tested in-process.

pub mod cmd;
pub mod output;

use clap::{Parser, Subcommand};

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(
    name = "accessctl",
    version,
    about = "Operate accesshub: connections, syncs, dead letters, status"
)]
pub struct Cli {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = output::Format::Table)]
    pub output: output::Format,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit (the Helm pre-upgrade Job).
    Migrate,
    /// Dead letters: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(cmd::dlq::DlqCommand),
    /// One-screen health: streams, consumers, DLQ depth per worker, last sync runs.
    Status,
    /// Sync runs: queue one, follow them, manage schedules.
    #[command(subcommand)]
    Sync(cmd::sync::SyncCommand),
    /// Tenants and the webhook secrets of their upstream sources.
    #[command(subcommand)]
    Tenants(cmd::tenants::TenantsCommand),
    /// Vendor connections: list, get, apply -f FILE (idempotent, --dry-run diff), delete.
    #[command(subcommand)]
    Connections(cmd::connections::ConnectionsCommand),
    /// Ask a vendor (through its worker) for sites, time restrictions, assets, locks.
    Lookup(cmd::lookup::LookupArgs),
    /// Admin API tokens: create (role, tenants, expiry), list, revoke, whoami.
    #[command(subcommand)]
    Tokens(cmd::tokens::TokensCommand),
    /// The audit log of changes made through the admin API (and DLQ replays/purges).
    Audit(cmd::audit::AuditArgs),
    /// Stored secrets: reseal under the active encryption key (key rotation).
    #[command(subcommand)]
    Secrets(cmd::secrets::SecretsCommand),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => cmd::migrate::run().await,
        Command::Dlq(c) => cmd::dlq::run(c, cli.output).await,
        Command::Status => cmd::status::run(cli.output).await,
        Command::Sync(c) => cmd::sync::run(c, cli.output).await,
        Command::Tenants(c) => cmd::tenants::run(c, cli.output).await,
        Command::Connections(c) => cmd::connections::run(c, cli.output).await,
        Command::Lookup(a) => cmd::lookup::run(a, cli.output).await,
        Command::Tokens(c) => cmd::tokens::run(c, cli.output).await,
        Command::Audit(a) => cmd::audit::run(a, cli.output).await,
        Command::Secrets(c) => cmd::secrets::run(c, cli.output).await,
    }
}
