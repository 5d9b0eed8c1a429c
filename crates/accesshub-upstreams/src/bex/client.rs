//! BEX PMS API v3 client: JSON:API over HTTPS with `x-api-key`, paged by `page[number]` /
//! `page[size]` following `links.next` until it is null, filters `filter[attr]=a..b`.
//! Throttled at 500 calls per 15 minutes (documented 2020): a client-side rate limit keeps us
//! under it, and a 429 (or 5xx, timeout) is retried after the server's `Retry-After`, else with
//! exponential backoff (accesshub-retry), a few times before the pull fails (transient).

use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, de::DeserializeOwned};
use vendor_http::{Method, Url, path_segment};

use super::{AdministrationResource, GuestResource, RentableResource, ReservationResource};
use crate::UpstreamError;

/// Metrics and error label.
pub const UPSTREAM: &str = "bex";
/// Production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.bookingexperts.nl";
/// Documented throttle: 500 calls per 15 minutes.
pub const DEFAULT_RATE_PER_SEC: f64 = 500.0 / 900.0;
/// JSON:API media type.
pub const JSON_API: &str = "application/vnd.api+json";

/// A JSON:API list document.
#[derive(Debug, Deserialize)]
pub struct ListDoc<T> {
    /// The page's resources.
    pub data: Vec<T>,
    /// Paging links.
    #[serde(default)]
    pub links: Links,
}

/// `links` of a list document.
#[derive(Debug, Default, Deserialize)]
pub struct Links {
    /// The next page, `null` on the last.
    #[serde(default)]
    pub next: Option<String>,
}

/// Which reservations of an administration to list.
#[derive(Debug, Clone)]
pub struct ReservationQuery {
    /// `filter[start_date]=from..to` (inclusive dates).
    pub start_date: Option<(NaiveDate, NaiveDate)>,
    /// `page[size]`.
    pub page_size: u32,
}

impl Default for ReservationQuery {
    fn default() -> Self {
        ReservationQuery {
            start_date: None,
            page_size: 100,
        }
    }
}

/// A BEX API client for one organization's API key. Cheap to clone.
#[derive(Clone)]
pub struct BexClient {
    ep: crate::http::Endpoint,
    api_key: Arc<str>,
}

impl std::fmt::Debug for BexClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BexClient")
            .field("base", &self.ep.base.as_str())
            .finish_non_exhaustive()
    }
}

impl BexClient {
    /// A client for `base_url` (e.g. [`DEFAULT_BASE_URL`]; `/v3/...` is appended) with the
    /// documented rate limit.
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, UpstreamError> {
        Self::with_rate(base_url, api_key, DEFAULT_RATE_PER_SEC, 20)
    }

    /// A client with its own rate (calls per second, burst): simulators and benchmarks.
    pub fn with_rate(
        base_url: &str,
        api_key: &str,
        rate: f64,
        burst: u32,
    ) -> Result<Self, UpstreamError> {
        if api_key.trim().is_empty() {
            return Err(UpstreamError::Config("bex api key is empty".into()));
        }
        let ep = crate::http::Endpoint::new(UPSTREAM, base_url, rate, burst)?;
        Ok(BexClient {
            ep,
            api_key: api_key.into(),
        })
    }

    /// A client from a tenant's stored credentials (the API key); `rate_per_sec` / `burst`
    /// in the options override the documented throttle. Shared by the Sync pull and the
    /// admin API's look-ups.
    pub fn from_credentials(creds: &crate::UpstreamCredentials) -> Result<Self, UpstreamError> {
        let (rate, burst) = creds.rate_options(DEFAULT_RATE_PER_SEC);
        Self::with_rate(&creds.base_url, &creds.secret, rate, burst)
    }

    /// GETs one JSON:API document, retrying transient failures (429 after `Retry-After`).
    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &str,
        query: &[(String, String)],
    ) -> Result<T, UpstreamError> {
        crate::http::get_json(&self.ep.http, operation, || {
            self.ep
                .http
                .request(Method::GET, url)
                .header("x-api-key", &*self.api_key)
                .header("accept", JSON_API)
                .query(query)
        })
        .await
    }

    /// A `links.next` must stay on the configured API (it carries our API key).
    fn check_link(&self, link: &str) -> Result<(), UpstreamError> {
        let ok = Url::parse(link).is_ok_and(|u| {
            u.scheme() == self.ep.base.scheme()
                && u.host_str() == self.ep.base.host_str()
                && u.port_or_known_default() == self.ep.base.port_or_known_default()
        });
        if ok {
            Ok(())
        } else {
            Err(UpstreamError::ForeignLink {
                upstream: UPSTREAM,
                link: link.chars().take(200).collect(),
            })
        }
    }

    /// Every page of a list, handed to `each` as it arrives (memory stays one page).
    async fn pages<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        first: String,
        query: Vec<(String, String)>,
        mut each: impl FnMut(Vec<T>) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError> {
        let mut doc: ListDoc<T> = self.get(operation, &first, &query).await?;
        loop {
            let next = doc.links.next.take();
            each(doc.data)?;
            match next {
                Some(link) => {
                    self.check_link(&link)?;
                    doc = self.get(operation, &link, &[]).await?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Every page of a list, collected (short lists: administrations, rentables, guests).
    async fn all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        first: String,
        query: Vec<(String, String)>,
    ) -> Result<Vec<T>, UpstreamError> {
        let mut out = Vec::new();
        self.pages(operation, first, query, |page| {
            out.extend(page);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// `GET /v3/administrations`: the administrations the key reaches.
    pub async fn administrations(&self) -> Result<Vec<AdministrationResource>, UpstreamError> {
        self.all(
            "list_administrations",
            self.ep.url("/v3/administrations"),
            vec![("page[size]".into(), "100".into())],
        )
        .await
    }

    /// `GET /v3/administrations/{id}/reservations` with the query's filters, page by page.
    pub async fn reservations(
        &self,
        administration: &str,
        q: &ReservationQuery,
        each: impl FnMut(Vec<ReservationResource>) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError> {
        let seg = path_segment(administration)?;
        let mut query = vec![
            ("page[number]".to_owned(), "1".to_owned()),
            (
                "page[size]".to_owned(),
                q.page_size.clamp(1, 100).to_string(),
            ),
        ];
        if let Some((from, to)) = q.start_date {
            query.push(("filter[start_date]".into(), format!("{from}..{to}")));
        }
        self.pages(
            "list_reservations",
            self.ep
                .url(&format!("/v3/administrations/{seg}/reservations")),
            query,
            each,
        )
        .await
    }

    /// `GET /v3/administrations/{id}/rentables`: the administration's accommodation objects,
    /// for mapping object ids to lock-system room numbers.
    pub async fn rentables(
        &self,
        administration: &str,
    ) -> Result<Vec<RentableResource>, UpstreamError> {
        let seg = path_segment(administration)?;
        self.all(
            "list_rentables",
            self.ep.url(&format!("/v3/administrations/{seg}/rentables")),
            vec![("page[size]".into(), "100".into())],
        )
        .await
    }

    /// `GET /v3/administrations/{id}/reservations/{rid}/guests`.
    pub async fn guests(
        &self,
        administration: &str,
        reservation: &str,
    ) -> Result<Vec<GuestResource>, UpstreamError> {
        let (a, r) = (path_segment(administration)?, path_segment(reservation)?);
        self.all(
            "list_guests",
            self.ep
                .url(&format!("/v3/administrations/{a}/reservations/{r}/guests")),
            vec![],
        )
        .await
    }
}
