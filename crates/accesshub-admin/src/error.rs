//! Every error of the API as JSON: `{"error": message}`, plus `field`/`problem` (and the full
//! `errors` list) when a field is at fault, so a client can point at the offending line.

use accesshub_connections::{ConnectionError, lookup::LookupError};
use accesshub_domain::FieldError;
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An API error with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no or unknown token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token lacks the scope.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400: the body does not parse (names the field when known).
    #[error("{problem}")]
    BadRequest {
        /// Offending field path, if known.
        field: Option<String>,
        /// What is wrong.
        problem: String,
    },
    /// 422: parses but is invalid; every problem names its field.
    #[error("invalid")]
    Invalid(Vec<FieldError>),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 502: the vendor refused or failed (message from the worker).
    #[error("{0}")]
    BadGateway(String),
    /// 504: no worker answered.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 503: database or NATS unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 422 for one field.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, problem)])
    }
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        use accesshub_domain::{Classify, ErrorClass};
        match e {
            ConnectionError::Invalid(errs) => ApiError::Invalid(errs),
            ConnectionError::UnknownTenant(t) => {
                ApiError::NotFound(format!("unknown tenant {t:?}"))
            }
            ConnectionError::AlreadyExists(what) => {
                ApiError::Conflict(format!("{what} already exists"))
            }
            e @ (ConnectionError::Conflict { .. } | ConnectionError::Offboarding { .. }) => {
                ApiError::Conflict(e.to_string())
            }
            // A deployment problem (keys), not the caller's: 503 with the row and key id,
            // which carry no secret; the operator fixes the keys and the caller retries.
            e @ ConnectionError::Secret { .. } => {
                tracing::error!(error = %e, "admin API: stored secret cannot be decrypted");
                ApiError::Unavailable(e.to_string())
            }
            e if e.class() == ErrorClass::Transient => {
                tracing::warn!(error = %e, "admin API: backend unavailable");
                ApiError::Unavailable("database or NATS unavailable, retry".into())
            }
            e => {
                tracing::error!(error = %e, "admin API: internal error");
                ApiError::Internal
            }
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            e @ (LookupError::NoWorker(_) | LookupError::Timeout { .. }) => {
                ApiError::GatewayTimeout(e.to_string())
            }
            LookupError::Bus(m) => ApiError::Unavailable(format!("NATS: {m}")),
            e @ LookupError::Decode(_) => ApiError::BadGateway(e.to_string()),
        }
    }
}

impl From<accesshub_sync_runs::SyncRunError> for ApiError {
    fn from(e: accesshub_sync_runs::SyncRunError) -> Self {
        use accesshub_sync_runs::SyncRunError as R;
        match e {
            R::Invalid { what, message } => {
                let field = match what {
                    "scope" => "scope",
                    "scope days" => "days",
                    other => other,
                };
                ApiError::field(field, message)
            }
            R::Db(e) => e.into(),
            e @ R::Busy => ApiError::Conflict(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ConnectionError::Db(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({ "error": m })),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({ "error": m })),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "error": m })),
            ApiError::BadRequest { field, problem } => (
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad request", "field": field, "problem": problem }),
            ),
            ApiError::Invalid(errs) => {
                let first = errs.first();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({
                        "error": "validation failed",
                        "field": first.map(|e| e.field.clone()),
                        "problem": first.map(|e| e.problem.clone()),
                        "errors": errs,
                    }),
                )
            }
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({ "error": m })),
            ApiError::BadGateway(m) => (StatusCode::BAD_GATEWAY, json!({ "error": m })),
            ApiError::GatewayTimeout(m) => (StatusCode::GATEWAY_TIMEOUT, json!({ "error": m })),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": m })),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "internal error (see the service log)" }),
            ),
        };
        (status, Json(body)).into_response()
    }
}

/// Parses a JSON body, naming the offending field on failure (400).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ApiError::BadRequest {
            field: (path != ".").then_some(path),
            // serde can quote the offending input, which may be a secret: cut quoted strings.
            problem: redact_serde(&inner.to_string()),
        }
    })
}

/// serde's "invalid value: string \"...\"" quotes the value, which may be a secret: cut it.
fn redact_serde(msg: &str) -> String {
    match (msg.find("string \""), msg.rfind('"')) {
        (Some(start), Some(end)) if end > start + 7 => {
            format!("{}string{}", &msg[..start], &msg[end + 1..])
        }
        _ => msg.to_owned(),
    }
}

/// Parses a connection body; a problem inside `settings` is reported with its exact path
/// (`settings.encoders[1].kind`), which serde's tagged enums would otherwise hide.
pub fn parse_connection(body: &[u8]) -> Result<accesshub_connections::Connection, ApiError> {
    match parse_json::<accesshub_connections::Connection>(body) {
        Ok(c) => Ok(c),
        Err(ApiError::BadRequest {
            field: Some(f),
            problem,
        }) if f == "settings" => {
            let value: serde_json::Value = parse_json(body)?;
            let settings = value.get("settings").cloned().unwrap_or_default();
            match accesshub_connections::settings_from_json(settings) {
                Err((path, msg)) => Err(ApiError::BadRequest {
                    field: Some(if path.is_empty() {
                        "settings".into()
                    } else {
                        format!("settings.{path}")
                    }),
                    problem: redact_serde(&msg),
                }),
                Ok(_) => Err(ApiError::BadRequest {
                    field: Some(f),
                    problem,
                }),
            }
        }
        Err(e) => Err(e),
    }
}
