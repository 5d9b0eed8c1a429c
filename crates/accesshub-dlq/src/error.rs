//! Errors of the DLQ tooling, classified like every other accesshub error so `accessctl` can
//! say whether trying again can help.

use accesshub_domain::{Classify, ErrorClass};

/// A DLQ operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Connecting to NATS or a bus-level operation failed.
    #[error(transparent)]
    Bus(#[from] accesshub_bus::BusError),
    /// A JetStream request (stream info, message get/delete, consumer) failed.
    #[error("NATS {op}: {message}")]
    Nats {
        /// What we were doing.
        op: &'static str,
        /// The client's error.
        message: String,
    },
    /// A database query failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The stream does not exist (yet): nothing has created it in this namespace.
    #[error("stream {0} does not exist")]
    NoStream(String),
    /// No DLQ entry with this sequence (purged, expired or never existed).
    #[error("no DLQ entry with id {0}")]
    NotFound(u64),
    /// The stored payload cannot be decoded back to the original bytes.
    #[error("DLQ entry {seq}: payload cannot be decoded: {message}")]
    Decode {
        /// DLQ sequence.
        seq: u64,
        /// Why.
        message: String,
    },
    /// The entry cannot be replayed (loop limit, original gone, no subject).
    #[error("DLQ entry {seq} not replayed: {reason}")]
    Refused {
        /// DLQ sequence.
        seq: u64,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The entry belongs to a tenant outside the caller's scope (or to no known tenant, which
    /// only a caller of every tenant may see). Callers answer as for [`DlqError::NotFound`] or
    /// with 403; never with the entry.
    #[error("DLQ entry {0} is not in the tenants this token may act on")]
    OutOfScope(u64),
    /// The selection names a tenant outside the caller's scope.
    #[error("{0}")]
    Forbidden(String),
    /// The selection is not usable by this caller (e.g. a bulk action of a tenant-scoped
    /// caller that names no tenant).
    #[error("{field}: {message}")]
    Invalid {
        /// The selection's field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The republish was not acknowledged by JetStream.
    #[error("republish of DLQ entry {seq} to {subject}: {message}")]
    Publish {
        /// DLQ sequence.
        seq: u64,
        /// Target subject.
        subject: String,
        /// The client's error.
        message: String,
    },
}

impl DlqError {
    pub(crate) fn nats(op: &'static str, e: impl std::fmt::Display) -> Self {
        DlqError::Nats {
            op,
            message: e.to_string(),
        }
    }
}

impl Classify for DlqError {
    fn class(&self) -> ErrorClass {
        match self {
            DlqError::Bus(e) => e.class(),
            DlqError::Nats { .. } | DlqError::Publish { .. } | DlqError::NoStream(_) => {
                ErrorClass::Transient
            }
            DlqError::Db(e) => accesshub_store::db_error_class(e),
            DlqError::NotFound(_)
            | DlqError::Decode { .. }
            | DlqError::Refused { .. }
            | DlqError::OutOfScope(_)
            | DlqError::Forbidden(_)
            | DlqError::Invalid { .. } => ErrorClass::Permanent,
        }
    }
}
