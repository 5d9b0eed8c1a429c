//! Sessions: an admin-API token is exchanged once (login) for a random session id in an
//! HttpOnly, SameSite=Strict cookie; the session lives in Postgres (`console_sessions`) with
//! an expiry, so every admin replica knows it and a restart does not log operators out. Only
//! hashes are stored. Each request re-checks that the token it was opened with is neither
//! revoked nor expired (`api_tokens`), so revoking a token ends its console sessions too.
//!
//! Every session has a CSRF token; every state-changing request must carry it (form field
//! `_csrf` or header `X-CSRF-Token`, which htmx sends) or it is refused (403).

use std::{collections::BTreeSet, future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::{ConsoleState, error::ConsoleError};

/// Cookie name of the session id.
pub const COOKIE: &str = "accesshub_console";
/// Form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
/// Header carrying the CSRF token (htmx requests).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form body the CSRF check reads.
const MAX_FORM: usize = 256 * 1024;

pub use accesshub_connections::Role;

/// Who a token belongs to, as the admin service resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Token id (audit records).
    pub token_id: Uuid,
    /// Token name (audit records, the header).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenants in scope; `None` for every tenant.
    pub tenants: Option<BTreeSet<String>>,
    /// When the token stops working (the session never outlives it).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Future returned by a [`TokenResolver`].
pub type ResolveFuture = Pin<Box<dyn Future<Output = Result<Option<Operator>, String>> + Send>>;

/// Resolves an admin-API token to its operator (`None`: unknown, revoked or expired); the
/// admin service passes its own resolution, so the console accepts exactly the API's tokens.
pub type TokenResolver = Arc<dyn Fn(String) -> ResolveFuture + Send + Sync>;

/// The logged-in operator of a request (in request extensions).
#[derive(Debug, Clone)]
pub struct Session {
    /// Token id.
    pub token_id: Uuid,
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenants in scope; `None` for every tenant.
    pub tenants: Option<BTreeSet<String>>,
    /// The session's CSRF token, put into every form.
    pub csrf: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// Whether the role includes `role` (to hide controls).
    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }

    /// 403 unless the role includes `role` (server-side, whatever the page showed).
    pub fn require(&self, role: Role, what: &str) -> Result<(), ConsoleError> {
        if self.can(role) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!(
                "Your token \"{}\" has the {} role; {what} needs the {} role.",
                self.name,
                self.role.as_str(),
                role.as_str()
            )))
        }
    }

    /// Whether `tenant` is in scope.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }

    /// 403 unless `tenant` is in scope (checked before looking anything up).
    pub fn require_tenant(&self, tenant: &str) -> Result<(), ConsoleError> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!(
                "Your token \"{}\" is not allowed to see tenant \"{tenant}\".",
                self.name
            )))
        }
    }

    /// The tenant filter for queries (`None`: every tenant).
    pub fn tenant_filter(&self) -> Option<Vec<String>> {
        self.tenants.as_ref().map(|t| t.iter().cloned().collect())
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Opens a session for `op` (who logged in with `token`); returns the cookie value. Expired
/// sessions are swept on the way.
pub async fn open(
    state: &ConsoleState,
    token: &str,
    op: &Operator,
) -> Result<(String, DateTime<Utc>), ConsoleError> {
    let id = random_token();
    let ttl = chrono::Duration::from_std(state.config.session_ttl)
        .unwrap_or_else(|_| chrono::Duration::hours(8));
    let mut expires = Utc::now() + ttl;
    if let Some(t) = op.expires_at {
        expires = expires.min(t);
    }
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < now()")
        .execute(&state.pool)
        .await?;
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, token_hash, token_id, name, role, tenants, csrf, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(sha256_hex(&id))
    .bind(sha256_hex(token))
    .bind(op.token_id)
    .bind(&op.name)
    .bind(op.role.as_str())
    .bind(op.tenants.as_ref().map(|t| t.iter().cloned().collect::<Vec<_>>()))
    .bind(random_token())
    .bind(expires)
    .execute(&state.pool)
    .await?;
    Ok((id, expires))
}

/// Ends the session with cookie value `id`.
pub async fn close(state: &ConsoleState, id: &str) -> Result<(), ConsoleError> {
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(sha256_hex(id))
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// The live session with cookie value `id`: unexpired, and opened with a token that is still
/// neither revoked nor expired.
pub async fn load(state: &ConsoleState, id: &str) -> Result<Option<Session>, ConsoleError> {
    let row = sqlx::query(
        "SELECT s.token_id, s.name, s.role, s.tenants, s.csrf, s.expires_at
           FROM console_sessions s
          WHERE s.id_hash = $1 AND s.expires_at > now()
            AND NOT EXISTS (SELECT 1 FROM api_tokens t
                             WHERE t.token_hash = s.token_hash
                               AND (t.revoked_at IS NOT NULL
                                    OR (t.expires_at IS NOT NULL AND t.expires_at <= now())))",
    )
    .bind(sha256_hex(id))
    .fetch_optional(&state.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let role: String = r.try_get("role")?;
    let tenants: Option<Vec<String>> = r.try_get("tenants")?;
    Ok(Some(Session {
        token_id: r.try_get("token_id")?,
        name: r.try_get("name")?,
        // Unknown role text cannot be stored (CHECK); viewer is the safe reading anyway.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        tenants: tenants.map(|t| t.into_iter().collect()),
        csrf: r.try_get("csrf")?,
        expires_at: r.try_get("expires_at")?,
    }))
}

/// The session cookie's value, if the request has one.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session (path `/console`, HttpOnly, SameSite=Strict; `Secure`
/// when the console is served over TLS, [`crate::ConsoleConfig::secure_cookie`]).
pub fn set_cookie(state: &ConsoleState, id: &str, max_age: Duration) -> String {
    format!(
        "{COOKIE}={id}; Path={}; HttpOnly; SameSite=Strict; Max-Age={}{}",
        crate::PREFIX,
        max_age.as_secs(),
        if state.config.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!(
        "{COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        crate::PREFIX
    )
}

#[derive(serde::Deserialize)]
struct CsrfOnly {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Middleware on every page but login and static files: without a live session a page
/// redirects to the login (htmx: `HX-Redirect`); a state-changing request without the
/// session's CSRF token is refused with 403 before any handler runs.
pub async fn require_session(
    State(state): State<ConsoleState>,
    req: Request,
    next: Next,
) -> Response {
    let session = match cookie_value(req.headers()) {
        Some(id) => match load(&state, &id).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let Some(session) = session else {
        let login = format!("{}/login", crate::PREFIX);
        if is_htmx(req.headers()) {
            return (StatusCode::UNAUTHORIZED, [("hx-redirect", login)]).into_response();
        }
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Redirect::to(&login).into_response();
        }
        return ConsoleError::Unauthorized.into_response();
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let req = if safe {
        req
    } else {
        match check_csrf(req, &session.csrf).await {
            Ok(req) => req,
            Err(e) => return e.into_response(),
        }
    };
    let mut req = req;
    req.extensions_mut().insert(session);
    next.run(req).await
}

async fn check_csrf(req: Request, expected: &str) -> Result<Request, ConsoleError> {
    let header_token = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| ConsoleError::BadRequest("The form is too large.".into()))?;
    let form_token = serde_urlencoded::from_bytes::<CsrfOnly>(&bytes)
        .ok()
        .and_then(|f| f.csrf);
    let given = header_token.or(form_token).unwrap_or_default();
    if given.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ConsoleError::Csrf);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
