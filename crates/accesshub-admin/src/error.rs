//! Every error of the API as an RFC 9457 problem (`application/problem+json`): `type`
//! (`about:blank`: the status says it all), `title`, `status`, `detail`, and when fields are at
//! fault the extension members `errors: [{field, message}]` and `field` (the first of them), so
//! a client can point at the offending line.

use accesshub_connections::{ConnectionError, lookup::LookupError};
use accesshub_domain::FieldError;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

/// Media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details document, as every error of the admin API is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct Problem {
    /// Problem type URI; `about:blank` (the HTTP status is the type).
    #[serde(rename = "type", default = "about_blank")]
    #[schema(required = true)]
    pub kind: String,
    /// The status's reason phrase.
    #[serde(default)]
    #[schema(required = true)]
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension: the first field at fault (JSON path of the request body, or a query or path
    /// parameter's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Extension: every field at fault, with what is wrong with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// One field at fault (extension member `errors` of a [`Problem`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProblemField {
    /// JSON path of the field (`settings.encoders[1].kind`), or a parameter's name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    /// A problem with `status` and `detail`, no field.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            field: None,
            errors: Vec::new(),
        }
    }

    /// With the fields at fault (`field` becomes the first).
    pub fn with_errors(mut self, errors: Vec<ProblemField>) -> Self {
        self.field = errors.first().map(|e| e.field.clone());
        self.errors = errors;
        self
    }

    /// One line for a person: the detail, then each field's message.
    pub fn describe(&self) -> String {
        let mut out = self.detail.clone().unwrap_or_else(|| self.title.clone());
        // One field: the detail already reads "field: message".
        if self.errors.len() > 1 {
            for e in &self.errors {
                out.push_str(&format!("\n  {}: {}", e.field, e.message));
            }
        }
        out
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response()
    }
}

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

/// PostgreSQL refused a text value (SQLSTATE 22021 `character_not_in_repertoire`, 22P05
/// `untranslatable_character`): a NUL character (`\u0000`) from the caller, not our fault.
fn is_invalid_text(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "22021" || c == "22P05")
}

/// The 400 for [`is_invalid_text`].
fn invalid_text() -> ApiError {
    ApiError::BadRequest {
        field: None,
        problem: "a value contains a NUL character (\\u0000) or text PostgreSQL cannot store"
            .into(),
    }
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> Self {
        use accesshub_domain::{Classify, ErrorClass};
        match e {
            ConnectionError::Db(e) if is_invalid_text(&e) => invalid_text(),
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

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            ApiError::BadRequest { field, problem } => {
                let detail = match field {
                    Some(f) => format!("{f}: {problem}"),
                    None => problem.clone(),
                };
                let errors = field
                    .iter()
                    .map(|f| ProblemField {
                        field: f.clone(),
                        message: problem.clone(),
                    })
                    .collect();
                Problem::new(status, detail).with_errors(errors)
            }
            ApiError::Invalid(errs) => {
                let detail = match errs.as_slice() {
                    [one] => one.to_string(),
                    _ => format!("validation failed: {} fields", errs.len()),
                };
                let errors = errs
                    .iter()
                    .map(|e| ProblemField {
                        field: e.field.clone(),
                        message: e.problem.clone(),
                    })
                    .collect();
                Problem::new(status, detail).with_errors(errors)
            }
            ApiError::Internal => Problem::new(status, "internal error (see the service log)"),
            other => Problem::new(status, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

/// Parses a JSON body, naming the offending field on failure (400).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every request body is a JSON object: serde would also read a struct from an array, by
    // position (`[null, null]` as a tenant), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest {
            field: None,
            problem: "the body must be a JSON object".into(),
        });
    }
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
