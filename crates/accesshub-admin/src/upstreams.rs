//! How accesshub reads a tenant's booking system (issue 21): the API base URL and credentials
//! of a source (`bex`: the API key; `nexudus`: `user:password`; `clock`: `user:api key`),
//! sealed like vendor secrets, never returned. `PUT|GET|DELETE
//! /tenants/{tenant}/sources/{source}/api` (changes need `admin`, reads `viewer`); and how a
//! source's webhooks authenticate (`PUT /tenants/{tenant}/sources/{source}/auth`
//! `{"mode": "signature" | "token"}`; `token` only for Clock, whose signing is not public).
//! And what a mapping screen needs from the booking system itself: `GET
//! /lookups/bex/{tenant}/administrations|rentables` (BEX administrations of the tenant's
//! organization; an administration's rentables, the object ids a dormakaba room map is keyed
//! by), read with the tenant's stored BEX API key by [`accesshub_upstreams::lookup`], which the
//! console's mapping forms use too.

use std::collections::BTreeMap;

use axum::{
    Extension, Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use bytes::Bytes;
use serde::Deserialize;

use accesshub_upstreams::{
    UpstreamCredentials, UpstreamError,
    creds::UpstreamInfo,
    lookup::{BexLookup, BexLookupError},
};

use crate::{
    AdminState,
    auth::Principal,
    error::{ApiError, parse_json},
    handlers::LookupItems,
};

/// Sources accesshub can pull from.
pub const PULL_SOURCES: [&str; 3] = ["bex", "nexudus", "clock"];

/// `PUT` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamApiRequest {
    /// API base URL.
    base_url: String,
    /// BEX: the API key; Nexudus: user:password; Clock: user:api key (write-only).
    secret: String,
    /// Options, e.g. `{"lookback_days": 30, "guests": true}`.
    #[serde(default)]
    options: serde_json::Value,
}

fn upstream_error(e: UpstreamError) -> ApiError {
    tracing::warn!(error = %e, "upstream credentials");
    match e {
        UpstreamError::Db(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_foreign_key_violation()) =>
        {
            ApiError::NotFound("unknown tenant".into())
        }
        UpstreamError::Db(_) => ApiError::Unavailable("database unavailable".into()),
        _ => ApiError::Internal,
    }
}

fn check_source(source: &str) -> Result<(), ApiError> {
    if PULL_SOURCES.contains(&source) {
        Ok(())
    } else {
        Err(ApiError::field(
            "source",
            format!("no pull for {source:?} (bex, nexudus, clock)"),
        ))
    }
}

/// `PUT /tenants/{tenant}/sources/{source}/api`.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/sources/{source}/api", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source")), request_body(content = UpstreamApiRequest), responses((status = 200, description = "Stored (secret masked)", body = accesshub_upstreams::creds::UpstreamInfo), crate::openapi::Errors))]
pub(crate) async fn put_upstream_api(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<UpstreamInfo>, ApiError> {
    who.require_tenant(&tenant)?;
    check_source(&source)?;
    let req: UpstreamApiRequest = parse_json(&body)?;
    if !accesshub_upstreams::creds::valid_base_url(&req.base_url) {
        return Err(ApiError::field("base_url", "must be an http(s) URL"));
    }
    if req.secret.trim().is_empty() {
        return Err(ApiError::field("secret", "must not be empty"));
    }
    if source != "bex" && !req.secret.contains(':') {
        return Err(ApiError::field(
            "secret",
            "must be user:password (or user:api key)",
        ));
    }
    if !(req.options.is_null() || req.options.is_object()) {
        return Err(ApiError::field("options", "must be an object"));
    }
    let audit =
        crate::handlers::audit_upstream(&s, &who, "upstream.api.set", &tenant, &source).await?;
    let info = s
        .upstreams
        .set(
            &tenant,
            &source,
            &UpstreamCredentials {
                base_url: req.base_url,
                secret: req.secret,
                options: req.options,
            },
        )
        .await
        .map_err(upstream_error)?;
    audit.commit(serde_json::to_value(&info).ok()).await;
    Ok(Json(info))
}

/// `GET /tenants/{tenant}/sources/{source}/api` (no secret).
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/sources/{source}/api", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source")), responses((status = 200, description = "Stored (secret masked)", body = accesshub_upstreams::creds::UpstreamInfo), crate::openapi::Errors))]
pub(crate) async fn get_upstream_api(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
) -> Result<Json<UpstreamInfo>, ApiError> {
    who.require_tenant(&tenant)?;
    s.upstreams
        .list(&tenant)
        .await
        .map_err(upstream_error)?
        .into_iter()
        .find(|i| i.source == source)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no API credentials for {tenant}/{source}")))
}

/// `DELETE /tenants/{tenant}/sources/{source}/api`.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/sources/{source}/api", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source")), responses((status = 204, description = "Deleted"), crate::openapi::Errors))]
pub(crate) async fn delete_upstream_api(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    who.require_tenant(&tenant)?;
    let audit =
        crate::handlers::audit_upstream(&s, &who, "upstream.api.delete", &tenant, &source).await?;
    if !s
        .upstreams
        .delete(&tenant, &source)
        .await
        .map_err(upstream_error)?
    {
        return Err(ApiError::NotFound(format!(
            "no API credentials for {tenant}/{source}"
        )));
    }
    audit.commit(None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sources whose webhooks may authenticate with the secret itself.
pub const TOKEN_SOURCES: [&str; 1] = ["clock"];

/// `PUT .../auth` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthModeRequest {
    /// `signature` or `token` (clock only).
    mode: String,
}

/// `PUT /tenants/{tenant}/sources/{source}/auth`: `{"mode": "signature" | "token"}`. Takes
/// effect in booking-ingest within its secret cache's ttl.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/sources/{source}/auth", tag = "tenants", params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Upstream source")), request_body(content = AuthModeRequest), responses((status = 200, description = "Stored", body = serde_json::Value), crate::openapi::Errors))]
pub(crate) async fn put_source_auth(
    State(s): State<AdminState>,
    Path((tenant, source)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require_tenant(&tenant)?;
    let req: AuthModeRequest = parse_json(&body)?;
    match req.mode.as_str() {
        "signature" => {}
        "token" if TOKEN_SOURCES.contains(&source.as_str()) => {}
        "token" => {
            return Err(ApiError::field(
                "mode",
                format!("{source} webhooks are signed by the sender; token is for clock only"),
            ));
        }
        _ => return Err(ApiError::field("mode", "must be signature or token")),
    }
    let after = serde_json::json!({"tenant": tenant, "source": source, "auth": req.mode});
    let audit = crate::handlers::audit_source_auth(&s, &who, &tenant, &source, &after).await?;
    let updated = sqlx::query(
        "UPDATE tenant_sources SET auth = $3, updated_at = now()
          WHERE tenant_id = $1 AND source = $2",
    )
    .bind(&tenant)
    .bind(&source)
    .bind(&req.mode)
    .execute(s.connections.pool())
    .await
    .map_err(|_| ApiError::Unavailable("database unavailable".into()))?
    .rows_affected();
    if updated == 0 {
        return Err(ApiError::NotFound(format!(
            "no source {tenant}/{source} (set its webhook secret first)"
        )));
    }
    audit.commit(Some(after.clone())).await;
    Ok(Json(after))
}

// ---- look-ups in the booking system ----

/// `GET /lookups/bex/{tenant}/{what}`: what a mapping screen needs from BEX, read with the
/// tenant's stored API key — `administrations` (the CloudPass mapping's administrations; only
/// those of the tenant's organization when it is tied to one, `detail` naming the
/// organization) or `rentables` of `?administration=ID` (the object ids reservations
/// reference, which a dormakaba connection's `rooms` map turns into lock-system room
/// numbers; `detail` = the administration). The base URL must satisfy the egress policy.
#[utoipa::path(get, path = "/admin/v1/lookups/bex/{tenant}/{what}", tag = "lookups", params(("tenant" = String, Path, description = "Tenant id"), ("what" = String, Path, description = "`administrations` or `rentables`"), ("administration" = Option<String>, Query, description = "BEX administration id (required for `rentables`)")), responses((status = 200, description = "Items answered by BEX", body = LookupItems), (status = 502, description = "BEX refused or failed, or its base URL is outside the egress policy", body = crate::error::Problem, content_type = "application/problem+json"), crate::openapi::Errors))]
pub(crate) async fn bex_lookup(
    State(s): State<AdminState>,
    Path((tenant, what)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<LookupItems>, ApiError> {
    who.require_tenant(&tenant)?;
    let administration = params
        .get("administration")
        .filter(|a| !a.trim().is_empty());
    if what == "rentables" && administration.is_none() {
        return Err(ApiError::BadRequest {
            field: Some("administration".into()),
            problem: "rentables of which administration? (?administration=ID)".into(),
        });
    }
    if what != "rentables" && what != "administrations" {
        return Err(ApiError::BadRequest {
            field: Some("what".into()),
            problem: format!("BEX look-ups are administrations and rentables, not {what:?}"),
        });
    }
    let bex = BexLookup::open(&s.upstreams, &s.tenants, s.connections.egress(), &tenant)
        .await
        .map_err(lookup_failed)?;
    let items = match administration {
        Some(admin) if what == "rentables" => bex.rentables(std::slice::from_ref(admin)).await,
        _ => bex.administrations().await,
    }
    .map_err(lookup_failed)?;
    Ok(Json(LookupItems { items }))
}

/// The look-up's failure as the API answers it: no credentials 404 (saying what to set), an
/// administration of another organization 422 at `administration`, a base URL outside the
/// egress policy or BEX's refusal 502 (its message scrubbed: it may quote the answer).
fn lookup_failed(e: BexLookupError) -> ApiError {
    match e {
        BexLookupError::NoCredentials { tenant } => ApiError::NotFound(format!(
            "tenant {tenant:?} has no BEX API credentials (PUT /admin/v1/tenants/{tenant}/sources/bex/api)"
        )),
        BexLookupError::Credentials(e) => upstream_error(e),
        BexLookupError::Tenants(e) => e.into(),
        e @ BexLookupError::Egress(_) => ApiError::BadGateway(e.to_string()),
        BexLookupError::ForeignAdministration { theirs, ours, .. } => ApiError::field(
            "administration",
            format!("belongs to organization {theirs}, not the tenant's {ours}"),
        ),
        BexLookupError::Bex(e) => {
            tracing::warn!(error = %e, "bex look-up");
            match e {
                UpstreamError::Db(_) => ApiError::Unavailable("database unavailable".into()),
                UpstreamError::Secret(_) => ApiError::Unavailable(
                    "the BEX API key cannot be decrypted with the configured keys".into(),
                ),
                other => ApiError::BadGateway(vendor_http::scrub(&format!("bex: {other}"))),
            }
        }
    }
}
