//! `accessctl migrate`: applies the embedded migrations using `DATABASE_URL`.

use anyhow::Context as _;

/// Applies pending migrations.
pub async fn run() -> anyhow::Result<()> {
    let url = accesshub_config::env_or(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_owned(),
    )?;
    let pool = accesshub_store::connect_lazy(&url, 2)?;
    accesshub_store::migrate(&pool)
        .await
        .context("applying migrations")?;
    println!("migrations applied");
    Ok(())
}
