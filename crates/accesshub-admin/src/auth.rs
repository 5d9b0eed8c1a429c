//! Bearer tokens with a role, a tenant scope and an expiry. Only the SHA-256 of a token is
//! stored (`api_tokens`) or kept in memory (the bootstrap token from `ACCESSHUB_ADMIN_TOKEN`);
//! a token is shown once, when created. The tokens are 32 random bytes, so an unsalted hash is
//! enough: nobody can guess one from its hash.
//!
//! Roles, each including the one before: `viewer` reads; `operator` also requests syncs and
//! changes connections; `admin` also manages tenants, their webhook secrets and tokens.
//! A token acts only on its tenants (one, several or all, `*`): the middleware checks the role
//! a route needs, each handler checks the tenant it touches ([`Principal::require_tenant`]),
//! and lists are filtered to the token's tenants.

use std::{collections::BTreeSet, time::Duration};

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

/// The pre-role vocabulary (`api_tokens.scopes`), still accepted when minting a token and
/// still written, so a rolled-back build keeps reading the tokens this one made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TokenScope)]
pub enum Scope {
    /// Read: the `viewer` role.
    Read,
    /// Everything: the `admin` role.
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

    /// The role this legacy scope always meant.
    pub fn role(self) -> Role {
        match self {
            Scope::Read => Role::Viewer,
            Scope::Admin => Role::Admin,
        }
    }
}

pub use accesshub_connections::Role;

/// Legacy `scopes` written for a token valid for every tenant (see the migration).
fn legacy_scopes(role: Role) -> Vec<&'static str> {
    match role {
        Role::Viewer | Role::Operator => vec![Scope::Read.as_str()],
        Role::Admin => vec![Scope::Admin.as_str()],
    }
}

/// The tenants a token may act on. On the wire a list of tenant ids, `["*"]` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Every tenant, present and future.
    All,
    /// Only these (never empty).
    Only(BTreeSet<String>),
}

impl Tenants {
    /// Whether `tenant` is in scope.
    pub fn contains(&self, tenant: &str) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(set) => set.contains(tenant),
        }
    }

    /// Whether every tenant of `other` is in scope.
    pub fn covers(&self, other: &Tenants) -> bool {
        match (self, other) {
            (Tenants::All, _) => true,
            (Tenants::Only(_), Tenants::All) => false,
            (Tenants::Only(mine), Tenants::Only(theirs)) => theirs.is_subset(mine),
        }
    }

    /// The list for SQL filters: `None` for every tenant.
    pub fn as_filter(&self) -> Option<Vec<String>> {
        match self {
            Tenants::All => None,
            Tenants::Only(set) => Some(set.iter().cloned().collect()),
        }
    }

    /// The only tenant, when there is exactly one (used to file audit records).
    pub fn single(&self) -> Option<&str> {
        match self {
            Tenants::Only(set) if set.len() == 1 => set.iter().next().map(String::as_str),
            _ => None,
        }
    }

    fn from_column(col: Option<Vec<String>>) -> Tenants {
        match col {
            None => Tenants::All,
            Some(v) => Tenants::Only(v.into_iter().collect()),
        }
    }

    /// Parses the wire form; `*` must stand alone.
    pub fn from_list(list: &[String]) -> Result<Tenants, String> {
        if list.is_empty() {
            return Err("must list at least one tenant id, or \"*\" for every tenant".into());
        }
        if list.iter().any(|t| t == "*") {
            return if list.len() == 1 {
                Ok(Tenants::All)
            } else {
                Err("\"*\" (every tenant) cannot be combined with tenant ids".into())
            };
        }
        for t in list {
            if t.is_empty()
                || t.len() > 128
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!("{t:?} is not a tenant id"));
            }
        }
        Ok(Tenants::Only(list.iter().cloned().collect()))
    }
}

impl Serialize for Tenants {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tenants::All => ["*"].serialize(s),
            Tenants::Only(set) => set.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Tenants {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        Tenants::from_list(&list).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tenants::All => f.write_str("*"),
            Tenants::Only(set) => {
                let v: Vec<&str> = set.iter().map(String::as_str).collect();
                f.write_str(&v.join(","))
            }
        }
    }
}

/// How long minted tokens live (`ACCESSHUB_TOKEN_DEFAULT_TTL_DAYS`, `…_MAX_TTL_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Lifetime when the request names none (default 90 days).
    pub default_ttl: Duration,
    /// Longest lifetime a request may ask for (default 365 days).
    pub max_ttl: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            default_ttl: Duration::from_secs(90 * 86_400),
            max_ttl: Duration::from_secs(365 * 86_400),
        }
    }
}

/// The caller, put into request extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id; the bootstrap token's is [`bootstrap_id`] of its hash.
    pub id: Uuid,
    /// Token name (`bootstrap` for the environment token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Where it may do it.
    pub tenants: Tenants,
    /// When it stops working (`None`: the bootstrap token and tokens from older builds).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Principal {
    /// Whether the principal's role includes `role`.
    pub fn allows(&self, role: Role) -> bool {
        self.role >= role
    }

    /// 403 unless `tenant` is in the token's scope. Checked before looking the tenant up, so
    /// the answer does not tell whether another tenant exists.
    pub fn require_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.tenants.contains(tenant) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token {:?} is not scoped to tenant {tenant:?}",
                self.name
            )))
        }
    }

    /// 403 unless the token's role includes `role` (for checks inside a handler).
    pub fn require_role(&self, role: Role, what: &str) -> Result<(), ApiError> {
        if self.allows(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token {:?} has role {}; {what} needs {role}",
                self.name, self.role
            )))
        }
    }
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The stable id of the bootstrap token: derived from its hash, so every replica agrees and
/// a rotated bootstrap token (another hash) gets another id.
pub fn bootstrap_id(hash: &str) -> Uuid {
    let digest = Sha256::digest(format!("accesshub-bootstrap:{hash}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// A fresh random token (`ahk_` + 32 random bytes, URL-safe base64).
pub fn generate_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("ahk_{}", URL_SAFE_NO_PAD.encode(raw))
}

/// A stored token, without its hash.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Id (for revocation).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenants it may act on (`["*"]`: all).
    #[schema(value_type = Vec<String>)]
    pub tenants: Tenants,
    /// Legacy scopes (what a pre-role build grants it).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Refused after this instant (`None`: never expires).
    pub expires_at: Option<DateTime<Utc>>,
    /// Last authenticated request.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Name of the token that minted it.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// Compile-time column list interpolated into queries (hence `AssertSqlSafe`).
const INFO_COLUMNS: &str = "id, name, scopes, tenants, expires_at, created_at, last_used_at, \
     revoked_at, created_by_name, \
     COALESCE(role, CASE WHEN 'admin' = ANY (scopes) THEN 'admin' ELSE 'viewer' END) AS role";

fn info_from(row: &sqlx::postgres::PgRow) -> Result<TokenInfo, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        // Unknown role text cannot be stored (CHECK); viewer is the safe reading anyway.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        tenants: Tenants::from_column(row.try_get("tenants")?),
        scopes: row.try_get("scopes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_by: row.try_get("created_by_name")?,
    })
}

/// What to mint.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// Name.
    pub name: &'a str,
    /// Role.
    pub role: Role,
    /// Tenant scope.
    pub tenants: &'a Tenants,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates a token; returns its info and the token itself (shown once). Checks nothing: the
/// handler has already checked that `by` may mint it.
pub async fn create_token(
    pool: &PgPool,
    new: &NewToken<'_>,
    by: Option<&Principal>,
) -> Result<(TokenInfo, String), sqlx::Error> {
    let token = generate_token();
    let scopes = match new.tenants {
        Tenants::All => legacy_scopes(new.role),
        // An older build would read any scope as "every tenant": give it nothing to grant.
        Tenants::Only(_) => vec![],
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_tokens (id, name, token_hash, scopes, role, tenants, expires_at,
             created_by_id, created_by_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {INFO_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(new.name)
    .bind(hash_token(&token))
    .bind(&scopes)
    .bind(new.role.as_str())
    .bind(new.tenants.as_filter())
    .bind(new.expires_at)
    .bind(by.map(|p| p.id))
    .bind(by.map(|p| p.name.as_str()))
    .fetch_one(pool)
    .await?;
    Ok((info_from(&row)?, token))
}

/// Every token (newest first), without hashes.
pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenInfo>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INFO_COLUMNS} FROM api_tokens ORDER BY created_at DESC"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(info_from).collect()
}

/// One token by id.
pub async fn get_token(pool: &PgPool, id: Uuid) -> Result<Option<TokenInfo>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INFO_COLUMNS} FROM api_tokens WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(info_from).transpose()
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

/// Revokes the bootstrap token with hash `hash`: stores a revoked row under its hash, which
/// [`resolve`] checks on every use. `false` when it was revoked already.
pub async fn revoke_bootstrap(pool: &PgPool, hash: &str) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, scopes, role, tenants, revoked_at)
         VALUES ($1, 'bootstrap', $2, '{}', 'admin', NULL, now())
         ON CONFLICT (token_hash) DO UPDATE SET revoked_at = now()
         WHERE api_tokens.revoked_at IS NULL",
    )
    .bind(bootstrap_id(hash))
    .bind(hash)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

async fn resolve(state: &AdminState, token: &str) -> Result<Option<Principal>, ApiError> {
    let hash = hash_token(token);
    let pool = state.connections.pool();
    if let Some(boot) = &state.bootstrap_hash
        && bool::from(boot.as_bytes().ct_eq(hash.as_bytes()))
    {
        // Revocable: a row under its hash means it was revoked through the API.
        let revoked: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT revoked_at FROM api_tokens WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(pool)
                .await?;
        if revoked.is_some() {
            return Ok(None);
        }
        return Ok(Some(Principal {
            id: bootstrap_id(&hash),
            name: "bootstrap".into(),
            role: Role::Admin,
            tenants: Tenants::All,
            expires_at: None,
        }));
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE api_tokens SET last_used_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > now())
         RETURNING {INFO_COLUMNS}"
    )))
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let info = info_from(&row)?;
    Ok(Some(Principal {
        id: info.id,
        name: info.name,
        role: info.role,
        tenants: info.tenants,
        expires_at: info.expires_at,
    }))
}

/// The role a request needs before its handler checks the tenant. Reads need `viewer`
/// (except the token list); sync requests, connection changes and DLQ replays and purges
/// `operator`; tenants, their
/// sources and tokens `admin`.
///
/// Matched from the start of the route (the middleware sees the path without
/// [`PREFIX`](crate::PREFIX) when nested, with it otherwise), never by a segment anywhere: a
/// tenant named `connections` must not make its webhook secret an operator's business.
pub fn required_role(method: &Method, path: &str) -> Role {
    let path = path.strip_prefix(crate::PREFIX).unwrap_or(path);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let read = method == Method::GET || method == Method::HEAD;
    match segments.as_slice() {
        // Who am I: any valid token.
        ["tokens", "self"] if read => Role::Viewer,
        ["tokens"] | ["tokens", _] => Role::Admin,
        _ if read => Role::Viewer,
        ["syncs"] => Role::Operator,
        ["connections", _, _, _] => Role::Operator,
        ["dlq", "replay" | "purge"] => Role::Operator,
        _ => Role::Admin,
    }
}

/// Middleware: 401 without a valid (known, unrevoked, unexpired) bearer token, 403 without
/// the role the route needs.
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
        .ok_or(ApiError::Unauthorized("unknown, revoked or expired token"))?;
    let need = required_role(req.method(), req.uri().path());
    if !principal.allows(need) {
        return Err(ApiError::Forbidden(format!(
            "token {:?} has role {}; {} {} needs {need}",
            principal.name,
            principal.role,
            req.method(),
            req.uri().path()
        )));
    }
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The console's token check (`accesshub-console` logs in with API tokens): exactly the
/// API's resolution, mapped to the console's operator.
pub fn console_resolver(state: &AdminState) -> accesshub_console::TokenResolver {
    let state = state.clone();
    std::sync::Arc::new(move |token: String| {
        let state = state.clone();
        Box::pin(async move {
            let principal = resolve(&state, &token).await.map_err(|e| e.to_string())?;
            Ok(principal.map(|p| accesshub_console::Operator {
                token_id: p.id,
                name: p.name,
                role: match p.role {
                    Role::Viewer => accesshub_console::Role::Viewer,
                    Role::Operator => accesshub_console::Role::Operator,
                    Role::Admin => accesshub_console::Role::Admin,
                },
                tenants: match p.tenants {
                    Tenants::All => None,
                    Tenants::Only(set) => Some(set),
                },
                expires_at: p.expires_at,
            }))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(v: &[&str]) -> Tenants {
        Tenants::Only(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn roles_per_route() {
        let p = "/admin/v1";
        assert_eq!(
            required_role(&Method::GET, &format!("{p}/connections")),
            Role::Viewer
        );
        assert_eq!(
            required_role(&Method::POST, &format!("{p}/syncs")),
            Role::Operator
        );
        assert_eq!(
            required_role(&Method::PUT, &format!("{p}/connections/a/tapkey/default")),
            Role::Operator
        );
        assert_eq!(
            required_role(&Method::PUT, &format!("{p}/tenants/a")),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::GET, &format!("{p}/tokens")),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::GET, &format!("{p}/tokens/self")),
            Role::Viewer
        );
        assert_eq!(
            required_role(&Method::DELETE, &format!("{p}/tokens/self")),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::GET, &format!("{p}/audit")),
            Role::Viewer
        );
        assert_eq!(
            required_role(&Method::GET, &format!("{p}/dlq")),
            Role::Viewer
        );
        for action in ["replay", "purge"] {
            assert_eq!(
                required_role(&Method::POST, &format!("{p}/dlq/{action}")),
                Role::Operator
            );
        }
        // Nested routers see the path without the prefix.
        assert_eq!(required_role(&Method::POST, "/syncs"), Role::Operator);
        assert_eq!(required_role(&Method::GET, "/tokens"), Role::Admin);
        // Tenants named like a route keep their route's role.
        for path in [
            "/tenants/connections/sources/bex/secret",
            "/tenants/syncs",
            "/admin/v1/tenants/connections/sources/bex/secret",
        ] {
            assert_eq!(required_role(&Method::PUT, path), Role::Admin, "{path}");
        }
        assert_eq!(required_role(&Method::GET, "/tenants/tokens"), Role::Viewer);
    }

    #[test]
    fn tenant_scopes_cover_only_subsets() {
        assert!(Tenants::All.covers(&only(&["a"])));
        assert!(only(&["a", "b"]).covers(&only(&["a"])));
        assert!(!only(&["a"]).covers(&only(&["a", "b"])));
        assert!(!only(&["a"]).covers(&Tenants::All));
        assert_eq!(Tenants::from_list(&["*".into()]), Ok(Tenants::All));
        assert!(Tenants::from_list(&["*".into(), "a".into()]).is_err());
        assert!(Tenants::from_list(&[]).is_err());
        assert!(Tenants::from_list(&["a b".into()]).is_err());
    }

    #[test]
    fn bootstrap_ids_are_stable_and_differ_per_token() {
        let a = hash_token("one");
        assert_eq!(bootstrap_id(&a), bootstrap_id(&a));
        assert_ne!(bootstrap_id(&a), bootstrap_id(&hash_token("two")));
    }
}
