//! Errors of the upstream mappings and clients.

use std::time::Duration;

use accesshub_domain::{Classify, ErrorClass, FieldError};
use vendor_http::VendorError;

/// Why a record could not be mapped. booking-ingest answers [`MapError::Field`] 400 and
/// [`MapError::Semantic`] 422 (both naming the field); a pull counts the record as failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The record is not the expected shape.
    #[error("{field}: {problem}")]
    Field {
        /// JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Well-formed, but makes no booking sense.
    #[error("{}", .0.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; "))]
    Semantic(Vec<FieldError>),
}

impl MapError {
    /// A shape problem of one field.
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        MapError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// A semantic problem of one field.
    pub fn semantic(field: impl Into<String>, problem: impl Into<String>) -> Self {
        MapError::Semantic(vec![FieldError::new(field, problem)])
    }
}

impl Classify for MapError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Why an upstream API call or a credential operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream answered non-2xx, timed out or could not be reached (classified by
    /// vendor-http: 429/5xx/timeouts transient, other 4xx permanent; `Retry-After` kept).
    #[error(transparent)]
    Http(#[from] VendorError),
    /// A 2xx body was not the documented shape.
    #[error("{upstream}: unexpected response: {message}")]
    Decode {
        /// Upstream label.
        upstream: &'static str,
        /// What did not decode.
        message: String,
    },
    /// A paging link pointed somewhere else than the configured API (the credentials would
    /// follow it).
    #[error("{upstream}: paging link leaves the API: {link}")]
    ForeignLink {
        /// Upstream label.
        upstream: &'static str,
        /// The link.
        link: String,
    },
    /// Configuration is unusable (base URL, options).
    #[error("upstream configuration: {0}")]
    Config(String),
    /// The stored credentials do not open with the configured keys.
    #[error("upstream credentials: {0}")]
    Secret(#[from] accesshub_store::SecretError),
    /// A query failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classify for UpstreamError {
    fn class(&self) -> ErrorClass {
        match self {
            UpstreamError::Http(e) => e.class(),
            UpstreamError::Db(e) => accesshub_store::db_error_class(e),
            UpstreamError::Decode { .. }
            | UpstreamError::ForeignLink { .. }
            | UpstreamError::Config(_)
            | UpstreamError::Secret(_) => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Http(e) => e.retry_after(),
            _ => None,
        }
    }
}
