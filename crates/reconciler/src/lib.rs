//! The reconciler: scheduled and on-demand syncs that compare the desired state in Postgres
//! with what each vendor actually holds, and repair drift through the worker owning the vendor
//! (ARCHITECTURE.md principle 6: it trusts nothing).
//!
//! - Runs are rows in `sync_runs`: queued by schedules, `accessctl sync run` or the admin API
//!   ([`store::request_run`]), claimed by any replica, executed under a per-connection advisory
//!   lock ([`lock`]), recorded with counts.
//! - [`engine::sync_connection`] does one comparison; vendors plug in through
//!   [`accesshub_inventory::Inventory`], implemented in each vendor's crate next to its
//!   worker (list the vendor, compare by reference and fingerprint). The reconciler itself
//!   knows no vendor: it holds the generic engine, the [`index`] and the run bookkeeping.
//! - Vendors that cannot list what they hold (dormakaba Saflok / Ambiance) implement
//!   [`accesshub_inventory::Prober`] instead: the engine ([`probe`]) streams the bookings and
//!   the vendor judges each one, with the same SYNC repairs and run counts (docs/sync.md).
//! - A connection being offboarded is synced by [`offboard`] instead: everything of ours is
//!   removed until a listing finds nothing, then the connection is deleted or disabled.

pub mod connections;
pub mod engine;
pub mod error;
pub mod index;
pub mod lock;
pub mod offboard;
pub mod probe;
pub mod pull;
pub mod readmit;
pub mod retention;
pub mod service;

pub use accesshub_inventory as inventory;

/// The run model and bookkeeping live in `accesshub-sync-runs` (shared with the admin API and
/// `accessctl`, which queue runs without depending on the reconciler).
pub use accesshub_sync_runs::{model, schedule, store};

pub use error::ReconcileError;
pub use model::{ConnectionRef, Counts, RunStatus, Scope, SyncRun, SyncSchedule, Trigger};
pub use service::{Reconciler, Settings};
