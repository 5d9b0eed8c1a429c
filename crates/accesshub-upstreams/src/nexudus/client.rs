//! Nexudus REST client. Authentication as documented (developers.nexudus.com, REST API
//! "Authentication": "Bearer token (recommended) and Basic Auth"): by default a bearer token
//! from `POST /api/token` (form-encoded `grant_type=password&username&password`, answered
//! `{access_token, token_type: "bearer", expires_in, refresh_token}`), cached, renewed before
//! it expires and once more when a call is answered 401; or, with `auth = basic`, HTTP Basic
//! with the same user and password. Accounts with two-factor authentication (the token
//! endpoint's `totp`) cannot be used by a server: give the integration its own user.
//! Search pages are walked while `HasNextPage`,
//! filters as query parameters (`CoworkerTimePass_Business`, range bounds
//! `from_CoworkerTimePass_UpdatedOn` in `YYYY-MM-DDTHH:mm`). 429 / 5xx / timeouts are retried
//! after `Retry-After`, else with backoff (shared with the BEX client).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use vendor_http::{AuthedClient, Method, TokenSource, path_segment};

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

/// How the client authenticates (documented: both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// A bearer token from `POST /api/token` (Nexudus recommends it for server-to-server).
    #[default]
    Token,
    /// HTTP Basic with the user and password.
    Basic,
}

impl std::str::FromStr for Auth {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "token" => Ok(Auth::Token),
            "basic" => Ok(Auth::Basic),
            other => Err(UpstreamError::Config(format!(
                "nexudus auth {other:?}: expected token or basic"
            ))),
        }
    }
}

/// A Nexudus API client for one account. Cheap to clone (clones share the token).
#[derive(Clone)]
pub struct NexudusClient {
    ep: crate::http::Endpoint,
    user: Arc<str>,
    password: Arc<str>,
    /// Bearer-token calls (`None`: HTTP Basic).
    authed: Option<AuthedClient>,
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
    /// A client for `base_url` with `secret` = `user:password`, authenticating with a bearer
    /// token (see [`NexudusClient::with_auth`]).
    pub fn new(base_url: &str, secret: &str, rate: f64, burst: u32) -> Result<Self, UpstreamError> {
        Self::with_auth(base_url, secret, rate, burst, Auth::Token)
    }

    /// A client authenticating the way `auth` says.
    pub fn with_auth(
        base_url: &str,
        secret: &str,
        rate: f64,
        burst: u32,
        auth: Auth,
    ) -> Result<Self, UpstreamError> {
        let (user, password) = secret
            .split_once(':')
            .filter(|(u, _)| !u.is_empty())
            .ok_or_else(|| {
                UpstreamError::Config("nexudus credentials must be user:password".into())
            })?;
        let ep = crate::http::Endpoint::new(UPSTREAM, base_url, rate, burst)?;
        let authed = (auth == Auth::Token).then(|| {
            let tokens =
                TokenSource::password(ep.http.clone(), &ep.url("/api/token"), user, password);
            AuthedClient::with_tokens(ep.http.clone(), tokens)
        });
        Ok(NexudusClient {
            ep,
            user: user.into(),
            password: password.into(),
            authed,
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &str,
        query: &[(String, String)],
    ) -> Result<T, UpstreamError> {
        let request = || {
            self.ep
                .http
                .request(Method::GET, url)
                .header("accept", "application/json")
                .query(query)
        };
        match &self.authed {
            // A 401 renews the token once inside `send_json`; 429/5xx are retried here.
            Some(authed) => {
                crate::http::retrying(
                    &self.ep.http,
                    operation,
                    || authed.send_json(operation, |_| request()),
                    |_| true,
                )
                .await
            }
            None => {
                crate::http::get_json(&self.ep.http, operation, || {
                    request().basic_auth(&*self.user, Some(&*self.password))
                })
                .await
            }
        }
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
