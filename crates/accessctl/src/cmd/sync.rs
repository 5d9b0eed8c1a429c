//! `accessctl sync`: ask for a sync run, follow it, list runs and manage schedules.
//!
//! Runs are requested by inserting a queued row (`accesshub_sync_runs::store::request_run`),
//! which the reconciler picks up at once (LISTEN/NOTIFY) or on its next poll: the command
//! works, and returns the run id, even while every reconciler replica is restarting.

use std::time::Duration;

use accesshub_sync_runs::{
    ConnectionRef, Scope, SyncRun, Trigger,
    store::{self, RequestOutcome},
};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::output::{self, Format};

/// `accessctl sync ...`
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Queue a sync run for one connection (refused, with the active run's id, if one is
    /// already queued or running).
    Run {
        /// Which connection.
        #[command(flatten)]
        conn: ConnArgs,
        /// What to compare.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Wait until the run has finished and print its counts.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Latest runs (or one run with `--id`).
    Status {
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Vendor.
        #[arg(long)]
        vendor: Option<String>,
        /// One run.
        #[arg(long)]
        id: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Schedules.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

/// `accessctl sync schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create or replace a connection's schedule.
    Set {
        /// Which connection.
        #[command(flatten)]
        conn: ConnArgs,
        /// Cron expression (`min hour dom mon dow`, e.g. "0 3 * * *").
        #[arg(long, default_value = accesshub_sync_runs::DEFAULT_CRON)]
        cron: String,
        /// IANA timezone the expression is read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Scope of the scheduled runs.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Keep the schedule but do not run it.
        #[arg(long)]
        disable: bool,
    },
    /// Every schedule (optionally of one tenant).
    List {
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Identifies a connection.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Tenant id.
    #[arg(long)]
    pub tenant: String,
    /// Vendor (cloudpass, dormakaba, ipassan, tapkey).
    #[arg(long)]
    pub vendor: String,
    /// Connection name.
    #[arg(long, default_value = "default")]
    pub connection: String,
}

impl ConnArgs {
    fn to_ref(&self) -> anyhow::Result<ConnectionRef> {
        let vendor: accesshub_connections::Vendor = self
            .vendor
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        Ok(ConnectionRef {
            tenant: self.tenant.clone(),
            vendor: vendor.as_str().to_owned(),
            name: self.connection.clone(),
        })
    }
}

/// `--scope upcoming|active|full [--days N]`.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// upcoming (arrivals within --days), active (current), or full.
    #[arg(long, default_value = "full")]
    pub scope: String,
    /// Days for `--scope upcoming` (default 5).
    #[arg(long)]
    pub days: Option<i64>,
}

impl ScopeArgs {
    fn parse(&self) -> anyhow::Result<Scope> {
        if self.days.is_some() && self.scope != "upcoming" {
            bail!("--days only applies to --scope upcoming");
        }
        Ok(Scope::parse(&self.scope, self.days)?)
    }
}

async fn pool() -> anyhow::Result<sqlx::PgPool> {
    let url = accesshub_config::database_url()?;
    Ok(accesshub_store::connect_lazy(&url, 2)?)
}

fn who() -> String {
    std::env::var("USER")
        .map(|u| format!("accessctl:{u}"))
        .unwrap_or_else(|_| "accessctl".to_owned())
}

fn runs_table(format: Format, runs: &[SyncRun]) -> anyhow::Result<()> {
    let ts = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.connection.to_string(),
                r.scope.to_string(),
                r.trigger.as_str().to_owned(),
                r.status.as_str().to_owned(),
                ts(&r.started_at),
                ts(&r.finished_at),
                r.counts.checked.to_string(),
                r.counts.in_sync.to_string(),
                r.counts.created.to_string(),
                r.counts.updated.to_string(),
                r.counts.removed.to_string(),
                r.counts.failed.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::print(
        format,
        &runs,
        &[
            "ID",
            "CONNECTION",
            "SCOPE",
            "TRIGGER",
            "STATUS",
            "STARTED",
            "FINISHED",
            "CHECKED",
            "IN SYNC",
            "CREATED",
            "UPDATED",
            "REMOVED",
            "FAILED",
            "ERROR",
        ],
        rows,
    )
}

/// Runs a `sync` subcommand.
pub async fn run(cmd: SyncCommand, format: Format) -> anyhow::Result<()> {
    let pool = pool().await?;
    match cmd {
        SyncCommand::Run {
            conn,
            scope,
            wait,
            timeout,
        } => {
            let c = conn.to_ref()?;
            let outcome =
                store::request_run(&pool, &c, scope.parse()?, Trigger::Manual, Some(&who()))
                    .await
                    .context("queueing the sync run")?;
            let mut run = outcome.run().clone();
            if let RequestOutcome::AlreadyActive(r) = &outcome {
                eprintln!(
                    "{c} already has run {} ({}); not queueing another",
                    r.id,
                    r.status.as_str()
                );
            }
            if wait {
                let deadline = tokio::time::Instant::now() + timeout;
                while !run.status.is_final() {
                    if tokio::time::Instant::now() >= deadline {
                        bail!(
                            "run {} still {} after {timeout:?}",
                            run.id,
                            run.status.as_str()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    run = store::get_run(&pool, run.id)
                        .await?
                        .with_context(|| format!("run {} disappeared", run.id))?;
                }
            }
            runs_table(format, std::slice::from_ref(&run))?;
            if matches!(outcome, RequestOutcome::AlreadyActive(_)) && !wait {
                std::process::exit(3);
            }
            Ok(())
        }
        SyncCommand::Status {
            tenant,
            vendor,
            id,
            limit,
        } => {
            let runs = match id {
                Some(id) => store::get_run(&pool, id).await?.into_iter().collect(),
                None => {
                    store::list_runs(&pool, tenant.as_deref(), vendor.as_deref(), limit).await?
                }
            };
            runs_table(format, &runs)
        }
        SyncCommand::Schedule(ScheduleCommand::Set {
            conn,
            cron,
            timezone,
            scope,
            disable,
        }) => {
            let s = store::set_schedule(
                &pool,
                &conn.to_ref()?,
                &cron,
                &timezone,
                scope.parse()?,
                !disable,
                chrono::Utc::now(),
            )
            .await?;
            schedules_table(format, &[s])
        }
        SyncCommand::Schedule(ScheduleCommand::List { tenant }) => {
            let list = store::list_schedules(&pool, tenant.as_deref()).await?;
            schedules_table(format, &list)
        }
    }
}

fn schedules_table(
    format: Format,
    list: &[accesshub_sync_runs::SyncSchedule],
) -> anyhow::Result<()> {
    let rows = list
        .iter()
        .map(|s| {
            vec![
                s.connection.to_string(),
                s.cron.clone(),
                s.timezone.clone(),
                s.scope.to_string(),
                s.enabled.to_string(),
                s.next_run_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                s.last_run_id.map(|i| i.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    output::print(
        format,
        &list,
        &[
            "CONNECTION",
            "CRON",
            "TIMEZONE",
            "SCOPE",
            "ENABLED",
            "NEXT RUN",
            "LAST RUN",
        ],
        rows,
    )
}
