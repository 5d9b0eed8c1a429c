//! Bearer tokens with scopes. Only the SHA-256 of a token is stored (`api_tokens`) or kept in
//! memory (the bootstrap token from `ACCESSHUB_ADMIN_TOKEN`); a token is shown once, when
//! created. `GET`/`HEAD` need `read` (or `admin`); every write and everything under `/tokens`
//! needs `admin`.

use axum::{
    extract::{Request, State},
    http::{Method, header},
    middleware::Next,
    response::Response,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::{PgPool, Row};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::{AdminState, error::ApiError};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read tenants, connections (redacted) and lookups.
    Read,
    /// Everything, including writes and token management.
    Admin,
}

impl Scope {
    /// Name stored in `api_tokens.scopes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The caller, put into request extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name (`bootstrap` for the environment token).
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Whether the principal may act with `scope` (`admin` implies `read`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token (`ahk_` + 32 random bytes, URL-safe base64).
pub fn generate_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("ahk_{}", URL_SAFE_NO_PAD.encode(raw))
}

/// A stored token, without its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Id (for revocation).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last authenticated request.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn info_from(row: &sqlx::postgres::PgRow) -> Result<TokenInfo, sqlx::Error> {
    let scopes: Vec<String> = row.try_get("scopes")?;
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Creates a token; returns its info and the token itself (shown once).
pub async fn create_token(
    pool: &PgPool,
    name: &str,
    scopes: &[Scope],
) -> Result<(TokenInfo, String), sqlx::Error> {
    let token = generate_token();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let row = sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, scopes) VALUES ($1, $2, $3, $4)
         RETURNING id, name, scopes, created_at, last_used_at, revoked_at",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(hash_token(&token))
    .bind(&scopes)
    .fetch_one(pool)
    .await?;
    Ok((info_from(&row)?, token))
}

/// Every token (newest first), without hashes.
pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_tokens
         ORDER BY created_at DESC",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(info_from).collect()
}

/// Revokes a token; `false` when unknown or already revoked.
pub async fn revoke_token(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

async fn resolve(state: &AdminState, token: &str) -> Result<Option<Principal>, ApiError> {
    let hash = hash_token(token);
    if let Some(boot) = &state.bootstrap_hash
        && bool::from(boot.as_bytes().ct_eq(hash.as_bytes()))
    {
        return Ok(Some(Principal {
            name: "bootstrap".into(),
            scopes: vec![Scope::Admin],
        }));
    }
    let row = sqlx::query(
        "UPDATE api_tokens SET last_used_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL RETURNING name, scopes",
    )
    .bind(&hash)
    .fetch_optional(state.connections.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let scopes: Vec<String> = row.try_get("scopes")?;
    Ok(Some(Principal {
        name: row.try_get("name")?,
        scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    }))
}

/// The scope a request needs: reads need `read`, writes and token management need `admin`.
pub fn required_scope(method: &Method, path: &str) -> Scope {
    let tokens = path.split('/').any(|s| s == "tokens");
    if !tokens && (method == Method::GET || method == Method::HEAD) {
        Scope::Read
    } else {
        Scope::Admin
    }
}

/// Middleware: 401 without a valid bearer token, 403 without the needed scope.
pub async fn authenticate(
    State(state): State<AdminState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "missing bearer token (Authorization: Bearer <token>)",
        ))?;
    let principal = resolve(&state, token)
        .await?
        .ok_or(ApiError::Unauthorized("unknown or revoked token"))?;
    let need = required_scope(req.method(), req.uri().path());
    if !principal.allows(need) {
        return Err(ApiError::Forbidden(format!(
            "token {:?} lacks the {:?} scope needed for {} {}",
            principal.name,
            need.as_str(),
            req.method(),
            req.uri().path()
        )));
    }
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}
