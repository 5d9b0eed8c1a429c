//! Errors of the reconciler, each classified so callers know whether a retry can help.

use accesshub_domain::{Classify, ErrorClass};

/// Something a sync run or the run bookkeeping could not do.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Postgres failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Publishing a repair command failed.
    #[error("publish: {0}")]
    Publish(String),
    /// The vendor's list API failed.
    #[error("vendor inventory: {0}")]
    Inventory(#[from] accesshub_inventory::InventoryError),
    /// No connection with that tenant, vendor and name.
    #[error("no connection {tenant}/{vendor}/{name}")]
    NoConnection {
        /// Tenant.
        tenant: String,
        /// Vendor.
        vendor: String,
        /// Connection name.
        name: String,
    },
    /// Connection store failed.
    #[error("connections: {0}")]
    Connections(String),
    /// A cron expression, timezone, scope or similar input is invalid.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Reading the booking system (the pull phase) failed.
    #[error("upstream: {0}")]
    Upstream(#[from] accesshub_upstreams::UpstreamError),
    /// No inventory is implemented for this vendor yet.
    #[error("vendor {0} has no inventory implementation yet")]
    Unsupported(String),
    /// An offboard run could not remove everything of ours in time: the connection stays
    /// offboarding and the run can be retried.
    #[error(
        "{remaining} object(s) of ours are still at the vendor after {waited_secs} s of removals (e.g. {sample}); the connection stays offboarding: check the worker's DLQ, then retry (accessctl connections delete --remove-access)"
    )]
    OffboardIncomplete {
        /// Objects still listed.
        remaining: usize,
        /// How long the run kept removing.
        waited_secs: u64,
        /// A few of their references.
        sample: String,
    },
    /// Another replica holds the connection's lock.
    #[error("another run of this connection is in progress")]
    Busy,
}

impl From<accesshub_sync_runs::SyncRunError> for ReconcileError {
    fn from(e: accesshub_sync_runs::SyncRunError) -> Self {
        use accesshub_sync_runs::SyncRunError as S;
        match e {
            S::Db(e) => ReconcileError::Db(e),
            S::Invalid { what, message } => ReconcileError::Invalid { what, message },
            S::Busy => ReconcileError::Busy,
        }
    }
}

impl ReconcileError {
    /// Shorthand for [`ReconcileError::Invalid`].
    pub fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        ReconcileError::Invalid {
            what,
            message: message.into(),
        }
    }
}

impl Classify for ReconcileError {
    fn class(&self) -> ErrorClass {
        match self {
            ReconcileError::Db(e) => accesshub_store::db_error_class(e),
            ReconcileError::Publish(_)
            | ReconcileError::Busy
            | ReconcileError::Connections(_)
            | ReconcileError::OffboardIncomplete { .. } => ErrorClass::Transient,
            ReconcileError::Inventory(e) => e.class(),
            ReconcileError::Upstream(e) => e.class(),
            ReconcileError::NoConnection { .. }
            | ReconcileError::Invalid { .. }
            | ReconcileError::Unsupported(_) => ErrorClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ReconcileError::Inventory(e) => e.retry_after(),
            ReconcileError::Upstream(e) => e.retry_after(),
            _ => None,
        }
    }
}
