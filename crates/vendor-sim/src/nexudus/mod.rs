//! Nexudus REST simulator (an upstream, not a lock vendor): holds coworkers and coworker time
//! passes and serves them as the documented API does (VENDORS.md "Upstream APIs"): HTTP
//! Basic authentication, search pages `{Records, CurrentPage, CurrentPageSize, TotalItems,
//! TotalPages, HasNextPage, HasPreviousPage}` with `page` / `size`, filters
//! `CoworkerTimePass_Business`, `CoworkerTimePass_Coworker`, `CoworkerTimePass_Used` and range
//! bounds `from_CoworkerTimePass_UpdatedOn` / `from_CoworkerTimePass_ExpireDate`
//! (`YYYY-MM-DDTHH:mm`), and `GET /api/spaces/coworkers/{id}`. 429 with `Retry-After` is
//! injected on demand. It has no webhook for passes (Nexudus has none).
//!
//! Ours: `size` at most 100 (else 400); errors `{Message}`; times without a zone are UTC.
//! Tests change what it holds through [`NexudusSim`] or `PUT`/`DELETE /_sim/timepasses/{id}`
//! and `PUT /_sim/coworkers/{id}`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use crate::{SimError, upstream::Served};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};

/// User the simulator accepts unless told otherwise.
pub const DEMO_USER: &str = "api@cowork.example";
/// Its password.
pub const DEMO_PASSWORD: &str = "nexudus-demo-password";
/// Largest `size` (ours).
pub const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, Default)]
struct Inner {
    basic: String,
    user: String,
    password: String,
    /// Bearer tokens handed out and still valid.
    tokens: std::collections::BTreeSet<String>,
    /// Refresh tokens handed out.
    refresh_tokens: std::collections::BTreeSet<String>,
    /// `POST /api/token` calls answered.
    token_calls: u64,
    /// UniqueId → pass (PascalCase JSON as Nexudus serves it).
    passes: BTreeMap<String, Value>,
    /// Id → coworker.
    coworkers: BTreeMap<String, Value>,
    throttle_next: u32,
    calls: u64,
}

/// Handle to a running Nexudus simulator; cheap to clone.
#[derive(Clone)]
pub struct NexudusSim {
    inner: Arc<Mutex<Inner>>,
    served: Served,
}

impl std::fmt::Debug for NexudusSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexudusSim")
            .field("addr", &self.served.addr)
            .finish()
    }
}

/// `Basic <base64(user:password)>`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Starts a Nexudus simulator on an ephemeral port of 127.0.0.1 accepting
/// [`DEMO_USER`] / [`DEMO_PASSWORD`].
pub async fn start_ephemeral() -> Result<NexudusSim, SimError> {
    let inner = Arc::new(Mutex::new(Inner {
        basic: basic(DEMO_USER, DEMO_PASSWORD),
        user: DEMO_USER.to_owned(),
        password: DEMO_PASSWORD.to_owned(),
        ..Inner::default()
    }));
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let served = Served::start("nexudus", addr, router(inner.clone())).await?;
    Ok(NexudusSim { inner, served })
}

impl NexudusSim {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Base URL (the API is under `/api`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Creates or replaces a coworker `{Id, FullName, Email}`.
    pub fn put_coworker(&self, id: &str, full_name: &str, email: &str) {
        self.lock().coworkers.insert(
            id.to_owned(),
            json!({
                "Id": id.parse::<i64>().map_or(json!(id), |n| json!(n)),
                "FullName": full_name, "Email": email,
                "UpdatedOn": chrono::Utc::now().to_rfc3339(),
            }),
        );
    }

    /// Creates or replaces a pass (PascalCase fields; `UniqueId` required).
    pub fn put_pass(&self, pass: Value) {
        if let Some(id) = pass["UniqueId"].as_str() {
            let id = id.to_owned();
            self.lock().passes.insert(id, pass);
        }
    }

    /// Deletes a pass; whether it existed.
    pub fn delete_pass(&self, unique_id: &str) -> bool {
        self.lock().passes.remove(unique_id).is_some()
    }

    /// The next `n` API calls answer 429 with `Retry-After: 1`.
    pub fn throttle_next(&self, n: u32) {
        self.lock().throttle_next = n;
    }

    /// API calls served so far (token requests not included).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// `POST /api/token` requests answered so far.
    pub fn token_calls(&self) -> u64 {
        self.lock().token_calls
    }

    /// Every bearer token handed out stops working (as when it expires): the next call with
    /// one is answered 401.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Stops the server.
    pub async fn shutdown(&self) {
        self.served.shutdown().await;
    }
}

type Shared = Arc<Mutex<Inner>>;

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/api/token", axum::routing::post(token))
        .route("/api/billing/coworkertimepasses", get(list_passes))
        .route("/api/spaces/coworkers/{id}", get(get_coworker))
        .route(
            "/_sim/timepasses/{id}",
            put(control_put_pass).delete(control_delete_pass),
        )
        .route("/_sim/coworkers/{id}", put(control_put_coworker))
        .fallback(|| async { message(StatusCode::NOT_FOUND, "Not found") })
        .with_state(inner)
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"Message": text}))).into_response()
}

fn admit(inner: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    g.calls += 1;
    if g.throttle_next > 0 {
        g.throttle_next -= 1;
        let mut r = message(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return Err(r);
    }
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    let bearer_ok = given
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| g.tokens.contains(t));
    if !bearer_ok && given != Some(g.basic.as_str()) {
        let mut r = message(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request.",
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"Nexudus\""),
        );
        return Err(r);
    }
    Ok(())
}

/// `POST /api/token`: form-encoded password or refresh-token grant → `{access_token,
/// token_type, expires_in, refresh_token}`; OAuth2 errors `{error, error_description}`.
async fn token(State(inner): State<Shared>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    let oauth_error = |code: &str, text: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": code, "error_description": text})),
        )
            .into_response()
    };
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return oauth_error("unsupported_grant_type", "The grant type is not supported");
    }
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    g.token_calls += 1;
    let field = |k: &str| form.get(k).map(String::as_str);
    let granted = match field("grant_type") {
        Some("password") => {
            field("username") == Some(g.user.as_str())
                && field("password") == Some(g.password.as_str())
        }
        Some("refresh_token") => {
            field("refresh_token").is_some_and(|t| g.refresh_tokens.contains(t))
        }
        _ => return oauth_error("unsupported_grant_type", "The grant type is not supported"),
    };
    if !granted {
        return oauth_error("invalid_grant", "The user name or password is incorrect.");
    }
    let access = format!("{:032x}", rand::random::<u128>());
    let refresh = format!("{:016x}", rand::random::<u64>());
    g.tokens.insert(access.clone());
    g.refresh_tokens.insert(refresh.clone());
    Json(
        json!({"access_token": access, "token_type": "bearer", "expires_in": 604_799,
                "refresh_token": refresh}),
    )
    .into_response()
}

/// A Nexudus time: RFC 3339, or zone-less (read as UTC), to the minute or second.
fn time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
                .map(|n| n.and_utc())
        })
}

fn id_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

async fn list_passes(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&inner, &headers) {
        return r;
    }
    let bad = |p: &str| message(StatusCode::BAD_REQUEST, &format!("Invalid value for {p}"));
    let num = |name: &str, default: usize| -> Result<usize, Response> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad(name))
        })
    };
    let (page, size) = match (num("page", 1), num("size", 25)) {
        (Ok(p), Ok(s)) if s <= MAX_PAGE_SIZE => (p, s),
        (Err(r), _) | (_, Err(r)) => return r,
        _ => return bad("size"),
    };
    let mut bounds = Vec::new();
    for (param, field) in [
        ("from_CoworkerTimePass_UpdatedOn", "UpdatedOn"),
        ("from_CoworkerTimePass_ExpireDate", "ExpireDate"),
    ] {
        if let Some(v) = q.get(param) {
            match time(v) {
                Some(t) => bounds.push((field, t)),
                None => return bad(param),
            }
        }
    }
    let business = q.get("CoworkerTimePass_Business");
    let coworker = q.get("CoworkerTimePass_Coworker");
    let used = q.get("CoworkerTimePass_Used").map(|v| v == "true");
    let mut records: Vec<Value> = {
        let g = inner.lock().unwrap_or_else(|e| e.into_inner());
        g.passes
            .values()
            .filter(|p| business.is_none_or(|b| id_eq(&p["BusinessId"], b)))
            .filter(|p| coworker.is_none_or(|c| id_eq(&p["CoworkerId"], c)))
            .filter(|p| used.is_none_or(|u| p["Used"].as_bool().unwrap_or(false) == u))
            .filter(|p| {
                bounds.iter().all(|(field, from)| {
                    p[*field]
                        .as_str()
                        .and_then(time)
                        .is_some_and(|t| t >= *from)
                })
            })
            .cloned()
            .collect()
    };
    if q.get("orderBy").map(String::as_str) == Some("UpdatedOn") {
        records.sort_by_key(|p| p["UpdatedOn"].as_str().and_then(time));
        if matches!(q.get("dir").map(String::as_str), Some("Descending" | "1")) {
            records.reverse();
        }
    }
    let total = records.len();
    let pages = total.div_ceil(size).max(1);
    let data: Vec<Value> = records
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Json(json!({
        "Records": data,
        "CurrentPage": page,
        "CurrentPageSize": size,
        "TotalItems": total,
        "TotalPages": pages,
        "HasNextPage": page < pages,
        "HasPreviousPage": page > 1,
    }))
    .into_response()
}

async fn get_coworker(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admit(&inner, &headers) {
        return r;
    }
    let found = inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .coworkers
        .get(&id)
        .cloned();
    match found {
        Some(c) => Json(c).into_response(),
        None => message(StatusCode::NOT_FOUND, "Coworker not found"),
    }
}

async fn control_put_pass(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    Json(mut pass): Json<Value>,
) -> Response {
    if !pass.is_object() {
        return message(StatusCode::BAD_REQUEST, "a pass object is required");
    }
    pass["UniqueId"] = json!(id);
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .passes
        .insert(id, pass);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_delete_pass(State(inner): State<Shared>, Path(id): Path<String>) -> Response {
    let gone = inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .passes
        .remove(&id)
        .is_some();
    if gone {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn control_put_coworker(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    Json(c): Json<Value>,
) -> Response {
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .coworkers
        .insert(id, c);
    StatusCode::NO_CONTENT.into_response()
}
