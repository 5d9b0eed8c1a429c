//! What `connections delete|disable` and `tenants delete` do with the vendor access the
//! connection or tenant created: refuse while bookings hold access (the API's default 409),
//! `--remove-access` (offboard first, optionally `--wait` for the runs), or `--keep-access`
//! (go now, leave the vendor objects; the answer's warning is printed).

use std::time::Duration;

use accesshub_admin::{OffboardResponse, OffboardState};
use accesshub_sync_runs::{RunStatus, SyncRun};
use anyhow::{Context as _, bail};
use clap::Args;

use super::connections::ApiClient;

/// `--remove-access | --keep-access`, `--wait`, `--timeout`.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Remove the access it created at the vendor first (an offboard sync run); it is
    /// deleted or disabled once the vendor holds nothing of ours.
    #[arg(long, conflicts_with = "keep_access")]
    pub remove_access: bool,
    /// Go now and leave the vendor objects (bookings keep their access until removed at the
    /// vendor by hand).
    #[arg(long)]
    pub keep_access: bool,
    /// With --remove-access: wait for the offboard runs; exit non-zero if one fails.
    #[arg(long, requires = "remove_access")]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl Default for AccessArgs {
    /// No choice: refused while bookings hold access.
    fn default() -> Self {
        AccessArgs {
            remove_access: false,
            keep_access: false,
            wait: false,
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl AccessArgs {
    /// The `access` query parameter (none: the API refuses while bookings hold access).
    pub fn query(&self) -> Vec<(String, String)> {
        let choice = if self.remove_access {
            "remove"
        } else if self.keep_access {
            "keep"
        } else {
            return vec![];
        };
        vec![("access".to_owned(), choice.to_owned())]
    }
}

/// Prints what happened to `what` and, with `--wait`, follows the offboard runs until they
/// finish (an error when one did not succeed).
pub async fn report(
    api: &ApiClient,
    what: &str,
    answer: Option<OffboardResponse>,
    access: &AccessArgs,
) -> anyhow::Result<()> {
    let Some(a) = answer else {
        println!("{what} deleted (no booking held access)");
        return Ok(());
    };
    if let Some(w) = &a.warning {
        eprintln!("warning: {w}");
    }
    match a.state {
        OffboardState::Deleted => println!("{what} deleted"),
        OffboardState::Disabled => println!("{what} disabled"),
        OffboardState::Offboarding => {
            let ids: Vec<String> = a.runs.iter().map(|r| r.id.to_string()).collect();
            println!(
                "{what} offboarding: {} booking(s) held access; offboard run(s) {} remove it (accessctl sync status)",
                a.live_bookings,
                ids.join(", ")
            );
            if access.wait {
                wait_for(api, &a.runs, access.timeout).await?;
                println!("{what}: offboarding finished");
            }
        }
    }
    Ok(())
}

/// Polls the runs until each is final; fails unless every one succeeded.
pub async fn wait_for(api: &ApiClient, runs: &[SyncRun], timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    for run in runs {
        let c = &run.connection;
        let query = [
            ("tenant".to_owned(), c.tenant.clone()),
            ("vendor".to_owned(), c.vendor.clone()),
            ("limit".to_owned(), "500".to_owned()),
        ];
        loop {
            let list: Vec<SyncRun> = api.get("/syncs", &query).await?;
            let now = list
                .into_iter()
                .find(|r| r.id == run.id)
                .with_context(|| format!("run {} disappeared", run.id))?;
            if now.status.is_final() {
                if now.status != RunStatus::Succeeded {
                    bail!(
                        "offboard run {} of {c} {}: {}",
                        now.id,
                        now.status.as_str(),
                        now.error.as_deref().unwrap_or("no reason recorded")
                    );
                }
                println!(
                    "run {} of {c}: {} object(s) removed; {}",
                    now.id,
                    now.counts.removed,
                    now.note.as_deref().unwrap_or("done")
                );
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "run {} of {c} still {} after {timeout:?}",
                    now.id,
                    now.status.as_str()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
