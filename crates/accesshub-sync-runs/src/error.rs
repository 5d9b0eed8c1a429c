//! Errors of the run bookkeeping, classified so callers know whether a retry can help.

use accesshub_domain::{Classify, ErrorClass};

/// Something the run or schedule bookkeeping could not do.
#[derive(Debug, thiserror::Error)]
pub enum SyncRunError {
    /// Postgres failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A cron expression, timezone, scope or similar input is invalid.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The connection's active run changed under us three times in a row.
    #[error("another run of this connection is in progress")]
    Busy,
}

impl SyncRunError {
    /// Shorthand for [`SyncRunError::Invalid`].
    pub fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        SyncRunError::Invalid {
            what,
            message: message.into(),
        }
    }
}

impl Classify for SyncRunError {
    fn class(&self) -> ErrorClass {
        match self {
            SyncRunError::Db(e) => accesshub_store::db_error_class(e),
            SyncRunError::Busy => ErrorClass::Transient,
            SyncRunError::Invalid { .. } => ErrorClass::Permanent,
        }
    }
}
