//! Sync runs and schedules as operators see them (`accessctl sync status`, the admin API).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SyncRunError;

/// Which bookings a run compares. The vendor side is always listed whole (list APIs cannot
/// filter by our booking window), but only objects of in-scope bookings are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "scope", content = "days")]
#[schema(as = SyncScope)]
pub enum Scope {
    /// Bookings with access now or starting within N days (CloudPass "Sync": next 5 days).
    Upcoming(u32),
    /// Bookings with access right now (Tapkey "Sync Now": all current passes).
    Active,
    /// Every booking; also the only scope that removes strays of unknown bookings.
    Full,
    /// Offboarding a connection: everything of ours at the vendor is removed (no booking is
    /// wanted), until a listing finds nothing; then the connection is deleted or disabled.
    Offboard,
}

impl Scope {
    /// Default days of [`Scope::Upcoming`].
    pub const DEFAULT_DAYS: u32 = 5;

    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Upcoming(_) => "upcoming",
            Scope::Active => "active",
            Scope::Full => "full",
            Scope::Offboard => "offboard",
        }
    }

    /// Days for the `scope_days` column.
    pub fn days(self) -> Option<i32> {
        match self {
            Scope::Upcoming(d) => Some(i32::try_from(d).unwrap_or(i32::MAX)),
            _ => None,
        }
    }

    /// From the two columns (or CLI flags).
    pub fn parse(name: &str, days: Option<i64>) -> Result<Scope, SyncRunError> {
        match name {
            "upcoming" => {
                let d = days.unwrap_or(i64::from(Scope::DEFAULT_DAYS));
                let d = u32::try_from(d)
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .ok_or_else(|| {
                        SyncRunError::invalid("scope days", format!("{d} (1..=3650)"))
                    })?;
                Ok(Scope::Upcoming(d))
            }
            "active" => Ok(Scope::Active),
            "full" => Ok(Scope::Full),
            "offboard" => Ok(Scope::Offboard),
            other => Err(SyncRunError::invalid(
                "scope",
                format!("{other:?} (upcoming|active|full|offboard)"),
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Upcoming(d) => write!(f, "upcoming({d}d)"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The connection's cron schedule.
    Schedule,
    /// An operator (`accessctl sync run`).
    Manual,
    /// The admin API ("Sync" / "Sync Now" buttons).
    Api,
}

impl Trigger {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
        }
    }
}

impl FromStr for Trigger {
    type Err = SyncRunError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "schedule" => Ok(Trigger::Schedule),
            "manual" => Ok(Trigger::Manual),
            "api" => Ok(Trigger::Api),
            other => Err(SyncRunError::invalid("trigger", other.to_owned())),
        }
    }
}

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a reconciler replica.
    Queued,
    /// Being executed.
    Running,
    /// Compared everything; every repair was handed to the worker.
    Succeeded,
    /// Could not compare (vendor unreachable, no connection...).
    Failed,
    /// Compared, but some bookings could not be judged or repaired.
    Partial,
}

impl RunStatus {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Partial => "partial",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Partial
        )
    }
}

impl FromStr for RunStatus {
    type Err = SyncRunError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(RunStatus::Queued),
            "running" => Ok(RunStatus::Running),
            "succeeded" => Ok(RunStatus::Succeeded),
            "failed" => Ok(RunStatus::Failed),
            "partial" => Ok(RunStatus::Partial),
            other => Err(SyncRunError::invalid("status", other.to_owned())),
        }
    }
}

/// What a run found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    /// In-scope bookings compared.
    pub checked: i64,
    /// Of those, already matching the vendor.
    pub in_sync: i64,
    /// Repairs sent for bookings missing at the vendor.
    pub created: i64,
    /// Repairs sent for bookings whose vendor objects differ.
    pub updated: i64,
    /// Removals sent for strays (our reference, not desired).
    pub removed: i64,
    /// Bookings that could not be judged or whose repair could not be sent.
    pub failed: i64,
}

/// What a run's pull phase found upstream (issue 21: Sync re-reads the booking system first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullCounts {
    /// Upstream records in the run's scope that were read.
    pub fetched: i64,
    /// Of those, bookings accesshub did not hold (a lost webhook, a backfill).
    pub new: i64,
    /// Of those, bookings whose stored state was older.
    pub changed: i64,
    /// Stored bookings in scope the upstream no longer has: marked gone.
    pub vanished: i64,
    /// Events booking-ingest ignored while access control was off (connection disabled,
    /// site, facility or pass type unmapped) that this connection now acts on: stored as a
    /// new state by the run (issues 20/21).
    #[serde(default)]
    pub readmitted: i64,
}

/// Identifies one connection: tenant × vendor × name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionRef {
    /// Tenant.
    pub tenant: String,
    /// Vendor wire name.
    pub vendor: String,
    /// Connection name (`default` unless several per tenant × vendor).
    pub name: String,
}

impl ConnectionRef {
    /// The connection `name` of `tenant` at `vendor` (its wire name).
    pub fn new(
        tenant: impl Into<String>,
        vendor: impl std::fmt::Display,
        name: impl Into<String>,
    ) -> Self {
        ConnectionRef {
            tenant: tenant.into(),
            vendor: vendor.to_string(),
            name: name.into(),
        }
    }
}

impl From<&accesshub_connections::Connection> for ConnectionRef {
    fn from(c: &accesshub_connections::Connection) -> Self {
        ConnectionRef::new(c.tenant.clone(), c.vendor().as_str(), c.name.clone())
    }
}

impl std::fmt::Display for ConnectionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.vendor, self.name)
    }
}

/// One row of `sync_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncRun {
    /// Run id.
    pub id: i64,
    /// The connection.
    pub connection: ConnectionRef,
    /// Scope.
    pub scope: Scope,
    /// Trigger.
    pub trigger: Trigger,
    /// Operator or API client that asked for it.
    pub requested_by: Option<String>,
    /// Status.
    pub status: RunStatus,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Counts so far.
    pub counts: Counts,
    /// Why it failed (or what went partially wrong).
    pub error: Option<String>,
    /// What it concluded besides its counts (an offboard run: what became of the connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The pull phase's counts; `None` when the run did not pull (no upstream credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullCounts>,
}

/// One row of `sync_schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSchedule {
    /// The connection.
    pub connection: ConnectionRef,
    /// Cron expression as written.
    pub cron: String,
    /// IANA timezone the cron is read in.
    pub timezone: String,
    /// Scope of scheduled runs.
    pub scope: Scope,
    /// Disabled schedules are kept but not run.
    pub enabled: bool,
    /// Next time it fires.
    pub next_run_at: DateTime<Utc>,
    /// Last run it queued.
    pub last_run_id: Option<i64>,
}
