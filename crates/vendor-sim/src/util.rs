//! Small helpers shared by the vendor modules.

use axum::http::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an `application/x-www-form-urlencoded` body, keeping repeated keys in order.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `key` in a parsed form.
pub(crate) fn form_get<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The bearer token of the `Authorization` header, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Parses an RFC 3339 / ISO-8601 timestamp with offset into UTC.
pub(crate) fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `2019-02-01T10:00:00Z` (seconds precision).
pub(crate) fn ts_secs(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2019-02-01T10:00:00.000Z` (milliseconds, Tapkey style).
pub(crate) fn ts_millis(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Checks an OAuth2 client-credentials token request: `grant_type=client_credentials` plus
/// `client_id` and `client_secret`. The error is `(oauth error code, description)`.
pub(crate) fn client_credentials(
    form: &[(String, String)],
) -> Result<(&str, &str), (&'static str, &'static str)> {
    if form_get(form, "grant_type") != Some("client_credentials") {
        return Err((
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        ));
    }
    match (form_get(form, "client_id"), form_get(form, "client_secret")) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err((
            "invalid_request",
            "client_id and client_secret are required",
        )),
    }
}
