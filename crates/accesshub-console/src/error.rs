//! What can go wrong serving a console page, and the page the operator sees for it.

use accesshub_domain::{Classify, ErrorClass};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::html;

/// A console request failed. Messages are written for an operator and never hold secrets.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No live session (and the request cannot be redirected to the login).
    #[error("Your session has ended. Log in again.")]
    Unauthorized,
    /// A state-changing request without the session's CSRF token.
    #[error(
        "This request was refused: it did not carry the form's security token. Reload the page and try again."
    )]
    Csrf,
    /// The role or tenant scope does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input that has no form to show it next to.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing there.
    #[error("{0}")]
    NotFound(String),
    /// Postgres.
    #[error("The database could not be reached: {0}")]
    Db(#[from] sqlx::Error),
    /// Connections and tenants.
    #[error("{0}")]
    Connections(#[from] accesshub_connections::ConnectionError),
    /// Sync runs.
    #[error("{0}")]
    Sync(#[from] accesshub_sync_runs::SyncRunError),
    /// The dead-letter stream.
    #[error("{0}")]
    Dlq(#[from] accesshub_dlq::DlqError),
    /// Asking a worker for a lookup.
    #[error("{0}")]
    Lookup(#[from] accesshub_connections::lookup::LookupError),
    /// The audit record of a change could not be stored, so the change was not made.
    #[error("The change was not made: its audit record could not be stored. Try again.")]
    Unrecorded,
}

impl Classify for ConsoleError {
    fn class(&self) -> ErrorClass {
        match self {
            ConsoleError::Db(e) => accesshub_store::db_error_class(e),
            ConsoleError::Connections(e) => e.class(),
            ConsoleError::Dlq(e) => e.class(),
            ConsoleError::Lookup(e) => e.class(),
            ConsoleError::Sync(accesshub_sync_runs::SyncRunError::Db(e)) => {
                accesshub_store::db_error_class(e)
            }
            ConsoleError::Sync(accesshub_sync_runs::SyncRunError::Busy)
            | ConsoleError::Unrecorded => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

impl ConsoleError {
    /// The HTTP status of the page.
    pub fn status(&self) -> StatusCode {
        use accesshub_connections::ConnectionError as C;
        match self {
            ConsoleError::Unauthorized => StatusCode::UNAUTHORIZED,
            ConsoleError::Csrf
            | ConsoleError::Forbidden(_)
            | ConsoleError::Dlq(
                accesshub_dlq::DlqError::OutOfScope(_) | accesshub_dlq::DlqError::Forbidden(_),
            ) => StatusCode::FORBIDDEN,
            ConsoleError::BadRequest(_)
            | ConsoleError::Dlq(accesshub_dlq::DlqError::Invalid { .. })
            | ConsoleError::Connections(C::Invalid(_))
            | ConsoleError::Sync(accesshub_sync_runs::SyncRunError::Invalid { .. }) => {
                StatusCode::BAD_REQUEST
            }
            ConsoleError::NotFound(_)
            | ConsoleError::Connections(C::UnknownTenant(_))
            | ConsoleError::Dlq(accesshub_dlq::DlqError::NotFound(_)) => StatusCode::NOT_FOUND,
            ConsoleError::Connections(C::Conflict { .. } | C::Offboarding { .. }) => {
                StatusCode::CONFLICT
            }
            e if e.class() == ErrorClass::Transient => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "console request failed");
        } else {
            tracing::info!(error = %self, %status, "console request refused");
        }
        (status, html::error_page(status, &self.to_string())).into_response()
    }
}
