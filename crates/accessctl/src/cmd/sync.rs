//! `accessctl sync`: ask for a sync run, follow it, list runs and manage schedules.
//!
//! Runs are requested by inserting a queued row (`accesshub_sync_runs::store::request_run`),
//! which the reconciler picks up at once (LISTEN/NOTIFY) or on its next poll: the command
//! works, and returns the run id, even while every reconciler replica is restarting.

use std::time::Duration;

use accesshub_sync_runs::{
    ConnectionRef, RunStatus, Scope, SyncRun, Trigger,
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
// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create or replace a connection's schedule.
    Set {
        /// Which connection.
        #[command(flatten)]
        conn: ConnArgs,
        /// Unix cron expression (`min hour dom mon dow`, e.g. "0 3 * * *"), read in
        /// --timezone; day of week 0 or 7 = Sunday, 1 = Monday … 6 = Saturday (or SUN-SAT).
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

/// Identifies a connection: `TENANT VENDOR [NAME]`, positional like every command that acts
/// on one connection (`--tenant/--vendor/--connection` are still read, hidden).
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Tenant id.
    #[arg(value_name = "TENANT", required_unless_present = "tenant_flag")]
    pub tenant: Option<String>,
    /// Vendor (cloudpass, dormakaba, ipassan, tapkey).
    #[arg(value_name = "VENDOR", required_unless_present = "vendor_flag")]
    pub vendor: Option<String>,
    /// Connection name (default `default`).
    #[arg(value_name = "NAME")]
    pub connection: Option<String>,
    /// The tenant, as before the one argument order.
    #[arg(long = "tenant", hide = true, conflicts_with = "tenant")]
    pub tenant_flag: Option<String>,
    /// The vendor, as before the one argument order.
    #[arg(long = "vendor", hide = true, conflicts_with = "vendor")]
    pub vendor_flag: Option<String>,
    /// The connection name, as before the one argument order.
    #[arg(long = "connection", hide = true, conflicts_with = "connection")]
    pub connection_flag: Option<String>,
}

impl ConnArgs {
    /// `TENANT VENDOR [NAME]`.
    pub fn positional(tenant: &str, vendor: &str, name: Option<&str>) -> Self {
        ConnArgs {
            tenant: Some(tenant.to_owned()),
            vendor: Some(vendor.to_owned()),
            connection: name.map(str::to_owned),
            tenant_flag: None,
            vendor_flag: None,
            connection_flag: None,
        }
    }

    fn to_ref(&self) -> anyhow::Result<ConnectionRef> {
        let pick =
            |pos: &Option<String>, flag: &Option<String>| pos.clone().or_else(|| flag.clone());
        let tenant = pick(&self.tenant, &self.tenant_flag)
            .ok_or_else(|| anyhow::anyhow!("TENANT is required"))?;
        let vendor: accesshub_connections::Vendor = pick(&self.vendor, &self.vendor_flag)
            .ok_or_else(|| anyhow::anyhow!("VENDOR is required"))?
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        Ok(ConnectionRef {
            tenant,
            vendor: vendor.as_str().to_owned(),
            name: pick(&self.connection, &self.connection_flag)
                .unwrap_or_else(|| "default".to_owned()),
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
                // What the pull phase found upstream: fetched/new/changed/vanished, and the
                // ignored events it re-admitted.
                r.pull.map_or("-".to_owned(), |p| {
                    format!(
                        "{}/{}/{}/{}/{}",
                        p.fetched, p.new, p.changed, p.vanished, p.readmitted
                    )
                }),
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
            "PULLED F/N/C/V/R",
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
                return Err(crate::exit::Exit::error(
                    crate::exit::NOT_QUEUED,
                    format!("{c} already has run {}: not queued", run.id),
                ));
            }
            if wait && matches!(run.status, RunStatus::Failed | RunStatus::Partial) {
                return Err(crate::exit::Exit::error(
                    crate::exit::UNHEALTHY,
                    format!(
                        "run {} of {c} finished {}{}",
                        run.id,
                        run.status.as_str(),
                        run.error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                ));
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
