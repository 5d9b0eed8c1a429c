//! `accessctl migrate`: applies the embedded migrations using `DATABASE_URL` (required unless
//! `ACCESSHUB_MODE=dev`). The only writer of the schema: the Helm chart runs it as its
//! pre-install/pre-upgrade Job, `make dev` before starting the services; services only check.
//! Migrations newer than this binary (a later release ran them) are left alone, so an older
//! `accessctl` after a rollback succeeds without touching the schema.

use anyhow::Context as _;

/// Applies pending migrations, then reports the schema version.
pub async fn run() -> anyhow::Result<()> {
    let url = accesshub_config::database_url()?;
    let pool = accesshub_store::connect_lazy(&url, 2)?;
    accesshub_store::migrate(&pool)
        .await
        .context("applying migrations")?;
    let status = accesshub_store::check_schema(&pool)
        .await
        .context("checking the schema after migrating")?;
    println!("migrations applied: schema at {}", status.required);
    if !status.newer.is_empty() {
        println!(
            "left alone: {} newer migration(s) from a later release ({})",
            status.newer.len(),
            status
                .newer
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
