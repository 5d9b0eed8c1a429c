//! What every upstream client does the same way: GET a JSON document, retrying transient
//! failures (429 after the server's `Retry-After`, else exponential backoff with jitter).

use std::{sync::Arc, time::Duration};

use accesshub_retry::{Backoff, RetryPolicy};
use serde::de::DeserializeOwned;
use vendor_http::{HttpSettings, RateLimiter, Url, VendorClient};

use crate::UpstreamError;

/// A page is retried a few times (a 429's `Retry-After` honoured up to a minute) before the
/// pull fails as transient.
pub(crate) const RETRY: RetryPolicy = RetryPolicy::limited(
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
    5,
)
.with_retry_after_max(Duration::from_secs(60));

/// An upstream's base URL and its rate-limited HTTP client, built the same way by every
/// upstream client. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) http: VendorClient,
    pub(crate) base: Url,
}

impl Endpoint {
    /// `base_url` (a trailing `/` ignored) with a limit of `rate` calls per second.
    pub(crate) fn new(
        upstream: &'static str,
        base_url: &str,
        rate: f64,
        burst: u32,
    ) -> Result<Self, UpstreamError> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| UpstreamError::Config(format!("{upstream} base_url {base_url:?}: {e}")))?;
        let http = VendorClient::new(upstream, HttpSettings::default())?
            .with_rate_limit(Arc::new(RateLimiter::new(rate, burst.max(1))));
        Ok(Endpoint { http, base })
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }
}

/// Sends the request `build` makes (again for each retry) and decodes its JSON body.
pub(crate) async fn get_json<T: DeserializeOwned>(
    http: &VendorClient,
    operation: &'static str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<T, UpstreamError> {
    retrying(
        http,
        operation,
        || http.send_json::<T>(operation, build()),
        |_| true,
    )
    .await
}

/// Runs `call` until it succeeds, retrying transient failures that `may_retry` allows after
/// the server's `Retry-After` (capped), else with exponential backoff, at most [`RETRY`] times.
pub(crate) async fn retrying<T, F, Fut>(
    http: &VendorClient,
    operation: &'static str,
    call: F,
    may_retry: impl Fn(&vendor_http::VendorError) -> bool,
) -> Result<T, UpstreamError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, vendor_http::VendorError>>,
{
    let mut attempts = RETRY.attempts();
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if !may_retry(&e) => return Err(e.into()),
            Err(e) => match attempts.next_wait_after(&e) {
                Some(wait) => {
                    tracing::info!(upstream = http.vendor(), operation, ?wait, error = %e, "upstream call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                None => return Err(e.into()),
            },
        }
    }
}
