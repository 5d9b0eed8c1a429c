//! `accessctl streams`: the one place that creates and changes accesshub's JetStream streams
//! (BOOKINGS, DLQ, RESULTS, SYNC). The Helm chart runs `streams apply` in its
//! pre-install/pre-upgrade Job as the NATS identity `accesshub-streams`, `make dev` before
//! starting the services. Services only check the streams at start-up (outside
//! `ACCESSHUB_MODE=dev`), so their NATS identities hold no right to change stream limits
//! (docs/security.md "NATS identities").
//!
//! Settings come from the same environment as the services' (`ACCESSHUB_STREAM_REPLICAS`,
//! `ACCESSHUB_BOOKINGS_MAX_AGE`, `ACCESSHUB_DUPLICATE_WINDOW`, `ACCESSHUB_DLQ_MAX_AGE`,
//! `ACCESSHUB_DLQ_MAX_BYTES`, `ACCESSHUB_STREAM_FILE_STORAGE`, `ACCESSHUB_NAMESPACE`), and
//! NATS from `NATS_URL`, `NATS_USER`/`NATS_PASSWORD` or `NATS_CREDS`.

use anyhow::Context as _;
use clap::Subcommand;

/// `accessctl streams …`
#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Create every stream or bring it to the configured settings (idempotent; the Helm
    /// pre-install/pre-upgrade Job and `make dev` run it).
    Apply,
    /// Check what services check at start-up, changing nothing: every stream exists with the
    /// subjects, retention and de-duplication window they rely on.
    Check,
}

/// Connects with the environment's NATS identity and runs the subcommand.
pub async fn run(c: StreamsCommand) -> anyhow::Result<()> {
    let cfg = accesshub_config::CommonConfig::from_env("accessctl")?;
    let bus = accesshub_bus::connect(&cfg).await?;
    match c {
        StreamsCommand::Apply => {
            bus.ensure_streams()
                .await
                .context("creating or updating the streams (is NATS_USER the streams identity, accesshub-streams?)")?;
            bus.check_streams()
                .await
                .context("checking the streams after applying")?;
            for s in bus.stream_configs() {
                println!(
                    "stream {} applied: subjects {}, replicas {}, max age {}, duplicate window {}",
                    s.name,
                    s.subjects.join(" "),
                    s.num_replicas,
                    humantime::format_duration(s.max_age),
                    humantime::format_duration(s.duplicate_window)
                );
            }
        }
        StreamsCommand::Check => {
            bus.check_streams().await?;
            println!("streams ready: {}", stream_names(&bus).join(", "));
        }
    }
    let _ = bus.client.flush().await;
    Ok(())
}

fn stream_names(bus: &accesshub_bus::Bus) -> Vec<String> {
    bus.stream_configs().into_iter().map(|s| s.name).collect()
}
