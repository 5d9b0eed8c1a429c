//! The admin API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request/response types' `ToSchema` derives, served unauthenticated at
//! `GET /admin/v1/openapi.json` and committed as `proto-schemas/admin-openapi.json` (the test
//! `openapi` fails when the two differ, and says how to regenerate).
//!
//! A handler added to [`crate::router`] is annotated with `#[utoipa::path]` and listed in
//! [`AdminApi`]'s `paths(...)`; the test `every_route_is_documented` compares the router's
//! routes with the document.

use std::{borrow::Cow, collections::BTreeMap, sync::LazyLock};

use axum::{
    extract::Request,
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use utoipa::{
    Modify, OpenApi, PartialSchema, ToSchema,
    openapi::{
        ContentBuilder, Ref, RefOr, ResponseBuilder, Schema,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

use crate::error::{PROBLEM_JSON, Problem};

/// The document (see the module docs).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "accesshub admin API",
        version = "1",
        description = "Tenants and their webhook secrets, vendor connections, sync runs, API \
            tokens, the audit log, vendor lookups, dead letters, bookings and status. Every request but this document's carries \
            `Authorization: Bearer <token>`; the token's role (viewer < operator < admin) and \
            tenants decide what it may do. Every error is an RFC 9457 problem \
            (`application/problem+json`); a field at fault is named in `errors[].field` \
            (and `field`, the first of them)."
    ),
    paths(
        serve,
        crate::handlers::list_tenants,
        crate::handlers::create_tenant,
        crate::handlers::get_tenant,
        crate::handlers::put_tenant,
        crate::handlers::delete_tenant,
        crate::handlers::set_source_secret,
        crate::handlers::rotate_source_secret,
        crate::handlers::put_site_defaults,
        crate::scope::put_organization,
        crate::scope::list_ignored,
        crate::upstreams::put_upstream_api,
        crate::upstreams::get_upstream_api,
        crate::upstreams::delete_upstream_api,
        crate::upstreams::put_source_auth,
        crate::handlers::list_syncs,
        crate::handlers::request_sync,
        crate::handlers::list_connections,
        crate::handlers::get_connection,
        crate::handlers::put_connection,
        crate::handlers::delete_connection,
        crate::handlers::list_tokens,
        crate::handlers::create_token,
        crate::handlers::token_self,
        crate::handlers::revoke_token,
        crate::handlers::list_audit,
        crate::handlers::lookup,
        crate::upstreams::bex_lookup,
        crate::dlq::list_dlq,
        crate::dlq::get_dlq,
        crate::dlq::replay_dlq,
        crate::dlq::purge_dlq,
        crate::dlq::list_bookings,
        crate::dlq::get_booking,
        crate::dlq::status,
    ),
    components(schemas(Problem, crate::error::ProblemField, ConnectionDoc, SiteDefaults)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Tenants, their upstream sources' webhook secrets and site defaults"),
        (name = "connections", description = "Vendor connections: idempotent apply with dry-run diffs, offboarding"),
        (name = "syncs", description = "Sync runs, queued for the reconciler"),
        (name = "tokens", description = "API tokens: roles, tenants, expiry"),
        (name = "audit", description = "Every change made through the API"),
        (name = "lookups", description = "Vendor dropdowns answered by the workers over NATS"),
        (name = "dlq", description = "Dead letters: list, show, replay (dry run first), purge (preview first); personal data masked unless an admin asks, audited"),
        (name = "bookings", description = "Bookings: desired state and what each vendor applied"),
        (name = "status", description = "One-screen health: streams, consumers, DLQ depth, last sync runs"),
        (name = "meta", description = "This document"),
    )
)]
pub struct AdminApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    AdminApi::openapi()
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn json() -> String {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut s = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    });
    JSON.clone()
}

/// `GET /admin/v1/openapi.json`: no token needed (the document holds no secret).
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json(),
    )
        .into_response()
}

/// The error answers every operation may give, all `application/problem+json`.
pub(crate) struct Errors;

impl utoipa::IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        [
            (
                400,
                "The body, a query or a path parameter does not parse (`field` names it)",
            ),
            (401, "No, an unknown, a revoked or an expired token"),
            (403, "The token's role or tenants do not allow this"),
            (404, "No such object (or not within the token's tenants)"),
            (
                409,
                "Conflicts with the current state (the detail says what to do)",
            ),
            (422, "Parses but is invalid: every problem names its field"),
            (500, "Internal error (see the service log)"),
            (503, "PostgreSQL or NATS unavailable: retry"),
        ]
        .into_iter()
        .map(|(code, description)| {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(Ref::from_schema_name(Problem::name()))))
                        .build(),
                )
                .build();
            (code.to_string(), RefOr::T(response))
        })
        .collect()
    }
}

/// A schema written as JSON: the types it describes live in crates whose every field is not
/// annotated (vendor settings), or are free-form maps.
fn schema_from(value: serde_json::Value) -> RefOr<Schema> {
    serde_json::from_value(value).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

/// `accesshub_connections::Connection` on the wire: settings are tagged by `vendor`, and
/// their fields differ per vendor (docs/deploy.md and `accessctl connections --help`).
pub struct ConnectionDoc;

impl PartialSchema for ConnectionDoc {
    fn schema() -> RefOr<Schema> {
        schema_from(json!({
            "type": "object",
            "description": "One tenant's connection to one vendor. Secrets are never returned \
                (`***`); sending `***` back keeps the stored secret.",
            "required": ["tenant", "settings"],
            "additionalProperties": false,
            "properties": {
                "tenant": {"type": "string", "description": "Tenant id"},
                "name": {"type": "string", "default": "default",
                         "description": "Unique per tenant and vendor"},
                "enabled": {"type": "boolean", "default": true},
                "sites": {"type": "array", "items": {"type": "string"},
                          "description": "Upstream sites served; empty: every site"},
                "settings": {
                    "type": "object",
                    "description": "Vendor settings, tagged by `vendor`",
                    "required": ["vendor"],
                    "properties": {
                        "vendor": {"type": "string",
                                   "enum": ["cloudpass", "dormakaba", "ipassan", "tapkey"]}
                    },
                    "additionalProperties": true
                },
                "version": {"type": "integer", "format": "int64",
                            "description": "Optimistic-concurrency version"}
            }
        }))
    }
}

impl ToSchema for ConnectionDoc {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Connection")
    }
}

/// Body of `PUT .../site-defaults`: per site id (`*`: every site), check-in/out times and
/// timezone.
pub struct SiteDefaults;

impl PartialSchema for SiteDefaults {
    fn schema() -> RefOr<Schema> {
        let time = json!({"type": "string", "pattern": "^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$",
                          "examples": ["15:00"]});
        schema_from(json!({
            "type": "object",
            "description": "Keyed by site id (`*` for every site).",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "check_in_time": time,
                    "check_out_time": time,
                    "timezone": {"type": "string", "description": "IANA timezone",
                                 "examples": ["Europe/Amsterdam"]}
                }
            }
        }))
    }
}

impl ToSchema for SiteDefaults {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SiteDefaults")
    }
}

/// Middleware: an error answered by axum itself (a query string or path that does not
/// deserialize, a body over the size limit, a method not allowed) becomes a problem document
/// too, naming the query parameter when axum's message does.
pub async fn problem_for_plain_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let mut problem = Problem::new(
        status,
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text.clone()
        },
    );
    if let Some(rest) = text.strip_prefix("Failed to deserialize query string: ")
        && let Some((field, message)) = rest.split_once(": ")
        && !field.is_empty()
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        problem = problem.with_errors(vec![crate::error::ProblemField {
            field: field.to_owned(),
            message: message.to_owned(),
        }]);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut out = problem.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
