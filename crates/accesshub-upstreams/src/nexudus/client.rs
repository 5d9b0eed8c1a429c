//! Nexudus REST client: HTTP Basic (the account's user and password; the documented
//! alternative, `POST /api/token`, is not used), search pages walked while `HasNextPage`,
//! filters as query parameters (`CoworkerTimePass_Business`, range bounds
//! `from_CoworkerTimePass_UpdatedOn` in `YYYY-MM-DDTHH:mm`). 429 / 5xx / timeouts are retried
//! after `Retry-After`, else with backoff (shared with the BEX client).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use vendor_http::{Method, path_segment};

use super::{Coworker, SearchPage, TimePass};
use crate::UpstreamError;

/// Metrics and error label.
pub const UPSTREAM: &str = "nexudus";
/// Production base URL (`/api/...` is appended).
pub const DEFAULT_BASE_URL: &str = "https://spaces.nexudus.com";
/// Our client-side rate (Nexudus documents none).
pub const DEFAULT_RATE_PER_SEC: f64 = 5.0;
/// Page size we ask for.
pub const PAGE_SIZE: u32 = 100;

/// Which passes to list.
#[derive(Debug, Clone, Default)]
pub struct PassQuery {
    /// `CoworkerTimePass_Business`.
    pub business: Option<String>,
    /// `from_CoworkerTimePass_UpdatedOn`: incremental polls.
    pub updated_since: Option<DateTime<Utc>>,
    /// `from_CoworkerTimePass_ExpireDate`: only passes not yet expired.
    pub expiring_after: Option<DateTime<Utc>>,
    /// `CoworkerTimePass_Coworker`: one holder's passes.
    pub coworker: Option<String>,
}

/// A Nexudus API client for one account. Cheap to clone.
#[derive(Clone)]
pub struct NexudusClient {
    ep: crate::http::Endpoint,
    user: Arc<str>,
    password: Arc<str>,
}

impl std::fmt::Debug for NexudusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexudusClient")
            .field("base", &self.ep.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Nexudus's range-bound format.
fn minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

impl NexudusClient {
    /// A client for `base_url` with `secret` = `user:password`.
    pub fn new(base_url: &str, secret: &str, rate: f64, burst: u32) -> Result<Self, UpstreamError> {
        let (user, password) = secret
            .split_once(':')
            .filter(|(u, _)| !u.is_empty())
            .ok_or_else(|| {
                UpstreamError::Config("nexudus credentials must be user:password".into())
            })?;
        let ep = crate::http::Endpoint::new(UPSTREAM, base_url, rate, burst)?;
        Ok(NexudusClient {
            ep,
            user: user.into(),
            password: password.into(),
        })
    }

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
                .basic_auth(&*self.user, Some(&*self.password))
                .header("accept", "application/json")
                .query(query)
        })
        .await
    }

    /// `GET /api/billing/coworkertimepasses`, every page, oldest change first.
    pub async fn time_passes(&self, q: &PassQuery) -> Result<Vec<TimePass>, UpstreamError> {
        let mut base = vec![
            ("size".to_owned(), PAGE_SIZE.to_string()),
            ("orderBy".to_owned(), "UpdatedOn".to_owned()),
            ("dir".to_owned(), "Ascending".to_owned()),
        ];
        if let Some(b) = &q.business {
            base.push(("CoworkerTimePass_Business".into(), b.clone()));
        }
        if let Some(c) = &q.coworker {
            base.push(("CoworkerTimePass_Coworker".into(), c.clone()));
        }
        if let Some(t) = q.updated_since {
            base.push(("from_CoworkerTimePass_UpdatedOn".into(), minute(t)));
        }
        if let Some(t) = q.expiring_after {
            base.push(("from_CoworkerTimePass_ExpireDate".into(), minute(t)));
        }
        let url = self.ep.url("/api/billing/coworkertimepasses");
        let mut out = Vec::new();
        for page in 1.. {
            let mut query = base.clone();
            query.push(("page".into(), page.to_string()));
            let p: SearchPage<TimePass> = self.get("list_time_passes", &url, &query).await?;
            // An empty page that claims a next one would page forever.
            let done = !p.has_next_page || p.records.is_empty();
            out.extend(p.records);
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /api/spaces/coworkers/{id}`.
    pub async fn coworker(&self, id: &str) -> Result<Coworker, UpstreamError> {
        let url = self
            .ep
            .url(&format!("/api/spaces/coworkers/{}", path_segment(id)?));
        self.get("get_coworker", &url, &[]).await
    }
}
