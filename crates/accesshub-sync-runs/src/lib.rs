//! Sync runs and their schedules: the model operators see (`accessctl sync`, the admin API)
//! and the bookkeeping in Postgres (`sync_runs`, `sync_schedules`).
//!
//! A crate of its own so that whoever *asks* for a run (admin API, `accessctl`) needs only
//! this, not the reconciler that *executes* runs and with it every vendor adapter.

pub mod error;
pub mod model;
pub mod schedule;
pub mod store;

pub use error::SyncRunError;
pub use model::{ConnectionRef, Counts, RunStatus, Scope, SyncRun, SyncSchedule, Trigger};
pub use schedule::{CronSchedule, DEFAULT_CRON};
