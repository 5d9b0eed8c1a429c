//! `accessctl secrets reseal`: the middle step of an encryption-key rotation
//! (docs/runbooks/key-rotation.md). Re-encrypts every connection secret and every webhook
//! secret under the active key, in batches committed one by one, printing progress; safe to
//! interrupt, re-run, and run while the services serve traffic. `--dry-run` counts the rows
//! per column, key id and format, and checks that every row opens.
//!
//! It opens secrets, so it needs the keys: it reads the same variables as the services
//! (`ACCESSHUB_ENCRYPTION_KEYS` or `ACCESSHUB_ENCRYPTION_KEY`, `ACCESSHUB_ENCRYPTION_KEY_ID`)
//! and `DATABASE_URL`, and is meant to run where those are already mounted (`kubectl exec`
//! into the admin Deployment, or a Job using the release's Secret), not on a laptop. There is
//! deliberately no admin-API endpoint: an API token would then be enough to drive a
//! key-handling job, and a long batch job does not belong in a request.

use accesshub_connections::reseal::{Progress, ResealOptions, ResealReport, reseal};
use accesshub_store::SecretBox;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use sqlx::PgPool;

use crate::output::{self, Format};

/// `accessctl secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret under the active key (resumable; --dry-run to count).
    Reseal(ResealArgs),
}

/// Options of `secrets reseal`.
#[derive(Debug, Clone, Args)]
pub struct ResealArgs {
    /// Count rows per key id and check they open; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per transaction.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
}

/// Connects with `DATABASE_URL` and the key variables, then runs the subcommand.
pub async fn run(cmd: SecretsCommand, format: Format) -> anyhow::Result<()> {
    let SecretsCommand::Reseal(args) = cmd;
    let url = accesshub_config::database_url()?;
    let pool = accesshub_store::connect_lazy(&url, 2)?;
    let secrets = SecretBox::from_env().context("encryption keys")?;
    reseal_with(&pool, &secrets, &args, format)
        .await
        .map(|_| ())
}

/// Runs a reseal (or dry run) and prints the report; an error (non-zero exit) when a row
/// cannot be decrypted with any configured key, after listing those rows.
pub async fn reseal_with(
    pool: &PgPool,
    secrets: &SecretBox,
    args: &ResealArgs,
    format: Format,
) -> anyhow::Result<ResealReport> {
    eprintln!(
        "{} with active key {:?} (configured: {})",
        if args.dry_run {
            "dry run: counting"
        } else {
            "resealing"
        },
        secrets.active_key_id(),
        secrets.key_ids().join(", ")
    );
    let opts = ResealOptions {
        batch: args.batch,
        dry_run: args.dry_run,
    };
    let progress = |p: &Progress| {
        eprintln!(
            "  {}: {} rows scanned; {} ciphertexts {}; {} undecryptable",
            p.table,
            p.scanned,
            p.resealed,
            if args.dry_run {
                "to reseal"
            } else {
                "resealed"
            },
            p.failed
        );
    };
    let report = reseal(pool, secrets, &opts, progress)
        .await
        .context("reseal")?;
    print(format, &report)?;
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} stored secret(s) cannot be decrypted with any configured key ({}): add the key \
             they name back to ACCESSHUB_ENCRYPTION_KEYS, or set those secrets again",
            report.failed.len(),
            secrets.key_ids().join(", ")
        );
    }
    Ok(report)
}

fn print(format: Format, r: &ResealReport) -> anyhow::Result<()> {
    if format != Format::Table {
        return output::print(format, r, &[], vec![]);
    }
    output::print(
        Format::Table,
        &(),
        &["COLUMN", "KEY ID", "FORMAT", "ROWS"],
        r.found
            .iter()
            .map(|(k, n)| {
                vec![
                    k.column.to_owned(),
                    k.key_id.clone(),
                    k.format.to_owned(),
                    n.to_string(),
                ]
            })
            .collect(),
    )?;
    if !r.failed.is_empty() {
        println!("CANNOT BE DECRYPTED");
        output::print(
            Format::Table,
            &(),
            &["COLUMN", "ROW", "KEY ID", "ERROR"],
            r.failed
                .iter()
                .map(|f| {
                    vec![
                        f.column.to_owned(),
                        f.row.clone(),
                        f.key_id.clone(),
                        f.error.to_string(),
                    ]
                })
                .collect(),
        )?;
    }
    let verb = if r.dry_run { "to reseal" } else { "resealed" };
    println!(
        "{} ciphertexts {verb} under key {:?}; {} not on it (or v1) before this run; {} expired previous webhook secrets {}",
        r.resealed,
        r.active_key_id,
        r.pending(),
        r.expired_cleared,
        if r.dry_run { "to drop" } else { "dropped" }
    );
    Ok(())
}
