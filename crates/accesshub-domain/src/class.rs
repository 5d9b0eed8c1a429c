//! Transient vs permanent: the one question every failure must answer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether retrying can help. Transient failures are NAKed with a delay; permanent ones go to
/// the dead-letter stream at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Timeouts, connection errors, 5xx, 429, vendor "busy": try again later.
    Transient,
    /// Validation, unknown mapping, 4xx, credentials: retrying gives the same answer.
    Permanent,
}

impl ErrorClass {
    /// Stable lowercase name used in metrics labels, DLQ entries and CLI filters.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transient" => Ok(ErrorClass::Transient),
            "permanent" => Ok(ErrorClass::Permanent),
            other => Err(format!(
                "unknown error class {other:?} (transient|permanent)"
            )),
        }
    }
}

/// Implemented by every library error so the worker runtime can decide retry vs DLQ without
/// knowing which vendor failed (Vector's `RetryLogic`, kube-rs's error policy).
pub trait Classify {
    /// Whether a retry can succeed.
    fn class(&self) -> ErrorClass;
    /// A delay the peer asked for (HTTP `Retry-After`), honoured over our own backoff.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
