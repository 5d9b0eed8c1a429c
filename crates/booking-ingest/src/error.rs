//! Errors: [`Reject`] is what a caller did wrong (answered 4xx, or 503 when we cannot store),
//! [`IngestError`] is what stops the service itself.

use accesshub_domain::{Classify, ErrorClass, FieldError};
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// Why a delivery was not accepted. Every variant maps to one HTTP status and one NATS reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The body is not the expected JSON shape (400): names the field.
    #[error("invalid request: {field}: {problem}")]
    BadRequest {
        /// JSON path of the offending field (`$` for the whole body).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Valid JSON that makes no booking sense (422).
    #[error("unprocessable: {0:?}")]
    Unprocessable(Vec<FieldError>),
    /// Missing, malformed, wrong or expired signature, or unknown tenant/source (401). The
    /// reason names the header problem only; an unknown tenant looks like a wrong MAC.
    #[error("unauthorized: {0}")]
    Unauthorized(crate::auth::AuthFailure),
    /// Over a rate or concurrency limit (429 with `Retry-After`).
    #[error("too many requests ({scope}); retry after {retry_after_secs} s")]
    TooManyRequests {
        /// Which limit: `global`, `tenant` or `lookup`.
        scope: &'static str,
        /// Whole seconds until a retry may succeed (at least 1).
        retry_after_secs: u64,
    },
    /// The body did not arrive within the body timeout (408).
    #[error("request body timeout")]
    BodyTimeout,
    /// Body larger than the configured limit (413).
    #[error("payload larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Content-Type is not `application/json` (415).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Unknown upstream source in the URL (404).
    #[error("not found")]
    NotFound,
    /// The delivery could not be stored right now (503); the upstream retries.
    #[error("unavailable")]
    Unavailable,
}

impl Reject {
    /// A 400 for one field.
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Reject::BadRequest {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// A 422 for one field.
    pub fn semantic(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Reject::Unprocessable(vec![FieldError::new(field, problem)])
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Reject::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Reject::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Reject::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable label for `accesshub_ingest_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::BadRequest { .. } => "invalid_request",
            Reject::Unprocessable(_) => "unprocessable",
            Reject::Unauthorized(_) => "unauthorized",
            Reject::TooManyRequests { .. } => "too_many_requests",
            Reject::BodyTimeout => "body_timeout",
            Reject::TooLarge { .. } => "payload_too_large",
            Reject::UnsupportedMediaType => "unsupported_media_type",
            Reject::NotFound => "not_found",
            Reject::Unavailable => "unavailable",
        }
    }

    /// JSON body of the answer (HTTP and NATS reply alike, minus `status` for NATS).
    pub fn body(&self) -> Value {
        match self {
            Reject::BadRequest { field, problem } => {
                json!({"error": "invalid_request", "field": field, "problem": problem})
            }
            Reject::Unprocessable(problems) => {
                let first = problems.first();
                json!({
                    "error": "unprocessable",
                    "field": first.map(|p| p.field.as_str()),
                    "problem": first.map(|p| p.problem.as_str()),
                    "problems": problems,
                })
            }
            Reject::TooLarge { limit } => json!({"error": "payload_too_large", "limit": limit}),
            Reject::Unauthorized(why) => json!({"error": "unauthorized", "reason": why.as_str()}),
            Reject::TooManyRequests {
                scope,
                retry_after_secs,
            } => json!({
                "error": "too_many_requests",
                "scope": scope,
                "retry_after": retry_after_secs,
            }),
            other => json!({"error": other.reason()}),
        }
    }
}

impl From<accesshub_upstreams::MapError> for Reject {
    fn from(e: accesshub_upstreams::MapError) -> Self {
        match e {
            accesshub_upstreams::MapError::Field { field, problem } => {
                Reject::BadRequest { field, problem }
            }
            accesshub_upstreams::MapError::Semantic(problems) => Reject::Unprocessable(problems),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let Reject::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// The service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Configuration is missing or invalid.
    #[error(transparent)]
    Config(#[from] accesshub_config::ConfigError),
    /// The encryption key or a stored secret is unusable.
    #[error(transparent)]
    Secret(#[from] accesshub_store::SecretError),
    /// Pool, migration or URL problem.
    #[error(transparent)]
    Store(#[from] accesshub_store::StoreError),
    /// A query failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// NATS connection or stream setup failed.
    #[error(transparent)]
    Bus(#[from] accesshub_bus::BusError),
    /// Binding the HTTP listener or serving failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// A value could not be encoded (a bug).
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A site-defaults document is not a JSON object keyed by site.
    #[error("invalid site defaults: {0}")]
    SiteDefaults(String),
}

impl Classify for IngestError {
    fn class(&self) -> ErrorClass {
        match self {
            IngestError::Config(_)
            | IngestError::Secret(_)
            | IngestError::Json(_)
            | IngestError::SiteDefaults(_) => ErrorClass::Permanent,
            IngestError::Store(e) => e.class(),
            IngestError::Db(e) => accesshub_store::db_error_class(e),
            IngestError::Bus(e) => e.class(),
            IngestError::Io(_) => ErrorClass::Transient,
        }
    }
}
