//! Route handlers. Every connection leaves through `redacted()`; request bodies are parsed
//! with field paths so a 400 names the field.

use std::{collections::BTreeMap, time::Duration};

use accesshub_connections::{
    AccessChoice, ApplyStatus, Change, Connection, OffboardIntent, Tenant, TenantSource, Vendor,
    lookup::{self, LookupFailureKind, LookupItem, LookupRequest, LookupResponse},
    model::Secret,
    offboard,
    tenants::DEFAULT_PREVIOUS_TTL,
};
use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AdminState,
    auth::{self, Principal, Scope, TokenInfo},
    error::{ApiError, parse_connection, parse_json},
};

fn vendor(v: &str) -> Result<Vendor, ApiError> {
    v.parse().map_err(|e: String| ApiError::BadRequest {
        field: Some("vendor".into()),
        problem: e,
    })
}

// ---- tenants ----

/// Body of `POST /tenants` and `PUT /tenants/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    /// Tenant id (required for POST; must match the path for PUT).
    #[serde(default)]
    pub id: Option<String>,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
}

/// A tenant with its sources (secrets redacted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantDetail {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Its upstream sources.
    pub sources: Vec<TenantSource>,
}

fn check_tenant_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::field(
            "id",
            "must be 1-128 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

pub(crate) async fn list_tenants(
    State(s): State<AdminState>,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(s.tenants.list().await?))
}

pub(crate) async fn create_tenant(
    State(s): State<AdminState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: TenantBody = parse_json(&body)?;
    let id = b.id.ok_or_else(|| ApiError::field("id", "is required"))?;
    check_tenant_id(&id)?;
    let name = b.name.unwrap_or_else(|| id.clone());
    let t = s.tenants.create(&id, &name).await?;
    tracing::info!(tenant = %id, "tenant created");
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

pub(crate) async fn put_tenant(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Tenant>, ApiError> {
    check_tenant_id(&id)?;
    let b: TenantBody = parse_json(&body)?;
    if b.id.as_deref().is_some_and(|x| x != id) {
        return Err(ApiError::field("id", "does not match the URL"));
    }
    let name = b.name.unwrap_or_else(|| id.clone());
    Ok(Json(s.tenants.upsert(&id, &name).await?))
}

pub(crate) async fn get_tenant(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<TenantDetail>, ApiError> {
    let tenant = s
        .tenants
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown tenant {id:?}")))?;
    let sources = s.tenants.sources(&id).await?;
    Ok(Json(TenantDetail { tenant, sources }))
}

pub(crate) async fn delete_tenant(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Query(q): Query<AccessQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    let choice = q.choice()?;
    if s.tenants.get(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown tenant {id:?}")));
    }
    let pool = s.tenants.pool();
    let live = offboard::live_access_of_tenant(pool, &id).await?;
    match choice {
        AccessChoice::Refuse if live > 0 => Err(ApiError::Conflict(format!(
            "{live} booking(s) of tenant {id:?} hold access at a vendor: delete with \
             ?access=remove (accessctl tenants delete --remove-access) to remove it first, or \
             ?access=keep (--keep-access) to delete now and leave it at the vendors"
        ))),
        AccessChoice::Refuse | AccessChoice::Keep => {
            s.tenants.delete(&id).await?;
            let warning = kept_warning(live, &format!("tenant {id:?}"));
            if let Some(w) = &warning {
                tracing::warn!(tenant = %id, by = %who.name, live, "tenant deleted, vendor access kept: {w}");
            } else {
                tracing::info!(tenant = %id, by = %who.name, "tenant deleted");
            }
            Ok(removed_now(OffboardState::Deleted, live, warning))
        }
        AccessChoice::Remove => {
            let conns = s.connections.list(Some(&id), None).await?;
            offboard::begin_tenant(pool, &id).await?;
            let mut runs = Vec::with_capacity(conns.len());
            for c in &conns {
                runs.push(start_offboard(&s, c, OffboardIntent::Delete, &who).await?);
            }
            // No connection: nothing can hold access through accesshub any more.
            if conns.is_empty() {
                offboard::finish_tenant(pool, &id).await?;
                tracing::info!(tenant = %id, by = %who.name, "tenant deleted");
                return Ok(removed_now(OffboardState::Deleted, live, None));
            }
            tracing::info!(tenant = %id, by = %who.name, connections = conns.len(), live,
                "tenant offboarding: deleted once every connection's access is removed");
            Ok(offboarding(live, runs))
        }
    }
}

// ---- offboarding ----

/// `?access=remove|keep` on deletes and disables.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AccessQuery {
    #[serde(default)]
    access: Option<String>,
}

impl AccessQuery {
    fn choice(&self) -> Result<AccessChoice, ApiError> {
        AccessChoice::parse(self.access.as_deref()).map_err(|e| ApiError::field("access", e))
    }
}

/// What became of a connection or tenant deleted or disabled with a choice about its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffboardState {
    /// Deleted now.
    Deleted,
    /// Disabled now.
    Disabled,
    /// Its access is being removed by the offboard runs; deleted or disabled afterwards.
    Offboarding,
}

/// Answer of `DELETE /connections/…`, `DELETE /tenants/…` and of a disabling `PUT` when a
/// choice about the vendor access was made (`?access=remove|keep`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OffboardResponse {
    /// What happened.
    pub state: OffboardState,
    /// Bookings that held access when asked.
    pub live_bookings: i64,
    /// With `access=remove`: the offboard runs to follow (`accessctl sync status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<accesshub_sync_runs::SyncRun>,
    /// With `access=keep`: what was left at the vendors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

fn kept_warning(live: i64, what: &str) -> Option<String> {
    (live > 0).then(|| {
        format!(
            "{live} booking(s) keep their access at the vendor although {what} is gone: \
             accesshub will not remove it; remove it at the vendor"
        )
    })
}

fn removed_now(state: OffboardState, live: i64, warning: Option<String>) -> Response {
    if warning.is_none() && state == OffboardState::Deleted && live == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = OffboardResponse {
        state,
        live_bookings: live,
        runs: vec![],
        warning,
    };
    (StatusCode::OK, Json(body)).into_response()
}

fn offboarding(live: i64, runs: Vec<accesshub_sync_runs::SyncRun>) -> Response {
    let body = OffboardResponse {
        state: OffboardState::Offboarding,
        live_bookings: live,
        runs,
        warning: None,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn conflict_live(live: i64, c: &Connection, verb: &str) -> ApiError {
    let vendor = c.vendor();
    ApiError::Conflict(format!(
        "{live} booking(s) hold access at {vendor} through connection {}/{vendor}/{}: {verb} \
         with ?access=remove (accessctl connections {verb} --remove-access) to remove that \
         access first, or ?access=keep (--keep-access) to {verb} now and leave it at {vendor}",
        c.tenant, c.name
    ))
}

/// Marks the connection offboarding and queues its offboard run. Refused while a sync of
/// another scope is running (it may still be re-creating access): retry when it finished.
async fn start_offboard(
    s: &AdminState,
    c: &Connection,
    intent: OffboardIntent,
    who: &Principal,
) -> Result<accesshub_sync_runs::SyncRun, ApiError> {
    use accesshub_sync_runs::{RunStatus, Scope, Trigger, store};
    let vendor = c.vendor();
    let conn = accesshub_sync_runs::ConnectionRef {
        tenant: c.tenant.clone(),
        vendor: vendor.to_string(),
        name: c.name.clone(),
    };
    let pool = s.connections.pool();
    let active = store::list_runs(pool, Some(&c.tenant), Some(vendor.as_str()), 20)
        .await?
        .into_iter()
        .find(|r| {
            r.connection == conn && r.status == RunStatus::Running && r.scope != Scope::Offboard
        });
    if let Some(r) = active {
        return Err(ApiError::Conflict(format!(
            "sync run {} of connection {conn} is running: retry when it has finished",
            r.id
        )));
    }
    offboard::begin(pool, Some(&s.bus), &c.tenant, vendor, &c.name, intent).await?;
    // A run already queued for the connection is executed as its offboarding.
    let out =
        store::request_run(pool, &conn, Scope::Offboard, Trigger::Api, Some(&who.name)).await?;
    let run = out.run().clone();
    tracing::info!(connection = %conn, run_id = run.id, by = %who.name, intent = intent.as_str(),
        "connection offboarding: its vendor access is being removed");
    Ok(run)
}

/// Body of `PUT .../sources/{source}/secret` and (optional) `POST .../rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// The new secret (PUT); omitted for `rotate`, which generates one.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// How long the previous secret stays valid (default 86400 = 24 h).
    #[serde(default)]
    pub previous_ttl_seconds: Option<u64>,
}

/// Answer of the source-secret routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSecretResponse {
    /// The source (secrets redacted).
    pub source: TenantSource,
    /// Only after `rotate`: the generated secret, shown this once to hand to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_secret: Option<String>,
}

async fn set_secret(
    s: &AdminState,
    tenant: &str,
    source: &str,
    req: SecretRequest,
    generate: bool,
) -> Result<SourceSecretResponse, ApiError> {
    let ttl = req
        .previous_ttl_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_PREVIOUS_TTL);
    let secret = if generate {
        if req.secret.is_some() {
            return Err(ApiError::field(
                "secret",
                "rotate generates the secret; use PUT .../secret to set a given one",
            ));
        }
        None
    } else {
        Some(
            req.secret
                .ok_or_else(|| ApiError::field("secret", "is required"))?,
        )
    };
    let (src, new) = s
        .tenants
        .set_source_secret(tenant, source, secret, ttl)
        .await?;
    Ok(SourceSecretResponse {
        source: src,
        generated_secret: generate.then(|| new.expose().to_owned()),
    })
}

pub(crate) async fn set_source_secret(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<SourceSecretResponse>, ApiError> {
    let req: SecretRequest = parse_json(&body)?;
    Ok(Json(set_secret(&s, &tenant, &source, req, false).await?))
}

pub(crate) async fn rotate_source_secret(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<SourceSecretResponse>, ApiError> {
    let req: SecretRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SecretRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(set_secret(&s, &tenant, &source, req, true).await?))
}

// ---- connections ----

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    tenant: Option<String>,
    vendor: Option<String>,
}

pub(crate) async fn list_connections(
    State(s): State<AdminState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Connection>>, ApiError> {
    let v = q.vendor.as_deref().map(vendor).transpose()?;
    Ok(Json(
        s.connections.list_redacted(q.tenant.as_deref(), v).await?,
    ))
}

pub(crate) async fn get_connection(
    State(s): State<AdminState>,
    Path((tenant, v, name)): Path<(String, String, String)>,
) -> Result<Json<Connection>, ApiError> {
    let v = vendor(&v)?;
    s.connections
        .get(&tenant, v, &name)
        .await?
        .map(|c| Json(c.redacted()))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "tenant {tenant:?} has no {v} connection named {name:?}"
            ))
        })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyQuery {
    #[serde(default)]
    dry_run: bool,
    /// When the apply disables the connection: what happens to its access (`remove|keep`;
    /// not flattened from [`AccessQuery`]: serde_urlencoded cannot flatten a `bool`).
    #[serde(default)]
    access: Option<String>,
}

/// Answer of `PUT /connections/{tenant}/{vendor}/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// Created, updated or unchanged (what would happen, for a dry run).
    pub status: ApplyStatus,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The connection as stored (or as it would be), secrets redacted.
    pub connection: Connection,
    /// Field changes (secrets show as `***`).
    pub changes: Vec<Change>,
    /// Disabled with `?access=remove`: the offboard run removing its access (the connection
    /// stays enabled, wanting nothing, until the run finishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offboard_run: Option<accesshub_sync_runs::SyncRun>,
    /// Disabled with `?access=keep` while bookings held access: what was left at the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

pub(crate) async fn put_connection(
    State(s): State<AdminState>,
    Path((tenant, v, name)): Path<(String, String, String)>,
    Query(q): Query<ApplyQuery>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = vendor(&v)?;
    let conn: Connection = parse_connection(&body)?;
    if conn.tenant != tenant {
        return Err(ApiError::field(
            "tenant",
            format!("{:?} does not match the URL ({tenant:?})", conn.tenant),
        ));
    }
    if conn.name != name {
        return Err(ApiError::field(
            "name",
            format!("{:?} does not match the URL ({name:?})", conn.name),
        ));
    }
    if conn.vendor() != v {
        return Err(ApiError::field(
            "settings.vendor",
            format!("{} does not match the URL ({v})", conn.vendor()),
        ));
    }
    let mut conn = conn;
    let mut offboard_run = None;
    let mut warning = None;
    if !conn.enabled && !q.dry_run {
        let siblings = s.connections.list_for(&tenant, v).await?;
        if let Some(cur) = siblings.iter().find(|c| c.name == name && c.enabled) {
            let live = offboard::live_access(s.connections.pool(), &siblings, cur).await?;
            let choice = AccessQuery {
                access: q.access.clone(),
            }
            .choice()?;
            match choice {
                AccessChoice::Refuse if live > 0 => {
                    return Err(conflict_live(live, cur, "disable"));
                }
                AccessChoice::Refuse => {}
                AccessChoice::Keep => {
                    warning =
                        kept_warning(live, &format!("connection {tenant}/{v}/{name} is disabled"));
                    if let Some(w) = &warning {
                        tracing::warn!(%tenant, vendor = %v, %name, by = %who.name, live, "connection disabled, vendor access kept: {w}");
                    }
                }
                AccessChoice::Remove => {
                    // Other changes apply now; it is disabled once its access is removed.
                    conn.enabled = true;
                    offboard_run = Some(live);
                }
            }
        }
    }
    let out = s.connections.apply(&conn, q.dry_run).await?;
    let offboard_run = match offboard_run {
        Some(_) => Some(start_offboard(&s, &out.connection, OffboardIntent::Disable, &who).await?),
        None => None,
    };
    tracing::info!(
        %tenant, vendor = %v, %name, by = %who.name, status = ?out.status,
        dry_run = q.dry_run, version = out.connection.version, "connection apply"
    );
    let code = if offboard_run.is_some() {
        StatusCode::ACCEPTED
    } else if out.status == ApplyStatus::Created && !q.dry_run {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(ApplyResponse {
            status: out.status,
            dry_run: q.dry_run,
            connection: out.connection.redacted(),
            changes: out.changes,
            offboard_run,
            warning,
        }),
    )
        .into_response())
}

pub(crate) async fn delete_connection(
    State(s): State<AdminState>,
    Path((tenant, v, name)): Path<(String, String, String)>,
    Query(q): Query<AccessQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    let v = vendor(&v)?;
    let choice = q.choice()?;
    let siblings = s.connections.list_for(&tenant, v).await?;
    let Some(conn) = siblings.iter().find(|c| c.name == name).cloned() else {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant:?} has no {v} connection named {name:?}"
        )));
    };
    let pool = s.connections.pool();
    let live = offboard::live_access(pool, &siblings, &conn).await?;
    match choice {
        AccessChoice::Refuse if live > 0 => Err(conflict_live(live, &conn, "delete")),
        AccessChoice::Refuse | AccessChoice::Keep => {
            s.connections.delete(&tenant, v, &name).await?;
            let warning = kept_warning(live, &format!("connection {tenant}/{v}/{name}"));
            if let Some(w) = &warning {
                tracing::warn!(%tenant, vendor = %v, %name, by = %who.name, live, "connection deleted, vendor access kept: {w}");
            } else {
                tracing::info!(%tenant, vendor = %v, %name, by = %who.name, "connection deleted via API");
            }
            // The last connection of a tenant being deleted: the tenant goes too.
            offboard::finish_tenant(pool, &tenant).await?;
            Ok(removed_now(OffboardState::Deleted, live, warning))
        }
        AccessChoice::Remove => {
            let run = start_offboard(&s, &conn, OffboardIntent::Delete, &who).await?;
            Ok(offboarding(live, vec![run]))
        }
    }
}

// ---- tokens ----

/// Body of `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Who or what uses it.
    pub name: String,
    /// `read` and/or `admin`.
    pub scopes: Vec<Scope>,
}

/// Answer of `POST /tokens`: the token is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Stored info.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token.
    pub token: String,
}

pub(crate) async fn create_token(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateTokenRequest = parse_json(&body)?;
    if req.name.trim().is_empty() {
        return Err(ApiError::field("name", "must not be empty"));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::field("scopes", "must list read and/or admin"));
    }
    let (info, token) = auth::create_token(s.connections.pool(), &req.name, &req.scopes).await?;
    tracing::info!(token_id = %info.id, name = %info.name, by = %who.name, "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })).into_response())
}

pub(crate) async fn list_tokens(
    State(s): State<AdminState>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(auth::list_tokens(s.connections.pool()).await?))
}

pub(crate) async fn revoke_token(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::BadRequest {
        field: Some("id".into()),
        problem: "not a token id (UUID)".into(),
    })?;
    if auth::revoke_token(s.connections.pool(), id).await? {
        tracing::info!(token_id = %id, by = %who.name, "API token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no active token {id}")))
    }
}

// ---- lookups ----

/// Answer of a successful lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LookupItems {
    items: Vec<LookupItem>,
}

pub(crate) async fn lookup(
    State(s): State<AdminState>,
    Path((v, tenant, what)): Path<(String, String, String)>,
    Query(mut params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let v = vendor(&v)?;
    let connection = params
        .remove("connection")
        .unwrap_or_else(|| "default".to_owned());
    if s.connections.get(&tenant, v, &connection).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant:?} has no {v} connection named {connection:?}"
        )));
    }
    let req = LookupRequest {
        tenant,
        connection,
        what,
        params,
    };
    match lookup::request(&s.bus, v, &req, s.lookup_timeout).await? {
        LookupResponse::Items { items } => Ok(Json(LookupItems { items }).into_response()),
        LookupResponse::Error { error } => Err(match error.kind {
            LookupFailureKind::BadRequest => ApiError::BadRequest {
                field: None,
                problem: error.message,
            },
            LookupFailureKind::NoConnection => ApiError::NotFound(error.message),
            // The worker's message may quote the vendor's answer: scrubbed here too, whatever
            // the worker did, because this is where it leaves the cluster.
            LookupFailureKind::Credentials | LookupFailureKind::Vendor => {
                ApiError::BadGateway(vendor_http::scrub(&error.message))
            }
        }),
    }
}

// ---- site defaults ----

pub(crate) async fn put_site_defaults(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<TenantSource>, ApiError> {
    let doc: serde_json::Value = parse_json(&body)?;
    let Some(sites) = doc.as_object() else {
        return Err(ApiError::field(
            "site_defaults",
            "must be an object keyed by site id (\"*\" for every site)",
        ));
    };
    let mut errors = Vec::new();
    for (site, entry) in sites {
        let Some(fields) = entry.as_object() else {
            errors.push(accesshub_domain::FieldError::new(
                site.clone(),
                "must be an object with check_in_time, check_out_time and/or timezone",
            ));
            continue;
        };
        for (k, v) in fields {
            let path = format!("{site}.{k}");
            match (k.as_str(), v.as_str()) {
                ("check_in_time" | "check_out_time", Some(t))
                    if chrono::NaiveTime::parse_from_str(t, "%H:%M").is_ok()
                        || chrono::NaiveTime::parse_from_str(t, "%H:%M:%S").is_ok() => {}
                ("check_in_time" | "check_out_time", _) => errors.push(
                    accesshub_domain::FieldError::new(path, "must be a time like \"15:00\""),
                ),
                ("timezone", Some(tz)) if !tz.trim().is_empty() && !tz.contains(' ') => {}
                ("timezone", _) => errors.push(accesshub_domain::FieldError::new(
                    path,
                    "must be an IANA timezone like \"Europe/Amsterdam\"",
                )),
                _ => errors.push(accesshub_domain::FieldError::new(
                    path,
                    "unknown field (check_in_time, check_out_time, timezone)",
                )),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let src = s
        .tenants
        .set_site_defaults(&tenant, &source, &doc)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "tenant {tenant:?} has no source {source:?} (set its webhook secret first)"
            ))
        })?;
    tracing::info!(%tenant, %source, by = %who.name, "site defaults set");
    Ok(Json(src))
}

// ---- syncs ----

/// Body of `POST /syncs`: queue a sync run of one connection (the "Sync" buttons).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Tenant.
    pub tenant: String,
    /// Vendor wire name.
    pub vendor: String,
    /// Connection name (default `default`).
    #[serde(default)]
    pub connection: Option<String>,
    /// `upcoming`, `active` or `full`.
    pub scope: String,
    /// Days of an `upcoming` scope (default 5).
    #[serde(default)]
    pub days: Option<i64>,
}

/// Answer of `POST /syncs`: 202 when a run was queued, 200 when the connection already had
/// a queued or running one (that run is returned: one run per connection at a time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncQueued {
    /// Id of the run to follow (`GET /syncs`, `accessctl sync status`).
    pub run_id: i64,
    /// Whether this request queued it (false: an active run already existed).
    pub queued: bool,
    /// The run.
    pub run: accesshub_sync_runs::SyncRun,
}

pub(crate) async fn request_sync(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SyncRequest = parse_json(&body)?;
    let v = vendor(&req.vendor)?;
    let scope = accesshub_sync_runs::Scope::parse(&req.scope, req.days)?;
    if req.days.is_some() && !matches!(scope, accesshub_sync_runs::Scope::Upcoming(_)) {
        return Err(ApiError::field(
            "days",
            "only applies to scope \"upcoming\"",
        ));
    }
    let name = req.connection.unwrap_or_else(|| "default".to_owned());
    if s.connections.get(&req.tenant, v, &name).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "tenant {:?} has no {v} connection named {name:?}",
            req.tenant
        )));
    }
    let conn = accesshub_sync_runs::ConnectionRef {
        tenant: req.tenant,
        vendor: v.to_string(),
        name,
    };
    let out = accesshub_sync_runs::store::request_run(
        s.connections.pool(),
        &conn,
        scope,
        accesshub_sync_runs::Trigger::Api,
        Some(&who.name),
    )
    .await?;
    let (code, queued) = match out {
        accesshub_sync_runs::store::RequestOutcome::Queued(_) => (StatusCode::ACCEPTED, true),
        accesshub_sync_runs::store::RequestOutcome::AlreadyActive(_) => (StatusCode::OK, false),
    };
    let run = out.run().clone();
    tracing::info!(connection = %conn, run_id = run.id, %scope, by = %who.name, queued, "sync requested via API");
    Ok((
        code,
        Json(SyncQueued {
            run_id: run.id,
            queued,
            run,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SyncListQuery {
    tenant: Option<String>,
    vendor: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn list_syncs(
    State(s): State<AdminState>,
    Query(q): Query<SyncListQuery>,
) -> Result<Json<Vec<accesshub_sync_runs::SyncRun>>, ApiError> {
    let v = q.vendor.as_deref().map(vendor).transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1..=500"));
    }
    let v = v.map(|v| v.to_string());
    Ok(Json(
        accesshub_sync_runs::store::list_runs(
            s.connections.pool(),
            q.tenant.as_deref(),
            v.as_deref(),
            limit,
        )
        .await?,
    ))
}
