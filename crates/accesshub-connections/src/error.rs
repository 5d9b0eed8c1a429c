//! Errors of the connection and tenant stores.

use accesshub_domain::{Classify, ErrorClass, FieldError};
use accesshub_store::{SecretError, db_error_class};

/// A store operation failed. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Query or connection error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored secret cannot be opened with the configured keys (a key removed before every
    /// row was resealed, a wrong key, a ciphertext moved between rows), or sealing failed. A
    /// deployment problem, not the caller's: classified transient, so workers retry (with
    /// delay) while an operator fixes the keys, and the admin API answers 503.
    #[error(
        "{what}: {error}; check the encryption keys (ACCESSHUB_ENCRYPTION_KEYS / ACCESSHUB_ENCRYPTION_KEY_ID)"
    )]
    Secret {
        /// Which row (`connection tenant/vendor/name`, `webhook secret tenant/source`).
        what: String,
        /// What failed (never key material or plaintext).
        error: SecretError,
    },
    /// The connection is invalid; every problem names its field.
    #[error("invalid connection: {}", list(.0))]
    Invalid(Vec<FieldError>),
    /// The tenant does not exist.
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    /// The tenant (or other object) already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Optimistic concurrency: the caller's version is not the stored one.
    #[error("version conflict: stored version is {stored}, the request was based on {given}")]
    Conflict {
        /// Version in the database.
        stored: i64,
        /// Version the caller sent.
        given: i64,
    },
    /// The connection is being offboarded: it cannot be changed until its offboard run has
    /// removed everything of ours at the vendor.
    #[error(
        "connection {connection} is being offboarded (then {}): wait for its offboard run to finish (accessctl sync status), or retry it",
        .intent.as_str()
    )]
    Offboarding {
        /// `tenant/vendor/name`.
        connection: String,
        /// What happens at the end.
        intent: crate::offboard::OffboardIntent,
    },
    /// NATS subscribe/publish failed.
    #[error("NATS: {0}")]
    Bus(String),
    /// A stored row cannot be decoded (schema drift or corruption).
    #[error("stored {what} cannot be decoded: {message}")]
    Corrupt {
        /// Which object.
        what: String,
        /// Decoder message (never contains plaintext secrets).
        message: String,
    },
}

fn list(errs: &[FieldError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Classify for ConnectionError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectionError::Db(e) => db_error_class(e),
            ConnectionError::Bus(_) | ConnectionError::Secret { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<SecretError> for ConnectionError {
    fn from(error: SecretError) -> Self {
        ConnectionError::Secret {
            what: "secret".into(),
            error,
        }
    }
}

impl ConnectionError {
    /// A secret of `what` could not be opened (or sealed).
    pub fn secret(error: SecretError, what: &str) -> Self {
        ConnectionError::Secret {
            what: what.to_owned(),
            error,
        }
    }

    /// Maps a foreign-key violation on `tenant_id` to [`ConnectionError::UnknownTenant`].
    pub(crate) fn from_db_for_tenant(e: sqlx::Error, tenant: &str) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("23503")
        {
            return ConnectionError::UnknownTenant(tenant.to_owned());
        }
        ConnectionError::Db(e)
    }
}
