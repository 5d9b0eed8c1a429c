//! The reconciler: scheduled and on-demand syncs that compare the desired state in Postgres
//! with what each vendor actually holds, and repair drift through the worker owning the vendor
//! (ARCHITECTURE.md principle 6: it trusts nothing).
//!
//! - Runs are rows in `sync_runs`: queued by schedules, `accessctl sync run` or the admin API
//!   ([`store::request_run`]), claimed by any replica, executed under a per-connection advisory
//!   lock ([`lock`]), recorded with counts.
//! - [`engine::sync_connection`] does one comparison; vendors plug in through
//!   [`inventory::Inventory`] (list the vendor, compare by reference and fingerprint).
//! - Vendors that cannot list what they hold (dormakaba Saflok / Ambiance) implement
//!   [`inventory::Prober`] instead: a re-assertion probe per reservation
//!   ([`inventory::dormakaba`], docs/sync.md), same SYNC repairs and run counts.

pub mod connections;
pub mod engine;
pub mod error;
pub mod inventory;
pub mod lock;
pub mod service;

/// The run model and bookkeeping live in `accesshub-sync-runs` (shared with the admin API and
/// `accessctl`, which queue runs without depending on the reconciler).
pub use accesshub_sync_runs::{model, schedule, store};

pub use error::ReconcileError;
pub use model::{ConnectionRef, Counts, RunStatus, Scope, SyncRun, SyncSchedule, Trigger};
pub use service::{Reconciler, Settings};
