//! Route handlers. Every connection leaves through `redacted()`; request bodies are parsed
//! with field paths so a 400 names the field.

use std::{collections::BTreeMap, time::Duration};

use accesshub_connections::{
    AccessChoice, ApplyStatus, Change, Connection, OffboardIntent, Tenant, TenantSource, Vendor,
    lookup::{self, LookupFailureKind, LookupItem, LookupRequest, LookupResponse},
    model::Secret,
    offboard,
    tenants::{DEFAULT_PREVIOUS_TTL, MIN_SECRET_LEN},
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
    audit::{self, Actor},
    auth::{self, NewToken, Principal, Role, Scope, Tenants, TokenInfo},
    error::{ApiError, parse_connection, parse_json},
};

/// A before/after document for the audit log (`None` if it does not serialize, which the
/// API's own types always do).
fn doc<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

/// Writes the audit record of a change `who` is about to make (see [`audit`]): commit it
/// once the change committed, drop it if the change failed or changed nothing. Nothing is
/// changed when this fails: 503.
pub(crate) async fn audit_begin(
    s: &AdminState,
    who: &Principal,
    action: &str,
    tenant: Option<&str>,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<audit::Pending, ApiError> {
    audit::begin(
        s.connections.pool(),
        &Actor::from(who),
        audit::Change {
            action,
            tenant,
            target,
            before,
            after,
        },
    )
    .await
    .map_err(|_| unrecorded())
}

/// 503 for a change refused because its audit record could not be stored.
pub(crate) fn unrecorded() -> ApiError {
    ApiError::Unavailable(
        "the change was not made: its audit record could not be stored; retry".into(),
    )
}

/// [`audit_begin`] for a change of a source's upstream API credentials (never the secret).
pub(crate) async fn audit_upstream(
    s: &AdminState,
    who: &Principal,
    action: &str,
    tenant: &str,
    source: &str,
) -> Result<audit::Pending, ApiError> {
    audit_begin(
        s,
        who,
        action,
        Some(tenant),
        format!("{tenant}/{source}/api"),
        None,
        None,
    )
    .await
}

/// [`audit_begin`] for a change of a source's webhook authentication mode.
pub(crate) async fn audit_source_auth(
    s: &AdminState,
    who: &Principal,
    tenant: &str,
    source: &str,
    after: &serde_json::Value,
) -> Result<audit::Pending, ApiError> {
    audit_begin(
        s,
        who,
        "source.auth.set",
        Some(tenant),
        format!("{tenant}/{source}/auth"),
        None,
        Some(after.clone()),
    )
    .await
}

fn vendor(v: &str) -> Result<Vendor, ApiError> {
    v.parse().map_err(|e: String| ApiError::BadRequest {
        field: Some("vendor".into()),
        problem: e,
    })
}

// ---- tenants ----

/// Body of `POST /tenants` and `PUT /tenants/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    /// Tenant id (required for POST; must match the path for PUT).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,128}$")]
    pub id: Option<String>,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
}

/// A tenant with its sources (secrets redacted).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

#[utoipa::path(get, path = "/admin/v1/tenants", tag = "tenants", responses((status = 200, description = "The tenants the token may see", body = Vec<accesshub_connections::Tenant>), crate::openapi::Errors))]
pub(crate) async fn list_tenants(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    let mut list = s.tenants.list().await?;
    list.retain(|t| who.tenants.contains(&t.id));
    Ok(Json(list))
}

#[utoipa::path(post, path = "/admin/v1/tenants", tag = "tenants", request_body = TenantBody, responses((status = 201, description = "Created", body = accesshub_connections::Tenant), crate::openapi::Errors))]
pub(crate) async fn create_tenant(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: TenantBody = parse_json(&body)?;
    let id = b.id.ok_or_else(|| ApiError::field("id", "is required"))?;
    check_tenant_id(&id)?;
    who.require_tenant(&id)?;
    let name = b.name.unwrap_or_else(|| id.clone());
    let audit = audit_begin(&s, &who, "tenant.create", Some(&id), id.clone(), None, None).await?;
    let t = s.tenants.create(&id, &name).await?;
    audit.commit(doc(&t)).await;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id")), request_body = TenantBody, responses((status = 200, description = "Created or renamed", body = accesshub_connections::Tenant), crate::openapi::Errors))]
pub(crate) async fn put_tenant(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Tenant>, ApiError> {
    check_tenant_id(&id)?;
    who.require_tenant(&id)?;
    let b: TenantBody = parse_json(&body)?;
    if b.id.as_deref().is_some_and(|x| x != id) {
        return Err(ApiError::field("id", "does not match the URL"));
    }
    let name = b.name.unwrap_or_else(|| id.clone());
    let before = s.tenants.get(&id).await?;
    let action = if before.is_some() {
        "tenant.update"
    } else {
        "tenant.create"
    };
    let audit = audit_begin(
        &s,
        &who,
        action,
        Some(&id),
        id.clone(),
        before.as_ref().and_then(doc),
        None,
    )
    .await?;
    let after = s.tenants.upsert(&id, &name).await?;
    // Unchanged: the pending record is dropped (rolled back).
    if before.as_ref().is_none_or(|b| b.name != after.name) {
        audit.commit(doc(&after)).await;
    }
    Ok(Json(after))
}

#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id")), responses((status = 200, description = "The tenant and its sources (secrets redacted)", body = TenantDetail), crate::openapi::Errors))]
pub(crate) async fn get_tenant(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<Json<TenantDetail>, ApiError> {
    who.require_tenant(&id)?;
    let tenant = s
        .tenants
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown tenant {id:?}")))?;
    let sources = s.tenants.sources(&id).await?;
    Ok(Json(TenantDetail { tenant, sources }))
}

#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), AccessQuery), responses((status = 204, description = "Deleted; no booking held access"), (status = 200, description = "Deleted (`access=keep`: what was left at the vendors)", body = OffboardResponse), (status = 202, description = "Offboarding (`access=remove`): deleted once every connection's access is removed", body = OffboardResponse), crate::openapi::Errors))]
pub(crate) async fn delete_tenant(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Query(q): Query<AccessQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    who.require_tenant(&id)?;
    let choice = q.choice()?;
    let Some(tenant) = s.tenants.get(&id).await? else {
        return Err(ApiError::NotFound(format!("unknown tenant {id:?}")));
    };
    let before = doc(&TenantDetail {
        tenant,
        sources: s.tenants.sources(&id).await?,
    });
    let pool = s.tenants.pool();
    let live = offboard::live_access_of_tenant(pool, &id).await?;
    match choice {
        AccessChoice::Refuse if live > 0 => Err(ApiError::Conflict(format!(
            "{live} booking(s) of tenant {id:?} hold access at a vendor: delete with \
             ?access=remove (accessctl tenants delete --remove-access) to remove it first, or \
             ?access=keep (--keep-access) to delete now and leave it at the vendors"
        ))),
        AccessChoice::Refuse | AccessChoice::Keep => {
            let audit = audit_begin(
                &s,
                &who,
                "tenant.delete",
                Some(&id),
                id.clone(),
                before,
                None,
            )
            .await?;
            s.tenants.delete(&id).await?;
            audit.commit(None).await;
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
            let audit = audit_begin(
                &s,
                &who,
                "tenant.offboard",
                Some(&id),
                id.clone(),
                before,
                None,
            )
            .await?;
            offboard::begin_tenant(pool, &id).await?;
            audit.commit(None).await;
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
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AccessQuery {
    /// What becomes of the access bookings hold at the vendor: `remove` it first, or `keep`
    /// it; without: refused (409) while any booking holds access.
    #[serde(default)]
    #[param(pattern = "^(remove|keep)$")]
    access: Option<String>,
}

impl AccessQuery {
    fn choice(&self) -> Result<AccessChoice, ApiError> {
        AccessChoice::parse(self.access.as_deref()).map_err(|e| ApiError::field("access", e))
    }
}

/// What became of a connection or tenant deleted or disabled with a choice about its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    let conn = accesshub_sync_runs::ConnectionRef::from(c);
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
    let audit = audit_begin(
        s,
        who,
        &format!("connection.offboard.{}", intent.as_str()),
        Some(&c.tenant),
        conn.to_string(),
        doc(&c.redacted()),
        None,
    )
    .await?;
    offboard::begin(pool, Some(&s.bus), &c.tenant, vendor, &c.name, intent).await?;
    // A run already queued for the connection is executed as its offboarding.
    let out =
        store::request_run(pool, &conn, Scope::Offboard, Trigger::Api, Some(&who.name)).await?;
    let run = out.run().clone();
    audit.commit(doc(&run)).await;
    tracing::info!(connection = %conn, run_id = run.id, by = %who.name, intent = intent.as_str(),
        "connection offboarding: its vendor access is being removed");
    Ok(run)
}

/// Body of `PUT .../sources/{source}/secret` and (optional) `POST .../rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// The new secret (PUT); omitted for `rotate`, which generates one.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 32)]
    pub secret: Option<Secret>,
    /// How long the previous secret stays valid (default 86400 = 24 h, at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2_592_000)]
    pub previous_ttl_seconds: Option<u64>,
}

/// Answer of the source-secret routes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceSecretResponse {
    /// The source (secrets redacted).
    pub source: TenantSource,
    /// Only after `rotate`: the generated secret, shown this once to hand to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_secret: Option<String>,
}

async fn set_secret(
    s: &AdminState,
    who: &Principal,
    tenant: &str,
    source: &str,
    req: SecretRequest,
    generate: bool,
) -> Result<SourceSecretResponse, ApiError> {
    who.require_tenant(tenant)?;
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
        let secret = req
            .secret
            .ok_or_else(|| ApiError::field("secret", "is required"))?;
        // Anyone holding one captured delivery can guess a short HMAC key offline.
        if !secret.is_redacted() && secret.expose().len() < MIN_SECRET_LEN {
            return Err(ApiError::BadRequest {
                field: Some("secret".into()),
                problem: format!(
                    "must be at least {MIN_SECRET_LEN} bytes (use POST .../rotate to generate one)"
                ),
            });
        }
        Some(secret)
    };
    let before = s
        .tenants
        .sources(tenant)
        .await?
        .into_iter()
        .find(|x| x.source == source);
    let action = if generate {
        "source.secret.rotate"
    } else {
        "source.secret.set"
    };
    // TenantSource shows its secret as "***"; the new secret itself is never recorded.
    let audit = audit_begin(
        s,
        who,
        action,
        Some(tenant),
        format!("{tenant}/{source}"),
        before.as_ref().and_then(doc),
        None,
    )
    .await?;
    let (src, new) = s
        .tenants
        .set_source_secret(tenant, source, secret, ttl)
        .await?;
    audit.commit(doc(&src)).await;
    Ok(SourceSecretResponse {
        source: src,
        generated_secret: generate.then(|| new.expose().to_owned()),
    })
}

#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/sources/{source}/secret", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source (bex, clock, nexudus, connecx, native, …)")), request_body = SecretRequest, responses((status = 200, description = "Set; the previous secret stays valid for `previous_ttl_seconds`", body = SourceSecretResponse), crate::openapi::Errors))]
pub(crate) async fn set_source_secret(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<SourceSecretResponse>, ApiError> {
    let req: SecretRequest = parse_json(&body)?;
    Ok(Json(
        set_secret(&s, &who, &tenant, &source, req, false).await?,
    ))
}

#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/sources/{source}/rotate", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source (bex, clock, nexudus, connecx, native, …)")), request_body(content = SecretRequest, description = "Optional: only `previous_ttl_seconds`"), responses((status = 200, description = "Rotated: the generated secret is shown this once", body = SourceSecretResponse), crate::openapi::Errors))]
pub(crate) async fn rotate_source_secret(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<SourceSecretResponse>, ApiError> {
    let req: SecretRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SecretRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(
        set_secret(&s, &who, &tenant, &source, req, true).await?,
    ))
}

// ---- connections ----

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this tenant's.
    tenant: Option<String>,
    /// Only this vendor's.
    #[param(value_type = Option<Vendor>)]
    vendor: Option<String>,
}

#[utoipa::path(get, path = "/admin/v1/connections", tag = "connections", params(ListQuery), responses((status = 200, description = "Connections (secrets redacted)", body = Vec<crate::openapi::ConnectionDoc>), crate::openapi::Errors))]
pub(crate) async fn list_connections(
    State(s): State<AdminState>,
    Query(q): Query<ListQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<Connection>>, ApiError> {
    if let Some(t) = &q.tenant {
        who.require_tenant(t)?;
    }
    let v = q.vendor.as_deref().map(vendor).transpose()?;
    let mut list = s.connections.list_redacted(q.tenant.as_deref(), v).await?;
    list.retain(|c| who.tenants.contains(&c.tenant));
    Ok(Json(list))
}

#[utoipa::path(get, path = "/admin/v1/connections/{tenant}/{vendor}/{name}", tag = "connections", params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = Vendor, Path, description = "Vendor"), ("name" = String, Path, description = "Connection name (`default` unless several)")), responses((status = 200, description = "The connection (secrets redacted)", body = crate::openapi::ConnectionDoc), crate::openapi::Errors))]
pub(crate) async fn get_connection(
    State(s): State<AdminState>,
    Path((tenant, v, name)): Path<(String, String, String)>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Connection>, ApiError> {
    who.require_tenant(&tenant)?;
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApplyQuery {
    /// Only compute the changes (nothing is written).
    #[serde(default)]
    dry_run: bool,
    /// When the apply disables the connection: what happens to its access (`remove|keep`;
    /// not flattened from [`AccessQuery`]: serde_urlencoded cannot flatten a `bool`).
    #[serde(default)]
    #[param(pattern = "^(remove|keep)$")]
    access: Option<String>,
}

/// Answer of `PUT /connections/{tenant}/{vendor}/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyResponse {
    /// Created, updated or unchanged (what would happen, for a dry run).
    pub status: ApplyStatus,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The connection as stored (or as it would be), secrets redacted.
    #[schema(value_type = crate::openapi::ConnectionDoc)]
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
    /// Enabled again, or a site, administration, facility or pass type added: the sync run
    /// queued for it (or the one already active), which re-admits the events
    /// booking-ingest ignored while access control was off there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_run: Option<accesshub_sync_runs::SyncRun>,
}

#[utoipa::path(put, path = "/admin/v1/connections/{tenant}/{vendor}/{name}", tag = "connections", params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = Vendor, Path, description = "Vendor"), ("name" = String, Path, description = "Connection name (`default` unless several)"), ApplyQuery), request_body = crate::openapi::ConnectionDoc, responses((status = 200, description = "Updated, unchanged, or a dry run", body = ApplyResponse), (status = 201, description = "Created", body = ApplyResponse), (status = 202, description = "Disabled with `access=remove`: its offboard run", body = ApplyResponse), crate::openapi::Errors))]
pub(crate) async fn put_connection(
    State(s): State<AdminState>,
    Path((tenant, v, name)): Path<(String, String, String)>,
    Query(q): Query<ApplyQuery>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    who.require_tenant(&tenant)?;
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
    let before = if q.dry_run {
        None
    } else {
        s.connections.get(&tenant, v, &name).await?
    };
    let audit = if q.dry_run {
        None
    } else {
        Some(
            audit_begin(
                &s,
                &who,
                "connection.apply",
                Some(&tenant),
                format!("{tenant}/{v}/{name}"),
                before.as_ref().map(|c| c.redacted()).as_ref().and_then(doc),
                None,
            )
            .await?,
        )
    };
    let out = s.connections.apply(&conn, q.dry_run).await?;
    // Unchanged: the pending record is dropped (rolled back).
    if let Some(audit) = audit
        && out.status != ApplyStatus::Unchanged
    {
        audit.commit(doc(&out.connection.redacted())).await;
    }
    let offboard_run = match offboard_run {
        Some(_) => Some(start_offboard(&s, &out.connection, OffboardIntent::Disable, &who).await?),
        None => None,
    };
    let sync_run = if !q.dry_run
        && offboard_run.is_none()
        && out.status != ApplyStatus::Unchanged
        && before.as_ref().is_some_and(|b| out.connection.widens(b))
    {
        Some(queue_sync(&s, &out.connection, &who).await?)
    } else {
        None
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
            sync_run,
        }),
    )
        .into_response())
}

/// Queues a full sync run of `conn` unless one is active (then that one): switching access
/// control on should not wait for the operator to press Sync (or for the nightly run).
async fn queue_sync(
    s: &AdminState,
    conn: &Connection,
    who: &Principal,
) -> Result<accesshub_sync_runs::SyncRun, ApiError> {
    let target = accesshub_sync_runs::ConnectionRef::from(conn);
    let audit = audit_begin(
        s,
        who,
        "sync.request",
        Some(&conn.tenant),
        target.to_string(),
        None,
        None,
    )
    .await?;
    let out = accesshub_sync_runs::store::request_run(
        s.connections.pool(),
        &target,
        accesshub_sync_runs::Scope::Full,
        accesshub_sync_runs::Trigger::Api,
        Some(&who.name),
    )
    .await?;
    let run = out.run().clone();
    // Already active: nothing queued, the pending record is dropped.
    if let accesshub_sync_runs::store::RequestOutcome::Queued(_) = out {
        audit.commit(doc(&run)).await;
        tracing::info!(connection = %target, run_id = run.id, by = %who.name, "sync queued: the connection acts on more than before");
    }
    Ok(run)
}

#[utoipa::path(delete, path = "/admin/v1/connections/{tenant}/{vendor}/{name}", tag = "connections", params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = Vendor, Path, description = "Vendor"), ("name" = String, Path, description = "Connection name (`default` unless several)"), AccessQuery), responses((status = 204, description = "Deleted; no booking held access"), (status = 200, description = "Deleted (`access=keep`: what was left at the vendor)", body = OffboardResponse), (status = 202, description = "Offboarding (`access=remove`)", body = OffboardResponse), crate::openapi::Errors))]
pub(crate) async fn delete_connection(
    State(s): State<AdminState>,
    Path((tenant, v, name)): Path<(String, String, String)>,
    Query(q): Query<AccessQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    who.require_tenant(&tenant)?;
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
            let audit = audit_begin(
                &s,
                &who,
                "connection.delete",
                Some(&tenant),
                format!("{tenant}/{v}/{name}"),
                doc(&conn.redacted()),
                None,
            )
            .await?;
            s.connections.delete(&tenant, v, &name).await?;
            audit.commit(None).await;
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Who or what uses it.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The pre-role form: `["read"]` = viewer, `["admin"]` = admin (use `role`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    /// Tenant ids, or `["*"]` for every tenant (default: the minting token's tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub tenants: Option<Tenants>,
    /// Expiry (default: now + the default lifetime, 90 days; at most the maximum lifetime,
    /// and never after the minting token's own expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Lifetime in seconds, instead of `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// Answer of `POST /tokens`: the token is shown this once.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Stored info.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("info", &self.info)
            .field("token", &"***")
            .finish()
    }
}

/// What `POST /tokens` would mint for `who`, or why not: a token never mints one with a
/// higher role, a tenant outside its own scope, or a longer life than its own.
fn token_to_mint(
    s: &AdminState,
    who: &Principal,
    req: &CreateTokenRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Role, Tenants, chrono::DateTime<chrono::Utc>), ApiError> {
    if req.name.trim().is_empty() {
        return Err(ApiError::field("name", "must not be empty"));
    }
    let role = match (req.role, req.scopes.iter().map(|s| s.role()).max()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field("scopes", "give either role or scopes"));
        }
        (Some(r), None) | (None, Some(r)) => r,
        (None, None) => {
            return Err(ApiError::field(
                "role",
                "is required (viewer, operator or admin)",
            ));
        }
    };
    if role > who.role {
        return Err(ApiError::Forbidden(format!(
            "token {:?} has role {}; it cannot mint a token with role {role}",
            who.name, who.role
        )));
    }
    let tenants = req.tenants.clone().unwrap_or_else(|| who.tenants.clone());
    if !who.tenants.covers(&tenants) {
        return Err(ApiError::Forbidden(format!(
            "token {:?} is scoped to tenants {}; it cannot mint a token for {tenants}",
            who.name, who.tenants
        )));
    }
    let max = chrono::Duration::from_std(s.tokens.max_ttl).unwrap_or(chrono::Duration::MAX);
    let expires_at = match (req.expires_at, req.expires_in_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "expires_in_seconds",
                "give either expires_at or expires_in_seconds",
            ));
        }
        (Some(at), None) => at,
        (None, Some(secs)) => i64::try_from(secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| ApiError::field("expires_in_seconds", "is too large"))?,
        // The default lifetime, cut to the minting token's own.
        (None, None) => {
            let d = chrono::Duration::from_std(s.tokens.default_ttl).unwrap_or(max);
            let default = now
                .checked_add_signed(d.min(max))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            who.expires_at.map_or(default, |own| own.min(default))
        }
    };
    if expires_at <= now {
        return Err(ApiError::field("expires_at", "must be in the future"));
    }
    if now.checked_add_signed(max).is_some_and(|m| expires_at > m) {
        return Err(ApiError::field(
            "expires_at",
            format!(
                "is beyond the maximum token lifetime of {} days",
                max.num_days()
            ),
        ));
    }
    if let Some(own) = who.expires_at
        && expires_at > own
    {
        return Err(ApiError::Forbidden(format!(
            "token {:?} expires at {own}; it cannot mint a token that outlives it",
            who.name
        )));
    }
    Ok((role, tenants, expires_at))
}

#[utoipa::path(post, path = "/admin/v1/tokens", tag = "tokens", request_body = CreateTokenRequest, responses((status = 201, description = "Minted: the token is shown this once", body = CreatedToken), crate::openapi::Errors))]
pub(crate) async fn create_token(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateTokenRequest = parse_json(&body)?;
    let (role, tenants, expires_at) = token_to_mint(&s, &who, &req, chrono::Utc::now())?;
    let new = NewToken {
        name: req.name.trim(),
        role,
        tenants: &tenants,
        expires_at: Some(expires_at),
    };
    // Its id is known once minted: the record names the token by it on commit.
    let audit = audit_begin(
        &s,
        &who,
        "token.create",
        tenants.single(),
        format!("new token {:?}", new.name),
        None,
        None,
    )
    .await?;
    let (info, token) = auth::create_token(s.connections.pool(), &new, Some(&who)).await?;
    audit.commit_as(info.id.to_string(), doc(&info)).await;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })).into_response())
}

#[utoipa::path(get, path = "/admin/v1/tokens", tag = "tokens", responses((status = 200, description = "Tokens within the caller's tenants", body = Vec<TokenInfo>), crate::openapi::Errors))]
pub(crate) async fn list_tokens(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let mut list = auth::list_tokens(s.connections.pool()).await?;
    // Only the tokens it could have minted itself.
    list.retain(|t| who.tenants.covers(&t.tenants));
    Ok(Json(list))
}

/// Answer of `GET /tokens/self`: the calling token.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenSelf {
    /// Id (the bootstrap token's is derived from its hash).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenants.
    #[schema(value_type = Vec<String>)]
    pub tenants: Tenants,
    /// Expiry.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(get, path = "/admin/v1/tokens/self", tag = "tokens", responses((status = 200, description = "The calling token", body = TokenSelf), crate::openapi::Errors))]
pub(crate) async fn token_self(Extension(who): Extension<Principal>) -> Json<TokenSelf> {
    Json(TokenSelf {
        id: who.id,
        name: who.name,
        role: who.role,
        tenants: who.tenants,
        expires_at: who.expires_at,
    })
}

/// `DELETE /tokens/{id}`: `{id}` may be `bootstrap` (or its id, see `GET /tokens/self`) to
/// revoke the environment's bootstrap token for good (rotation: see docs/security.md).
#[utoipa::path(delete, path = "/admin/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "Token id (UUID), or `bootstrap`", pattern = "^(bootstrap|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$")), responses((status = 204, description = "Revoked"), crate::openapi::Errors))]
pub(crate) async fn revoke_token(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    let pool = s.connections.pool();
    let boot = s
        .bootstrap_hash
        .as_deref()
        .map(|h| (h, auth::bootstrap_id(h)));
    let uuid = if id == "bootstrap" {
        None
    } else {
        Some(Uuid::parse_str(&id).map_err(|_| ApiError::BadRequest {
            field: Some("id".into()),
            problem: "not a token id (UUID) or \"bootstrap\"".into(),
        })?)
    };
    if let Some((hash, boot_id)) = boot
        && uuid.is_none_or(|u| u == boot_id)
    {
        if who.tenants != Tenants::All {
            return Err(ApiError::Forbidden(
                "only a token for every tenant may revoke the bootstrap token".into(),
            ));
        }
        let audit = audit_begin(
            &s,
            &who,
            "token.revoke",
            None,
            boot_id.to_string(),
            None,
            None,
        )
        .await?;
        if !auth::revoke_bootstrap(pool, hash).await? {
            return Err(ApiError::NotFound(
                "the bootstrap token is revoked already".into(),
            ));
        }
        audit.commit(None).await;
        return Ok(StatusCode::NO_CONTENT);
    }
    let Some(id) = uuid else {
        return Err(ApiError::NotFound(
            "no bootstrap token is configured".into(),
        ));
    };
    let not_found = || ApiError::NotFound(format!("no active token {id}"));
    let info = auth::get_token(pool, id).await?.ok_or_else(not_found)?;
    // Out of scope looks the same as unknown.
    if !who.tenants.covers(&info.tenants) || info.revoked_at.is_some() {
        return Err(not_found());
    }
    let audit = audit_begin(
        &s,
        &who,
        "token.revoke",
        info.tenants.single(),
        id.to_string(),
        doc(&info),
        None,
    )
    .await?;
    if auth::revoke_token(pool, id).await? {
        audit.commit(None).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

// ---- audit ----

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditListQuery {
    /// Only this tenant's.
    tenant: Option<String>,
    /// Only records at or after this instant (RFC 3339).
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", params(AuditListQuery), responses((status = 200, description = "Newest first", body = Vec<audit::AuditRecord>), crate::openapi::Errors))]
pub(crate) async fn list_audit(
    State(s): State<AdminState>,
    Query(q): Query<AuditListQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<audit::AuditRecord>>, ApiError> {
    if let Some(t) = &q.tenant {
        who.require_tenant(t)?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1..=1000"));
    }
    let query = audit::AuditQuery {
        tenant: q.tenant,
        since: q.since,
        limit,
    };
    Ok(Json(
        audit::list(s.connections.pool(), &who.tenants, &query).await?,
    ))
}

// ---- lookups ----

/// Answer of a successful lookup.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct LookupItems {
    pub(crate) items: Vec<LookupItem>,
}

#[utoipa::path(get, path = "/admin/v1/lookups/{vendor}/{tenant}/{what}", tag = "lookups", params(("vendor" = Vendor, Path, description = "Vendor"), ("tenant" = String, Path, description = "Tenant id"), ("what" = String, Path, description = "What to list (sites, time-restrictions, assets, locks, …: per vendor)"), ("connection" = Option<String>, Query, description = "Connection name (default `default`); other query parameters go to the worker")), responses((status = 200, description = "Items answered by the vendor's worker", body = LookupItems), (status = 502, description = "The vendor refused or failed", body = crate::error::Problem, content_type = "application/problem+json"), (status = 504, description = "No worker answered in time", body = crate::error::Problem, content_type = "application/problem+json"), crate::openapi::Errors))]
pub(crate) async fn lookup(
    State(s): State<AdminState>,
    Path((v, tenant, what)): Path<(String, String, String)>,
    Query(mut params): Query<BTreeMap<String, String>>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    who.require_tenant(&tenant)?;
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

#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/sources/{source}/site-defaults", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source (bex, clock, nexudus, connecx, native, …)")), request_body(content = crate::openapi::SiteDefaults), responses((status = 200, description = "Stored", body = accesshub_connections::TenantSource), crate::openapi::Errors))]
pub(crate) async fn put_site_defaults(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<TenantSource>, ApiError> {
    who.require_tenant(&tenant)?;
    let doc: serde_json::Value = parse_json(&body)?;
    site_defaults_valid(&doc)?;
    let audit = audit_begin(
        &s,
        &who,
        "source.site_defaults.set",
        Some(&tenant),
        format!("{tenant}/{source}"),
        None,
        Some(doc.clone()),
    )
    .await?;
    let src = s
        .tenants
        .set_site_defaults(&tenant, &source, &doc)
        .await?
        .ok_or_else(|| crate::scope::no_source(&tenant, &source))?;
    audit.commit(Some(doc)).await;
    Ok(Json(src))
}

/// 400 naming the first field at fault (`12.timezone`): an unknown IANA zone or a malformed
/// time would otherwise fall back silently and shift every stay of the site.
fn site_defaults_valid(doc: &serde_json::Value) -> Result<(), ApiError> {
    match accesshub_connections::validate_site_defaults(doc)
        .into_iter()
        .next()
    {
        Some(e) => Err(ApiError::BadRequest {
            field: Some(e.field),
            problem: e.problem,
        }),
        None => Ok(()),
    }
}

// ---- syncs ----

/// Body of `POST /syncs`: queue a sync run of one connection (the "Sync" buttons).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Tenant.
    pub tenant: String,
    /// Vendor wire name.
    #[schema(value_type = Vendor)]
    pub vendor: String,
    /// Connection name (default `default`).
    #[serde(default)]
    pub connection: Option<String>,
    /// `upcoming`, `active` or `full`.
    #[schema(pattern = "^(upcoming|active|full)$")]
    pub scope: String,
    /// Days of an `upcoming` scope (default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub days: Option<i64>,
}

/// Answer of `POST /syncs`: 202 when a run was queued, 200 when the connection already had
/// a queued or running one (that run is returned: one run per connection at a time).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncQueued {
    /// Id of the run to follow (`GET /syncs`, `accessctl sync status`).
    pub run_id: i64,
    /// Whether this request queued it (false: an active run already existed).
    pub queued: bool,
    /// The run.
    pub run: accesshub_sync_runs::SyncRun,
}

#[utoipa::path(post, path = "/admin/v1/syncs", tag = "syncs", request_body = SyncRequest, responses((status = 202, description = "Queued", body = SyncQueued), (status = 200, description = "The connection already had an active run: that run", body = SyncQueued), crate::openapi::Errors))]
pub(crate) async fn request_sync(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SyncRequest = parse_json(&body)?;
    who.require_tenant(&req.tenant)?;
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
    let conn = accesshub_sync_runs::ConnectionRef::new(req.tenant, v, name);
    let audit = audit_begin(
        &s,
        &who,
        "sync.request",
        Some(&conn.tenant),
        conn.to_string(),
        None,
        None,
    )
    .await?;
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
    // Already active: nothing queued, the pending record is dropped.
    if queued {
        audit.commit(doc(&run)).await;
    }
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SyncListQuery {
    /// Only this tenant's.
    tenant: Option<String>,
    /// Only this vendor's.
    #[param(value_type = Option<Vendor>)]
    vendor: Option<String>,
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/admin/v1/syncs", tag = "syncs", params(SyncListQuery), responses((status = 200, description = "Newest first", body = Vec<accesshub_sync_runs::SyncRun>), crate::openapi::Errors))]
pub(crate) async fn list_syncs(
    State(s): State<AdminState>,
    Query(q): Query<SyncListQuery>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<accesshub_sync_runs::SyncRun>>, ApiError> {
    if let Some(t) = &q.tenant {
        who.require_tenant(t)?;
    }
    let v = q.vendor.as_deref().map(vendor).transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1..=500"));
    }
    let v = v.map(|v| v.to_string());
    let pool = s.connections.pool();
    let list_runs = |tenant: Option<String>| {
        let v = v.clone();
        async move {
            accesshub_sync_runs::store::list_runs(pool, tenant.as_deref(), v.as_deref(), limit)
                .await
        }
    };
    let runs = match (q.tenant, who.tenants.as_filter()) {
        (Some(t), _) => list_runs(Some(t)).await?,
        (None, None) => list_runs(None).await?,
        // A scoped token without ?tenant=: the newest runs of each of its tenants, merged.
        (None, Some(mine)) => {
            let mut all = Vec::new();
            for t in mine {
                all.extend(list_runs(Some(t)).await?);
            }
            all.sort_by_key(|r| std::cmp::Reverse(r.id));
            all.truncate(usize::try_from(limit).unwrap_or(500));
            all
        }
    };
    Ok(Json(runs))
}
