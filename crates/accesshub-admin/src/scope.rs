//! Install per administration on the admin API (issue 21): a tenant's source tied to its
//! upstream organization, and the events booking-ingest ignored (site not activated,
//! connection disabled, unmapped) so an operator sees why a booking has no access.

use accesshub_connections::TenantSource;
use axum::{
    Extension, Json,
    extract::{Path, Query, State},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    AdminState,
    auth::Principal,
    error::{ApiError, parse_json},
};

/// Body of `PUT /tenants/{tenant}/sources/{source}/organization`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationBody {
    /// The upstream organization id (BEX organization, Nexudus account, Clock subscription);
    /// `null` unties the source.
    pub organization_id: Option<String>,
}

/// `PUT /tenants/{tenant}/sources/{source}/organization`.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/sources/{source}/organization", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source")), request_body(content = OrganizationBody), responses((status = 200, description = "Stored", body = accesshub_connections::TenantSource), crate::openapi::Errors))]
pub(crate) async fn put_organization(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<TenantSource>, ApiError> {
    who.require_tenant(&tenant)?;
    let b: OrganizationBody = parse_json(&body)?;
    let audit = crate::handlers::audit_begin(
        &s,
        &who,
        "source.organization.set",
        Some(&tenant),
        format!("{tenant}/{source}"),
        None,
        serde_json::to_value(&b).ok(),
    )
    .await?;
    let src = s
        .tenants
        .set_organization(&tenant, &source, b.organization_id.as_deref())
        .await?
        .ok_or_else(|| no_source(&tenant, &source))?;
    audit.commit(serde_json::to_value(&b).ok()).await;
    Ok(Json(src))
}

/// 404 for a source the tenant does not have yet (its webhook secret makes it).
pub(crate) fn no_source(tenant: &str, source: &str) -> ApiError {
    ApiError::NotFound(format!(
        "tenant {tenant:?} has no source {source:?} (set its webhook secret first)"
    ))
}

/// One booking booking-ingest ignored (the store's type, the API's schema).
pub use accesshub_connections::IgnoredBooking;

/// Query of `GET /tenants/{tenant}/ignored`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct IgnoredQuery {
    /// How many, latest first (1–1000, default 100).
    limit: Option<i64>,
}

/// `GET /tenants/{tenant}/ignored?limit=N` (default 100, at most 1000): the latest first.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/ignored", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), IgnoredQuery), responses((status = 200, description = "Ignored bookings, latest first", body = Vec<IgnoredBooking>), crate::openapi::Errors))]
pub(crate) async fn list_ignored(
    State(s): State<AdminState>,
    Path(tenant): Path<String>,
    Extension(who): Extension<Principal>,
    Query(q): Query<IgnoredQuery>,
) -> Result<Json<Vec<IgnoredBooking>>, ApiError> {
    who.require_tenant(&tenant)?;
    if s.tenants.get(&tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown tenant {tenant:?}")));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest {
            field: Some("limit".into()),
            problem: "must be between 1 and 1000".into(),
        });
    }
    Ok(Json(s.tenants.ignored(&tenant, limit).await?))
}
