//! CloudPass HTTP handlers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiUser, CloudPassState, Token, VehicleBooking, error, normalize_plate};
use crate::faults::{LayerCtx, vendor_layer};
use crate::state::{SimState, Vendor, lock, new_token};
use crate::util::{bearer, client_credentials, parse_form, parse_ts, ts_secs};

/// The CloudPass router (token endpoint + `/api/v1`), wrapped by the fault/call-log layer.
pub(crate) fn router(state: SimState) -> Router {
    let ctx = LayerCtx {
        state: state.clone(),
        vendor: Vendor::CloudPass,
    };
    Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v1/sites", get(sites))
        .route(
            "/api/v1/sites/{site}/time-restrictions",
            get(time_restrictions),
        )
        .route(
            "/api/v1/sites/{site}/vehicle-bookings",
            get(list_bookings).post(create_booking),
        )
        .route(
            "/api/v1/sites/{site}/vehicle-bookings/{id}",
            get(get_booking).patch(patch_booking).delete(delete_booking),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(ctx, vendor_layer))
}

async fn token(State(st): State<SimState>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let (id, secret) = match client_credentials(&form) {
        Ok(c) => c,
        Err((code, d)) => return error(StatusCode::BAD_REQUEST, code, d),
    };
    let ttl = st.inner.other_token_ttl;
    let now = st.now();
    let mut s = lock(&st.inner.cloudpass);
    if !s
        .api_users
        .iter()
        .any(|u| u.client_id == id && u.client_secret == secret)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client id or wrong secret",
        );
    }
    let tok = new_token();
    s.tokens.insert(
        tok.clone(),
        Token {
            client_id: id.to_owned(),
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
        },
    );
    Json(json!({"access_token": tok, "token_type": "Bearer", "expires_in": ttl.as_secs()}))
        .into_response()
}

/// Checks the bearer token and the API user's permission; the user, for its sites.
fn authorize<'s>(
    st: &SimState,
    s: &'s CloudPassState,
    headers: &HeaderMap,
) -> Result<&'s ApiUser, Response> {
    let unauthorized = |m: &str| error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let tok = bearer(headers).ok_or_else(|| unauthorized("missing bearer token"))?;
    let t = s
        .tokens
        .get(tok)
        .ok_or_else(|| unauthorized("invalid access token"))?;
    if t.expires_at <= st.now() {
        return Err(unauthorized("access token expired"));
    }
    let user = s
        .api_users
        .iter()
        .find(|u| u.client_id == t.client_id)
        .ok_or_else(|| unauthorized("API user no longer exists"))?;
    if !user.has_permission {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the API user lacks the permission for this action; check the API user's permissions on the CloudPass website",
        ));
    }
    Ok(user)
}

/// The site, if it exists in the API user's account: another account's site is "not found".
fn site_exists(s: &CloudPassState, user: &ApiUser, site: &str) -> Result<(), Response> {
    if s.sites.iter().any(|x| x.id == site) && user.sees(site) {
        Ok(())
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("site {site} not found"),
        ))
    }
}

fn wire(b: &VehicleBooking) -> serde_json::Value {
    json!({
        "id": b.id,
        "reference": b.reference,
        "license_plate": b.license_plate,
        "valid_from": ts_secs(&b.valid_from),
        "valid_until": ts_secs(&b.valid_until),
        "time_restriction_id": b.time_restriction_id,
        "name": b.name,
        "created_at": ts_secs(&b.created_at),
    })
}

async fn sites(State(st): State<SimState>, headers: HeaderMap) -> Response {
    let s = lock(&st.inner.cloudpass);
    let user = match authorize(&st, &s, &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let data: Vec<_> = s
        .sites
        .iter()
        .filter(|x| user.sees(&x.id))
        .map(|x| json!({"id": x.id, "name": x.name}))
        .collect();
    Json(json!({ "data": data })).into_response()
}

async fn time_restrictions(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> Response {
    let s = lock(&st.inner.cloudpass);
    if let Err(r) = authorize(&st, &s, &headers).and_then(|u| site_exists(&s, u, &site)) {
        return r;
    }
    let data: Vec<_> = s
        .time_restrictions
        .iter()
        .filter(|t| t.site_id == site)
        .map(|t| json!({"id": t.id, "name": t.name}))
        .collect();
    Json(json!({ "data": data })).into_response()
}

fn parse_positive(q: &HashMap<String, String>, key: &str, default: u64) -> Result<u64, Response> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                &format!("{key} must be a positive integer"),
            )
        }),
    }
}

async fn list_bookings(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.cloudpass);
    if let Err(r) = authorize(&st, &s, &headers).and_then(|u| site_exists(&s, u, &site)) {
        return r;
    }
    let page = match parse_positive(&q, "page", 1) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let per_page = match parse_positive(&q, "per_page", 25) {
        Ok(p) if p <= 100 => p,
        Ok(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "per_page must be between 1 and 100",
            );
        }
        Err(r) => return r,
    };
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let per_page_n = usize::try_from(per_page).unwrap_or(100);
    // Indexed: a page costs O(log N + per_page), not a scan of every booking.
    let filter = q
        .get("reference")
        .filter(|_| !s.modes.ignore_reference_filter);
    let (total, data): (usize, Vec<_>) = match filter {
        // Zero or one match, unless de-duplication is off (or copies were inserted raw).
        Some(r) => {
            let all = s.vehicle_bookings.with_reference(&site, r);
            let data = all.iter().skip(skip).take(per_page_n).map(|b| wire(b));
            (all.len(), data.collect())
        }
        None => (
            s.vehicle_bookings.count(&site),
            s.vehicle_bookings
                .page(&site, skip, per_page_n)
                .map(wire)
                .collect(),
        ),
    };
    Json(json!({"data": data, "meta": {"page": page, "per_page": per_page, "total": total}}))
        .into_response()
}

/// Create/patch body; every field optional so missing ones give a 422 naming them.
#[derive(Debug, Default, Deserialize)]
struct BookingBody {
    reference: Option<String>,
    license_plate: Option<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
    time_restriction_id: Option<String>,
    name: Option<String>,
}

fn parse_body(body: &[u8]) -> Result<BookingBody, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("invalid JSON body: {e}"),
        )
    })
}

fn invalid(message: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        message,
    )
}

/// Validates the fields of a (complete) booking and returns the normalised values.
fn validate(
    s: &CloudPassState,
    site: &str,
    plate: &str,
    from: &str,
    until: &str,
    tr: &str,
) -> Result<
    (
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ),
    Response,
> {
    let plate = normalize_plate(plate).ok_or_else(|| {
        invalid(&format!(
            "license_plate {plate:?} is invalid: after removing spaces and dashes it must be 2-10 letters or digits"
        ))
    })?;
    let from_ts = parse_ts(from)
        .ok_or_else(|| invalid("valid_from must be an ISO-8601 timestamp with offset"))?;
    let until_ts = parse_ts(until)
        .ok_or_else(|| invalid("valid_until must be an ISO-8601 timestamp with offset"))?;
    if until_ts <= from_ts {
        return Err(invalid("valid_until must be after valid_from"));
    }
    if !s
        .time_restrictions
        .iter()
        .any(|t| t.site_id == site && t.id == tr)
    {
        return Err(invalid(&format!(
            "time_restriction_id {tr} does not exist at site {site}"
        )));
    }
    Ok((plate, from_ts, until_ts))
}

fn conflict(existing: &VehicleBooking) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": {
            "code": "conflict",
            "message": format!("a vehicle booking with reference {} already exists", existing.reference),
            "existing_id": existing.id,
        }})),
    )
        .into_response()
}

async fn create_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: Bytes,
) -> Response {
    let now = st.now();
    let dedupe = st.dedupe(Vendor::CloudPass);
    let mut s = lock(&st.inner.cloudpass);
    if let Err(r) = authorize(&st, &s, &headers).and_then(|u| site_exists(&s, u, &site)) {
        return r;
    }
    let b = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let missing: Vec<&str> = [
        ("reference", b.reference.as_deref()),
        ("license_plate", b.license_plate.as_deref()),
        ("valid_from", b.valid_from.as_deref()),
        ("valid_until", b.valid_until.as_deref()),
        ("time_restriction_id", b.time_restriction_id.as_deref()),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_none_or(|v| v.trim().is_empty()))
    .map(|(k, _)| k)
    .collect();
    if !missing.is_empty() {
        return invalid(&format!("missing required fields: {}", missing.join(", ")));
    }
    let (Some(reference), Some(plate), Some(from), Some(until), Some(tr)) = (
        b.reference,
        b.license_plate,
        b.valid_from,
        b.valid_until,
        b.time_restriction_id,
    ) else {
        return invalid("missing required fields");
    };
    if dedupe && let Some(existing) = s.vehicle_bookings.by_reference(&site, &reference) {
        return conflict(existing);
    }
    let (plate, from_ts, until_ts) = match validate(&s, &site, &plate, &from, &until, &tr) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let booking = VehicleBooking {
        id: uuid::Uuid::new_v4().to_string(),
        site_id: site,
        reference,
        license_plate: plate,
        valid_from: from_ts,
        valid_until: until_ts,
        time_restriction_id: tr,
        name: b.name,
        created_at: now,
    };
    let out = wire(&booking);
    s.vehicle_bookings.insert(booking);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn get_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
) -> Response {
    let s = lock(&st.inner.cloudpass);
    if let Err(r) = authorize(&st, &s, &headers).and_then(|u| site_exists(&s, u, &site)) {
        return r;
    }
    match s.vehicle_bookings.get(&site, &id) {
        Some(b) => Json(wire(b)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("vehicle booking {id} not found"),
        ),
    }
}

async fn patch_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let dedupe = st.dedupe(Vendor::CloudPass);
    let mut s = lock(&st.inner.cloudpass);
    if let Err(r) = authorize(&st, &s, &headers).and_then(|u| site_exists(&s, u, &site)) {
        return r;
    }
    let b = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(cur) = s.vehicle_bookings.get(&site, &id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("vehicle booking {id} not found"),
        );
    };
    if let Some(r) = &b.reference {
        if r.trim().is_empty() {
            return invalid("reference must not be empty");
        }
        if let Some(other) = s
            .vehicle_bookings
            .with_reference(&site, r)
            .into_iter()
            .find(|x| dedupe && x.id != id)
        {
            return conflict(other);
        }
    }
    let plate = b.license_plate.unwrap_or(cur.license_plate.clone());
    let from = b.valid_from.unwrap_or_else(|| ts_secs(&cur.valid_from));
    let until = b.valid_until.unwrap_or_else(|| ts_secs(&cur.valid_until));
    let tr = b
        .time_restriction_id
        .unwrap_or(cur.time_restriction_id.clone());
    let (plate, from_ts, until_ts) = match validate(&s, &site, &plate, &from, &until, &tr) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let updated = s.vehicle_bookings.update(&site, &id, |entry| {
        if let Some(r) = b.reference {
            entry.reference = r;
        }
        entry.license_plate = plate;
        entry.valid_from = from_ts;
        entry.valid_until = until_ts;
        entry.time_restriction_id = tr;
        if b.name.is_some() {
            entry.name = b.name;
        }
    });
    match updated {
        Some(entry) => Json(wire(entry)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("vehicle booking {id} not found"),
        ),
    }
}

async fn delete_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&st.inner.cloudpass);
    if let Err(r) = authorize(&st, &s, &headers).and_then(|u| site_exists(&s, u, &site)) {
        return r;
    }
    if s.vehicle_bookings.remove(&site, &id).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("vehicle booking {id} not found"),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}
