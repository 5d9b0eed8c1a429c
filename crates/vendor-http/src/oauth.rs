//! OAuth2 tokens, shared by Tapkey, CloudPass and iPassan (client credentials) and the
//! Nexudus upstream (resource-owner password grant, `POST /api/token`): one cached token per
//! connection, refreshed shortly before it expires, and a single retry when the server
//! answers 401 anyway (revoked or clock-skewed token).

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use accesshub_domain::Classify as _;
use reqwest::{
    RequestBuilder, Response, StatusCode,
    header::{AUTHORIZATION, HeaderValue},
};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::{VendorClient, VendorError, decode_json, metrics};

/// Where and how to get a token.
#[derive(Clone)]
pub struct TokenSourceConfig {
    /// Token endpoint URL.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (never logged).
    pub client_secret: String,
    /// Space-separated scopes, if the vendor wants them.
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSourceConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Cached {
    token: String,
    /// `Bearer <token>`, built once per token instead of once per request.
    header: HeaderValue,
    refresh_at: Instant,
}

/// Which OAuth2 grant a [`TokenSource`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// `grant_type=client_credentials&client_id&client_secret[&scope]`.
    ClientCredentials,
    /// `grant_type=password&username&password` (`client_id` / `client_secret` of the config
    /// hold the user name and password).
    Password,
}

/// A cached token. Requests read it without waiting (a read lock and an `Arc` clone);
/// concurrent callers that find it missing or stale share one refresh.
pub struct TokenSource {
    client: VendorClient,
    cfg: TokenSourceConfig,
    grant: Grant,
    cache: RwLock<Option<Arc<Cached>>>,
    refresh: Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A client-credentials token source fetching through `client`.
    pub fn new(client: VendorClient, cfg: TokenSourceConfig) -> Self {
        TokenSource {
            client,
            cfg,
            grant: Grant::ClientCredentials,
            cache: RwLock::new(None),
            refresh: Mutex::new(()),
        }
    }

    /// A resource-owner password token source (`grant_type=password&username&password`,
    /// form-encoded) fetching from `token_url` through `client`.
    pub fn password(client: VendorClient, token_url: &str, username: &str, password: &str) -> Self {
        TokenSource {
            client,
            cfg: TokenSourceConfig {
                token_url: token_url.to_owned(),
                client_id: username.to_owned(),
                client_secret: password.to_owned(),
                scope: None,
            },
            grant: Grant::Password,
            cache: RwLock::new(None),
            refresh: Mutex::new(()),
        }
    }

    /// The cached token while it is not due for refresh.
    fn current(&self) -> Option<Arc<Cached>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .cloned()
    }

    /// A valid token: the cached one, or a fresh one when it is missing or about to expire
    /// (refreshed at 90 % of its lifetime, at most one minute early).
    async fn fresh(&self) -> Result<Arc<Cached>, VendorError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _refreshing = self.refresh.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut form = match self.grant {
            Grant::ClientCredentials => vec![
                ("grant_type", "client_credentials"),
                ("client_id", self.cfg.client_id.as_str()),
                ("client_secret", self.cfg.client_secret.as_str()),
            ],
            Grant::Password => vec![
                ("grant_type", "password"),
                ("username", self.cfg.client_id.as_str()),
                ("password", self.cfg.client_secret.as_str()),
            ],
        };
        if let Some(s) = &self.cfg.scope {
            form.push(("scope", s.as_str()));
        }
        let req = self
            .client
            .request(reqwest::Method::POST, &self.cfg.token_url)
            .form(&form);
        let resp = self.client.send("token", req).await?;
        let t: TokenResponse = decode_json(self.client.vendor(), "token", resp).await?;
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(300));
        let early = (lifetime / 10).min(Duration::from_secs(60));
        let mut header =
            HeaderValue::from_str(&format!("Bearer {}", t.access_token)).map_err(|_| {
                VendorError::Decode {
                    vendor: self.client.vendor(),
                    operation: "token",
                    message: "the access token is not a valid header value".into(),
                }
            })?;
        header.set_sensitive(true);
        let c = Arc::new(Cached {
            token: t.access_token,
            header,
            refresh_at: Instant::now() + lifetime.saturating_sub(early),
        });
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// A valid token: the cached one, or a fresh one when it is missing or about to expire
    /// (refreshed at 90 % of its lifetime, at most one minute early).
    pub async fn token(&self) -> Result<String, VendorError> {
        Ok(self.fresh().await?.token.clone())
    }

    /// Forgets `token` if it is still the cached one (the vendor rejected it).
    pub async fn invalidate(&self, token: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_some_and(|c| c.token == token) {
            *cache = None;
        }
    }
}

/// A vendor client whose calls carry a bearer token from a [`TokenSource`].
#[derive(Clone, Debug)]
pub struct AuthedClient {
    client: VendorClient,
    tokens: Arc<TokenSource>,
}

impl AuthedClient {
    /// Wraps `client`; tokens come from `cfg` through the same client.
    pub fn new(client: VendorClient, cfg: TokenSourceConfig) -> Self {
        let tokens = Arc::new(TokenSource::new(client.clone(), cfg));
        AuthedClient { client, tokens }
    }

    /// Wraps `client` with its own token source (e.g. [`TokenSource::password`]).
    pub fn with_tokens(client: VendorClient, tokens: TokenSource) -> Self {
        AuthedClient {
            client,
            tokens: Arc::new(tokens),
        }
    }

    /// The plain client (for building URLs, vendor label).
    pub fn client(&self) -> &VendorClient {
        &self.client
    }

    /// Sends the request built by `build` with a bearer token; on 401 the token is refreshed
    /// and the call retried once. Returns any HTTP answer (the caller maps statuses).
    pub async fn send_raw(
        &self,
        operation: &'static str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, VendorError> {
        let token = self.tokens.fresh().await?;
        let resp = self
            .client
            .send_raw(
                operation,
                build(self.client.http()).header(AUTHORIZATION, token.header.clone()),
            )
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        tracing::debug!(
            vendor = self.client.vendor(),
            operation,
            "401: refreshing token once"
        );
        self.tokens.invalidate(&token.token).await;
        let token = self.tokens.fresh().await?;
        self.client
            .send_raw(
                operation,
                build(self.client.http()).header(AUTHORIZATION, token.header.clone()),
            )
            .await
    }

    /// [`send_raw`](Self::send_raw), and any non-2xx becomes a classified [`VendorError`].
    pub async fn send(
        &self,
        operation: &'static str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, VendorError> {
        let resp = self.send_raw(operation, build).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let err = VendorError::from_response(self.client.vendor(), operation, resp).await;
        metrics::error(self.client.vendor(), err.class());
        Err(err)
    }

    /// [`send`](Self::send) and decode JSON.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<T, VendorError> {
        let resp = self.send(operation, build).await?;
        decode_json(self.client.vendor(), operation, resp).await
    }
}
