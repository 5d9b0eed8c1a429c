//! HTTP plumbing every vendor client shares, so timeouts, trace propagation, metrics and —
//! above all — the transient/permanent classification of HTTP outcomes are decided once
//! (ARCHITECTURE.md principles 4 and 7), not re-invented per vendor.
//!
//! - [`VendorClient`]: a reqwest client with timeouts that injects `traceparent`, records
//!   `accesshub_vendor_request_duration_seconds{vendor,operation}` and
//!   `accesshub_vendor_errors_total{vendor,class}`, and turns every non-2xx into a [`VendorError`];
//!   [`VendorClient::send_bytes`] is the same call for transports that read every answer
//!   themselves (SOAP).
//! - [`class_of_status`] / [`retry_after`]: HTTP status → transient/permanent and the
//!   `Retry-After` delay, for every caller that classifies an HTTP answer.
//! - [`TokenSource`] / [`AuthedClient`]: OAuth2 client-credentials with a cached token that is
//!   refreshed before expiry and a single retry on 401.
//! - [`RateLimiter`]: a token bucket, one per connection, applied to every call.
//! - [`scrub`]: the one way upstream text (error bodies, faults) becomes a message.
//! - [`install_egress_policy`]: the deployment's egress policy, enforced at connect time.

mod egress;
mod error;
mod limiter;
mod metrics;
mod oauth;
mod scrub;

use std::{sync::Arc, time::Duration, time::Instant};

use accesshub_domain::{Classify as _, ErrorClass};
use tracing::Instrument as _;

pub use accesshub_domain::egress::EgressPolicy;
pub use bytes::Bytes;
pub use egress::{EgressRefused, install_egress_policy, installed_egress_policy};
pub use error::{VendorError, class_of_status, parse_retry_after, retry_after};
pub use limiter::RateLimiter;
pub use metrics::register_metrics;
pub use oauth::{AuthedClient, TokenSource, TokenSourceConfig};
pub use reqwest::{Method, Response, StatusCode, Url};
pub use scrub::{MAX_MESSAGE_CHARS, scrub};

/// Timeouts of vendor calls. A hung vendor must become a (transient) timeout, never a stuck
/// worker.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// A vendor's HTTP client. Cheap to clone (reqwest's pool is shared).
#[derive(Clone, Debug)]
pub struct VendorClient {
    http: reqwest::Client,
    vendor: &'static str,
    limiter: Option<Arc<RateLimiter>>,
    egress: Option<Arc<EgressPolicy>>,
}

impl VendorClient {
    /// A client for `vendor` (the metrics label, e.g. `tapkey`), enforcing the installed
    /// egress policy ([`install_egress_policy`]) if there is one.
    pub fn new(vendor: &'static str, settings: HttpSettings) -> Result<Self, VendorError> {
        Self::build(vendor, settings, installed_egress_policy().cloned())
    }

    /// A client enforcing `policy` whatever is installed: every request URL, redirect target
    /// and resolved address is checked, and a refusal is a permanent error.
    pub fn with_egress_policy(
        vendor: &'static str,
        settings: HttpSettings,
        policy: EgressPolicy,
    ) -> Result<Self, VendorError> {
        Self::build(vendor, settings, Some(policy))
    }

    fn build(
        vendor: &'static str,
        settings: HttpSettings,
        egress: Option<EgressPolicy>,
    ) -> Result<Self, VendorError> {
        Self::build_with_lookup(vendor, settings, egress, egress::system_lookup())
    }

    fn build_with_lookup(
        vendor: &'static str,
        settings: HttpSettings,
        egress: Option<EgressPolicy>,
        lookup: egress::Lookup,
    ) -> Result<Self, VendorError> {
        let egress = egress.map(Arc::new);
        let mut builder = reqwest::Client::builder();
        if let Some(policy) = &egress {
            let redirects = Arc::clone(policy);
            builder = builder
                .dns_resolver(egress::GuardedResolver {
                    policy: Arc::clone(policy),
                    lookup,
                })
                // A redirect is a new target: the same check as the first request.
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= 10 {
                        return attempt.error("too many redirects");
                    }
                    match egress::check_url(&redirects, attempt.url()) {
                        Ok(()) => attempt.follow(),
                        Err(e) => attempt.error(e),
                    }
                }));
        }
        let http = builder
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            // No cap on idle connections: a cap below the worker's lanes (256 concurrent
            // calls) closed every connection beyond it after its call and opened a new one for
            // the next (TCP set-up, on a vendor TLS as well, for ~10 % of calls). The pool
            // is bounded by the lanes anyway, and idle connections expire (90 s).
            .build()
            .map_err(|e| VendorError::Config(format!("HTTP client: {e}")))?;
        Ok(VendorClient {
            http,
            vendor,
            limiter: None,
            egress,
        })
    }

    /// Every call through this client first takes a token from `limiter` (the connection's
    /// rate limit, shared by all clients of that connection).
    pub fn with_rate_limit(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The vendor label.
    pub fn vendor(&self) -> &'static str {
        self.vendor
    }

    /// The underlying reqwest client, to build requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Starts a request.
    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request in a child span carrying `traceparent`, records metrics and returns
    /// the response only when it is 2xx; anything else is a classified [`VendorError`].
    pub async fn send(
        &self,
        operation: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<Response, VendorError> {
        let resp = self.send_raw(operation, req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let err = VendorError::from_response(self.vendor, operation, resp).await;
        metrics::error(self.vendor, err.class());
        Err(err)
    }

    /// Like [`send`](Self::send) but hands back any HTTP answer (for callers that map some
    /// statuses themselves, e.g. 409 "already there"); transport errors still fail. Rate limit,
    /// span, `traceparent` and the duration metric apply as for [`send`](Self::send); a non-2xx
    /// answer is the caller's to count (see [`send_bytes`](Self::send_bytes)).
    pub async fn send_raw(
        &self,
        operation: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<Response, VendorError> {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        let span = tracing::info_span!(
            "vendor.request",
            vendor = self.vendor,
            operation,
            http.status_code = tracing::field::Empty
        );
        let mut request = req
            .build()
            .map_err(|e| VendorError::Config(format!("{} {operation}: {e}", self.vendor)))?;
        if let Some(policy) = &self.egress
            && let Err(e) = egress::check_url(policy, request.url())
        {
            let err = VendorError::Permanent(format!("{} {operation}: {e}", self.vendor));
            metrics::error(self.vendor, err.class());
            return Err(err);
        }
        span.in_scope(|| accesshub_telemetry::inject_http(request.headers_mut()));
        let start = Instant::now();
        let result = self.http.execute(request).instrument(span.clone()).await;
        metrics::duration(self.vendor, operation, start.elapsed());
        match result {
            Ok(resp) => {
                span.record("http.status_code", resp.status().as_u16());
                Ok(resp)
            }
            Err(e) => {
                let err = VendorError::from_reqwest(self.vendor, operation, &e);
                metrics::error(self.vendor, err.class());
                tracing::debug!(parent: &span, error = %err, "vendor call failed");
                Err(err)
            }
        }
    }

    /// The entry point of non-JSON transports (SOAP): sends `req` — any method, body, content
    /// type and headers (e.g. `POST`, `text/xml`, `SOAPAction`) — through
    /// [`send_raw`](Self::send_raw), reads the whole body and hands back status, headers and
    /// body whatever the status, because a SOAP fault arrives as HTTP 500 with an envelope the
    /// caller must read. A non-2xx answer is counted in `accesshub_vendor_errors_total` with
    /// [`class_of_status`], as [`send`](Self::send) counts it; a body that cannot be read is a
    /// classified transport [`VendorError`] (counted too). Classify with [`class_of_status`]
    /// and [`RawReply::retry_after`] when the body says nothing more specific.
    pub async fn send_bytes(
        &self,
        operation: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<RawReply, VendorError> {
        let resp = self.send_raw(operation, req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let err = VendorError::from_reqwest(self.vendor, operation, &e);
                metrics::error(self.vendor, err.class());
                return Err(err);
            }
        };
        if !status.is_success() {
            metrics::error(self.vendor, class_of_status(status.as_u16()));
        }
        Ok(RawReply {
            status,
            headers,
            body,
        })
    }

    /// [`send`](Self::send) and decode a JSON body.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, VendorError> {
        let resp = self.send(operation, req).await?;
        decode_json(self.vendor, operation, resp).await
    }
}

/// `value` as one URL path segment: every byte outside the unreserved set is
/// percent-encoded, so operator or upstream input (a site id) cannot add segments, a query
/// or a fragment; `.` and `..` (which URL parsers resolve, even encoded) are refused.
pub fn path_segment(value: &str) -> Result<String, VendorError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(VendorError::Permanent(format!(
            "{value:?} is not a valid identifier in a vendor URL"
        )));
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// A whole vendor answer of any status, from [`VendorClient::send_bytes`].
#[derive(Debug, Clone)]
pub struct RawReply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl RawReply {
    /// The class of a non-2xx status ([`class_of_status`]); `None` for 2xx.
    pub fn status_class(&self) -> Option<ErrorClass> {
        (!self.status.is_success()).then(|| class_of_status(self.status.as_u16()))
    }

    /// The delay the vendor's `Retry-After` asks for ([`retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

/// Decodes a JSON body; a body that does not match is a permanent [`VendorError::Decode`]
/// (the vendor changed its format: retrying will not help).
pub async fn decode_json<T: serde::de::DeserializeOwned>(
    vendor: &'static str,
    operation: &'static str,
    resp: Response,
) -> Result<T, VendorError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| VendorError::from_reqwest(vendor, operation, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| VendorError::Decode {
        vendor,
        operation,
        // serde quotes the offending input, which is the vendor's body.
        message: scrub(&e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_segments_cannot_escape_their_place() {
        assert_eq!(path_segment("site-1").unwrap(), "site-1");
        assert_eq!(path_segment("../../x?").unwrap(), "..%2F..%2Fx%3F");
        assert_eq!(path_segment("a b/#é").unwrap(), "a%20b%2F%23%C3%A9");
        for bad in ["", ".", ".."] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
        let url = Url::parse(&format!(
            "https://api.example/v1/sites/{}/time-restrictions",
            path_segment("../../x?").unwrap()
        ))
        .unwrap();
        assert_eq!(url.path(), "/v1/sites/..%2F..%2Fx%3F/time-restrictions");
        assert_eq!(url.query(), None);
    }

    /// A vendor host name that resolves to 127.0.0.1 (DNS rebinding, or a record pointing
    /// inside): the client asks the resolver for every new connection and refuses the address
    /// unless the allow-list names the host, permanently. `lookup` stands in for DNS only.
    #[tokio::test]
    async fn a_host_name_resolving_to_loopback_is_refused_at_every_new_connection() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (addr, mut seen) = accesshub_testkit::http::recording_server(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned();
            2
        ])
        .await;
        let lookups = Arc::new(AtomicUsize::new(0));
        let lookup = |n: Arc<AtomicUsize>| -> egress::Lookup {
            Arc::new(move |host: String| {
                n.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    assert_eq!(host, "vendor.example");
                    Ok(vec![addr])
                })
            })
        };
        let settings = HttpSettings {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        };
        // Strict: https to a public-looking name passes the URL check; its address does not.
        let strict = VendorClient::build_with_lookup(
            "test",
            settings,
            Some(EgressPolicy::strict()),
            lookup(Arc::clone(&lookups)),
        )
        .unwrap();
        let url = format!("https://vendor.example:{}/x", addr.port());
        let e = strict
            .send("op", strict.request(Method::GET, &url))
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
        assert!(e.to_string().contains("egress refused"), "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        assert!(seen.try_recv().is_err(), "the listener was contacted");

        // Allowed by name: connects; the server closes each connection, and the next request's
        // new connection is resolved (and judged) again.
        let lookups = Arc::new(AtomicUsize::new(0));
        let allowing = VendorClient::build_with_lookup(
            "test",
            settings,
            Some("http://vendor.example:*".parse().unwrap()),
            lookup(Arc::clone(&lookups)),
        )
        .unwrap();
        let url = format!("http://vendor.example:{}/x", addr.port());
        for _ in 0..2 {
            allowing
                .send("op", allowing.request(Method::GET, &url))
                .await
                .unwrap();
            assert!(seen.recv().await.is_some());
        }
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            2,
            "one lookup per connection"
        );
    }
}
