//! The one classification of vendor HTTP outcomes.

use std::time::Duration;

use accesshub_domain::{Classify, ErrorClass};
use reqwest::StatusCode;

/// Longest body text kept in an error for callers that parse the vendor's error format; what
/// is shown (Display) is [`crate::scrub`]bed and much shorter.
const MAX_BODY: usize = 2048;

/// A vendor call failed. [`Classify`] decides retry vs dead letter: timeouts, connection
/// errors, 408, 429 and 5xx are transient; every other status is permanent unless the caller
/// maps it (e.g. Tapkey's 409 "already there"). Debug shows the body scrubbed, like Display:
/// `{:?}` of an error ends up in logs as easily as its message does.
#[derive(thiserror::Error)]
pub enum VendorError {
    /// No answer within the timeout.
    #[error("{vendor} {operation}: timed out")]
    Timeout {
        /// Vendor label.
        vendor: &'static str,
        /// Operation label.
        operation: &'static str,
    },
    /// Could not connect, or the connection broke before an answer.
    #[error("{vendor} {operation}: connection failed: {message}")]
    Connect {
        /// Vendor label.
        vendor: &'static str,
        /// Operation label.
        operation: &'static str,
        /// Transport error.
        message: String,
    },
    /// The vendor answered with a non-2xx status. The message shows the body
    /// [`scrub`](crate::scrub)bed: vendors echo credentials in error bodies.
    #[error("{vendor} {operation}: HTTP {status}: {}", crate::scrub(.body))]
    Status {
        /// Vendor label.
        vendor: &'static str,
        /// Operation label.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Response body text (≤ 2 KiB, raw: for parsing only, never for messages — use
        /// [`VendorError::safe_body`]).
        body: String,
        /// Parsed `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A 2xx body did not decode.
    #[error("{vendor} {operation}: unexpected response: {message}")]
    Decode {
        /// Vendor label.
        vendor: &'static str,
        /// Operation label.
        operation: &'static str,
        /// Decoder message.
        message: String,
    },
    /// The request could not be built (bad URL, client setup).
    #[error("vendor client configuration: {0}")]
    Config(String),
    /// A caller-mapped permanent failure with an operator-facing message (e.g. CloudPass 403).
    #[error("{0}")]
    Permanent(String),
}

impl VendorError {
    pub(crate) fn from_reqwest(
        vendor: &'static str,
        operation: &'static str,
        e: &reqwest::Error,
    ) -> Self {
        if let Some(refused) = crate::egress::refusal_in(e) {
            VendorError::Permanent(format!("{vendor} {operation}: {refused}"))
        } else if e.is_timeout() {
            VendorError::Timeout { vendor, operation }
        } else if e.is_builder() {
            VendorError::Config(format!("{vendor} {operation}: {e}"))
        } else {
            // Connect errors, resets, dropped connections, body read failures: all transport.
            let mut message = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            VendorError::Connect {
                vendor,
                operation,
                message,
            }
        }
    }

    /// Builds a [`VendorError::Status`] from a non-2xx response, keeping its body text.
    pub async fn from_response(
        vendor: &'static str,
        operation: &'static str,
        resp: reqwest::Response,
    ) -> Self {
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let mut body = resp.text().await.unwrap_or_default();
        if body.len() > MAX_BODY {
            let mut cut = MAX_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        VendorError::Status {
            vendor,
            operation,
            status,
            body,
            retry_after,
        }
    }

    /// The HTTP status, when the vendor answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            VendorError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the vendor answered with `code`.
    pub fn is_status(&self, code: StatusCode) -> bool {
        self.status() == Some(code.as_u16())
    }

    /// The raw response body text, when the vendor answered: for parsing the vendor's error
    /// format only. Anything shown to people or logged must use [`VendorError::safe_body`].
    pub fn body(&self) -> Option<&str> {
        match self {
            VendorError::Status { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The response body [`scrub`](crate::scrub)bed (credentials removed, ≤ 300 characters),
    /// for messages.
    pub fn safe_body(&self) -> Option<String> {
        self.body().map(crate::scrub)
    }
}

impl std::fmt::Debug for VendorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VendorError::Status {
                vendor,
                operation,
                status,
                body,
                retry_after,
            } => f
                .debug_struct("Status")
                .field("vendor", vendor)
                .field("operation", operation)
                .field("status", status)
                .field("body", &crate::scrub(body))
                .field("retry_after", retry_after)
                .finish(),
            other => write!(f, "VendorError({other})"),
        }
    }
}

impl Classify for VendorError {
    fn class(&self) -> ErrorClass {
        match self {
            VendorError::Timeout { .. } | VendorError::Connect { .. } => ErrorClass::Transient,
            VendorError::Status { status, .. } => class_of_status(*status),
            VendorError::Decode { .. } | VendorError::Config(_) | VendorError::Permanent(_) => {
                ErrorClass::Permanent
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            VendorError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The one rule for vendor HTTP statuses: 408 (request timeout), 429 (too many requests) and
/// 5xx are transient — the same request can succeed later; every other status is permanent
/// (callers that treat a status as success, e.g. 409 "already there", map it before asking).
/// Shared by [`VendorError`], the SOAP transport and the reconciler's list calls.
pub fn class_of_status(status: u16) -> ErrorClass {
    match status {
        408 | 429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The delay a response's `Retry-After` header asks for (seconds or HTTP-date, see
/// [`parse_retry_after`]), relative to now; `None` without a readable header.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, chrono::Utc::now())
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`.
/// A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> VendorError {
        VendorError::Status {
            vendor: "v",
            operation: "op",
            status: code,
            body: String::new(),
            retry_after: None,
        }
    }

    /// Issue 23: a vendor error body (which may echo the credentials sent) never reaches a
    /// log line or an error string in clear, through `Debug` (`?err`, `{err:?}`) or Display.
    #[test]
    fn debug_and_display_scrub_the_body() {
        let e = VendorError::Status {
            vendor: "tapkey",
            operation: "token",
            status: 401,
            body: r#"{"error":"invalid_client","client_secret":"hunter2-client-secret","auth":"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"}"#
                .into(),
            retry_after: None,
        };
        for printed in [format!("{e:?}"), format!("{e:#?}"), e.to_string()] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(!printed.contains("eyJhbGciOiJIUzI1NiJ9"), "{printed}");
            assert!(printed.contains("invalid_client"), "{printed}");
        }
    }

    #[test]
    fn classification() {
        for c in [408, 429, 500, 502, 503, 504] {
            assert_eq!(status(c).class(), ErrorClass::Transient, "{c}");
        }
        for c in [400, 401, 402, 403, 404, 409, 422] {
            assert_eq!(status(c).class(), ErrorClass::Permanent, "{c}");
        }
        let t = VendorError::Timeout {
            vendor: "v",
            operation: "o",
        };
        assert_eq!(t.class(), ErrorClass::Transient);
    }

    #[test]
    fn status_rule_covers_every_status() {
        for code in 100..=599u16 {
            let expected = if code == 408 || code == 429 || code >= 500 {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            };
            assert_eq!(class_of_status(code), expected, "{code}");
            assert_eq!(status(code).class(), expected, "{code}");
        }
    }

    #[test]
    fn retry_after_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(" 12 "),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
