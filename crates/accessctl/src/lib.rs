//! `accessctl`: the operator/SRE command line. Each subcommand lives in its own module under
//! `cmd/`; this file only wires them together so they can be tested in-process.

pub mod cmd;
pub mod context;
pub mod exit;
pub mod output;

use clap::{CommandFactory as _, Parser, Subcommand};

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(
    name = "accessctl",
    version,
    about = "Operate accesshub: connections, syncs, dead letters, status",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Output format, for every command.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = output::Format::Table)]
    pub output: output::Format,
    /// Where the admin API is and the token to send.
    #[command(flatten)]
    pub api: context::ApiFlags,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The conventions and exit codes, shown under `accessctl --help`.
pub const AFTER_HELP: &str = "\
Arguments: the object a command acts on is positional, from the outside in: TENANT, then \
VENDOR, then NAME (a connection) or WHAT (a lookup), e.g. `connections get acme tapkey`, \
`lookup acme cloudpass sites`, `sync run acme tapkey --wait`. Filters of list commands are \
flags (--tenant, --vendor). (Before: `lookup VENDOR TENANT WHAT` and `sync run --tenant T \
--vendor V`; both still work, with a warning for the old lookup order.)

Admin API: --server/--token, else the context named by --context, else ACCESSHUB_API_URL / \
ACCESSHUB_TOKEN, else the current context of $XDG_CONFIG_HOME/accessctl/config.yaml \
(accessctl config --help). Shell completions: accessctl completion bash|zsh|fish.

Exit codes:
  0  done
  1  failed (refused by the API, unreachable, invalid input or file)
  2  wrong usage (unknown command or flag)
  3  sync run without --wait: the connection already had an active run (not queued)
  4  done, but the outcome is bad: `sync run --wait` finished failed or partial; `status` \
found problems (a stream or table missing, dead letters waiting, a last sync run failed)";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit (the Helm pre-upgrade Job).
    Migrate,
    /// JetStream streams: apply (create or update; the Helm pre-upgrade Job) or check.
    #[command(subcommand)]
    Streams(cmd::streams::StreamsCommand),
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
    /// Named contexts (admin API server and token) in the config file, like kubectl config.
    #[command(subcommand)]
    Config(context::ConfigCommand),
    /// Print a shell completion script: `source <(accessctl completion bash)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command line.
/// Errors carry their exit code as an [`exit::Exit`] (see [`AFTER_HELP`]); any other is 1.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let api = || context::target(&cli.api)?.client();
    let format = cli.output;
    match cli.command {
        Command::Migrate => cmd::migrate::run().await,
        Command::Streams(c) => cmd::streams::run(c).await,
        Command::Dlq(c) => cmd::dlq::run(c, format).await,
        Command::Status => cmd::status::run(format).await,
        Command::Sync(c) => cmd::sync::run(c, format).await,
        Command::Tenants(c) => cmd::tenants::run_with(&api()?, c, format).await,
        Command::Connections(c) => cmd::connections::run_with(&api()?, c, format).await,
        Command::Lookup(a) => cmd::lookup::run_with(&api()?, a, format).await,
        Command::Tokens(c) => cmd::tokens::run_with(&api()?, c, format).await,
        Command::Audit(a) => cmd::audit::run_with(&api()?, a, format).await,
        Command::Secrets(c) => cmd::secrets::run(c, format).await,
        Command::Config(c) => context::run_at(&context::config_path()?, c, &cli.api, format),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "accessctl", &mut std::io::stdout());
            Ok(())
        }
    }
}
