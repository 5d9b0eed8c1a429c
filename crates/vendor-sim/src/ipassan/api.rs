//! iPassan HTTP handlers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AssetBooking, IpassanState, Person, ProfileKind, Token, error};
use crate::faults::{LayerCtx, vendor_layer};
use crate::state::{SimState, Vendor, lock, new_token};
use crate::util::{bearer, client_credentials, parse_form, parse_ts, ts_secs};

/// The iPassan router (everything under `/api/v1`).
pub(crate) fn router(state: SimState) -> Router {
    let ctx = LayerCtx {
        state: state.clone(),
        vendor: Vendor::IPassan,
    };
    Router::new()
        .route("/api/v1/token", post(token))
        .route("/api/v1/admin/base", get(bases))
        .route("/api/v1/admin/base/{base}/site", get(sites))
        .route(
            "/api/v1/access/site/{site}/person",
            get(persons).post(create_person),
        )
        .route(
            "/api/v1/access/site/{site}/person/{uuid}",
            get(one_person).put(update_person).delete(delete_person),
        )
        .route("/api/v1/access/site/{site}/asset", get(assets))
        .route(
            "/api/v1/access/site/{site}/asset/{asset}/booking",
            get(bookings).post(create_booking),
        )
        .route(
            "/api/v1/access/site/{site}/asset/{asset}/booking/{uuid}",
            delete(delete_booking).get(one_booking),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(ctx, vendor_layer))
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn token(State(st): State<SimState>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let oauth = |status: StatusCode, code: &str, d: &str| {
        (status, Json(json!({"error": code, "error_description": d}))).into_response()
    };
    let (id, secret) = match client_credentials(&form) {
        Ok(c) => c,
        Err((code, d)) => return oauth(StatusCode::BAD_REQUEST, code, d),
    };
    if crate::util::form_get(&form, "scope") != Some("all") {
        return oauth(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope must be \"all\"",
        );
    }
    let ttl = st.inner.other_token_ttl;
    let now = st.now();
    let mut s = lock(&st.inner.ipassan);
    if !s
        .clients
        .iter()
        .any(|c| c.client_id == id && c.client_secret == secret)
    {
        return oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Bad client credentials",
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
    Json(json!({"access_token": tok, "token_type": "bearer", "expires_in": ttl.as_secs(), "scope": "all"}))
        .into_response()
}

/// Bases the token's client may access, or 401.
fn client_bases(
    st: &SimState,
    s: &IpassanState,
    headers: &HeaderMap,
) -> Result<Vec<String>, Response> {
    let tok =
        bearer(headers).ok_or_else(|| error(StatusCode::UNAUTHORIZED, "missing bearer token"))?;
    let t = s
        .tokens
        .get(tok)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "invalid access token"))?;
    if t.expires_at <= st.now() {
        return Err(error(StatusCode::UNAUTHORIZED, "access token expired"));
    }
    Ok(s.clients
        .iter()
        .find(|c| c.client_id == t.client_id)
        .map(|c| c.base_uuids.clone())
        .unwrap_or_default())
}

/// 401 without a valid token; 403 "Access Denied" for an unknown site or one outside the
/// client's bases.
fn site_access(
    st: &SimState,
    s: &IpassanState,
    headers: &HeaderMap,
    site: &str,
) -> Result<(), Response> {
    let bases = client_bases(st, s, headers)?;
    let ok = s
        .sites
        .iter()
        .any(|x| x.uuid.eq_ignore_ascii_case(site) && bases.contains(&x.base_uuid));
    if ok {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, "Access Denied"))
    }
}

/// `limit` (1–500, default 50) and `offset` (or `cursor`) of a list request.
fn page_params(q: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let num = |k: &str| -> Result<Option<usize>, Response> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        &format!("{k} must be a non-negative integer"),
                    )
                })
            })
            .transpose()
    };
    let limit = num("limit")?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 500",
        ));
    }
    let offset = match num("offset")? {
        Some(o) => o,
        None => num("cursor")?.unwrap_or(0),
    };
    Ok((limit, offset))
}

/// `{data, next_cursor}` for one page of `total` items.
fn page_response(data: Vec<Value>, offset: usize, limit: usize, total: usize) -> Response {
    let next = offset.saturating_add(limit);
    let next_cursor = if next < total {
        json!(next)
    } else {
        Value::Null
    };
    Json(json!({"data": data, "next_cursor": next_cursor})).into_response()
}

/// `{data, next_cursor}` from `limit` (1–500, default 50) and `offset` (or `cursor`).
fn paginate(items: Vec<Value>, q: &HashMap<String, String>) -> Result<Response, Response> {
    let (limit, offset) = page_params(q)?;
    let total = items.len();
    let data: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    Ok(page_response(data, offset, limit, total))
}

async fn bases(
    State(st): State<SimState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    let allowed = try_resp!(client_bases(&st, &s, &headers));
    let items = s
        .bases
        .iter()
        .filter(|b| allowed.contains(&b.uuid))
        .map(|b| json!({"name": b.name, "displayname": b.displayname, "uuid": b.uuid}))
        .collect();
    paginate(items, &q).unwrap_or_else(|r| r)
}

async fn sites(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(base): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    let allowed = try_resp!(client_bases(&st, &s, &headers));
    if !allowed.iter().any(|b| b.eq_ignore_ascii_case(&base)) {
        return error(StatusCode::FORBIDDEN, "Access Denied");
    }
    let items = s
        .sites
        .iter()
        .filter(|x| x.base_uuid.eq_ignore_ascii_case(&base))
        .map(|x| json!({"name": x.name, "uuid": x.uuid}))
        .collect();
    paginate(items, &q).unwrap_or_else(|r| r)
}

fn person_json(p: &Person) -> Value {
    json!({
        "uuid": p.uuid, "lastname": p.lastname, "firstname": p.firstname, "phone": p.phone,
        "mail": p.mail, "number": p.number, "type": p.person_type,
        "accessType": {
            "doorPermanent": p.door_permanent, "doorTemporary": p.door_temporary,
            "floorPermanent": p.floor_permanent, "floorTemporary": p.floor_temporary,
        },
    })
}

async fn persons(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    let items = s
        .persons
        .iter()
        .filter(|p| p.site_uuid.eq_ignore_ascii_case(&site))
        .filter(|p| q.get("mail").is_none_or(|m| p.mail.eq_ignore_ascii_case(m)))
        .map(person_json)
        .collect();
    paginate(items, &q).unwrap_or_else(|r| r)
}

async fn one_person(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    match s
        .persons
        .iter()
        .find(|p| p.site_uuid.eq_ignore_ascii_case(&site) && p.uuid == id)
    {
        Some(p) => Json(person_json(p)).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("person {id} not found")),
    }
}

const ACCESS_KEYS: [(&str, ProfileKind); 4] = [
    ("doorPermanent", ProfileKind::Door),
    ("doorTemporary", ProfileKind::Door),
    ("floorPermanent", ProfileKind::Floor),
    ("floorTemporary", ProfileKind::Floor),
];

/// Applies form fields to a person (create or update); errors are 400 messages.
fn apply_form(
    s: &IpassanState,
    site: &str,
    p: &mut Person,
    form: &[(String, String)],
) -> Result<(), String> {
    let mut lists: HashMap<&str, Vec<String>> = HashMap::new();
    for (k, v) in form {
        match k.as_str() {
            "lastname" => p.lastname = v.clone(),
            "firstname" => p.firstname = v.clone(),
            "phone" => p.phone = v.clone(),
            "mail" => {
                if !v.is_empty() && !v.contains('@') {
                    return Err(format!("mail {v:?} is not an e-mail address"));
                }
                p.mail = v.clone();
            }
            "number" => p.number = v.clone(),
            "type" => {
                p.person_type = v
                    .parse::<u8>()
                    .ok()
                    .filter(|t| (1..=3).contains(t))
                    .ok_or_else(|| {
                        format!("type must be 1 (resident), 2 (employee) or 3 (visitor), got {v:?}")
                    })?;
            }
            key => {
                let Some((name, kind)) = ACCESS_KEYS.iter().find(|(n, _)| {
                    key.strip_prefix("accessType[")
                        .is_some_and(|r| r.starts_with(&format!("{n}]")))
                }) else {
                    continue; // unknown fields are ignored, as by the real API
                };
                let list = lists.entry(name).or_default();
                for id in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                    let ok = s.access_profiles.iter().any(|a| {
                        a.uuid == id && a.kind == *kind && a.site_uuid.eq_ignore_ascii_case(site)
                    });
                    if !ok {
                        return Err(format!(
                            "access profile {id} does not exist at this site for {name}"
                        ));
                    }
                    list.push(id.to_owned());
                }
            }
        }
    }
    for (name, list) in lists {
        match name {
            "doorPermanent" => p.door_permanent = list,
            "doorTemporary" => p.door_temporary = list,
            "floorPermanent" => p.floor_permanent = list,
            _ => p.floor_temporary = list,
        }
    }
    if p.lastname.trim().is_empty() {
        return Err("lastname is required".into());
    }
    Ok(())
}

async fn create_person(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    let form = parse_form(&body);
    let mut p = Person {
        uuid: uuid::Uuid::new_v4().to_string(),
        site_uuid: site.clone(),
        lastname: String::new(),
        firstname: String::new(),
        phone: String::new(),
        mail: String::new(),
        number: String::new(),
        person_type: 1,
        door_permanent: vec![],
        door_temporary: vec![],
        floor_permanent: vec![],
        floor_temporary: vec![],
    };
    if let Err(m) = apply_form(&s, &site, &mut p, &form) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    let out = person_json(&p);
    s.persons.push(p);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn update_person(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    let Some(idx) = s
        .persons
        .iter()
        .position(|p| p.site_uuid.eq_ignore_ascii_case(&site) && p.uuid == id)
    else {
        return error(StatusCode::NOT_FOUND, &format!("person {id} not found"));
    };
    let mut p = s.persons[idx].clone();
    if let Err(m) = apply_form(&s, &site, &mut p, &parse_form(&body)) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    let out = person_json(&p);
    s.persons[idx] = p;
    Json(out).into_response()
}

async fn delete_person(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    let before = s.persons.len();
    s.persons
        .retain(|p| !(p.site_uuid.eq_ignore_ascii_case(&site) && p.uuid == id));
    if s.persons.len() == before {
        return error(StatusCode::NOT_FOUND, &format!("person {id} not found"));
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn assets(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    let items = s
        .assets
        .iter()
        .filter(|a| a.site_uuid.eq_ignore_ascii_case(&site))
        .map(|a| {
            json!({
                "uuid": a.uuid, "name": a.name, "type": "Asset Booking", "display": a.display,
                "time_slot_minutes": a.time_slot_minutes, "max_booking_minutes": a.max_booking_minutes,
                "one_booking_per_slot": a.one_booking_per_slot,
                "door_access_profile": a.door_profile_uuid, "floor_access_profile": a.floor_profile_uuid,
            })
        })
        .collect();
    paginate(items, &q).unwrap_or_else(|r| r)
}

fn booking_json(b: &AssetBooking) -> Value {
    json!({
        "uuid": b.uuid, "asset_uuid": b.asset_uuid, "person_uuid": b.person_uuid,
        "start": ts_secs(&b.start), "end": ts_secs(&b.end),
        "reference": b.reference, "title": b.title, "created_at": ts_secs(&b.created_at),
    })
}

fn asset_exists(s: &IpassanState, site: &str, asset: &str) -> Result<(), Response> {
    if s.assets
        .iter()
        .any(|a| a.uuid == asset && a.site_uuid.eq_ignore_ascii_case(site))
    {
        Ok(())
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            &format!("asset {asset} not found"),
        ))
    }
}

async fn bookings(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, asset)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    try_resp!(asset_exists(&s, &site, &asset));
    let (limit, offset) = try_resp!(page_params(&q));
    let person = q.get("person_uuid");
    match q.get("reference") {
        // Unfiltered: straight from the index, O(log N + limit) per page.
        None if person.is_none() => {
            let data = s
                .asset_bookings
                .page(&asset, offset, limit)
                .map(booking_json)
                .collect();
            page_response(data, offset, limit, s.asset_bookings.count(&asset))
        }
        r => {
            let matching: Vec<&AssetBooking> = match r {
                Some(r) => s.asset_bookings.with_reference(&asset, r),
                None => s.asset_bookings.of_asset(&asset).collect(),
            };
            let matching: Vec<&AssetBooking> = matching
                .into_iter()
                .filter(|b| person.is_none_or(|p| &b.person_uuid == p))
                .collect();
            let data = matching
                .iter()
                .skip(offset)
                .take(limit)
                .map(|b| booking_json(b))
                .collect();
            page_response(data, offset, limit, matching.len())
        }
    }
}

async fn one_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, asset, id)): Path<(String, String, String)>,
) -> Response {
    let s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    try_resp!(asset_exists(&s, &site, &asset));
    match s.asset_bookings.get(&asset, &id) {
        Some(b) => Json(booking_json(b)).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("booking {id} not found")),
    }
}

#[derive(Debug, Deserialize)]
struct BookingBody {
    person_uuid: Option<String>,
    start: Option<String>,
    end: Option<String>,
    reference: Option<String>,
    title: Option<String>,
}

fn unprocessable(m: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, m)
}

fn on_slot(t: &DateTime<Utc>, slot: u32) -> bool {
    t.second() == 0 && t.nanosecond() == 0 && (t.hour() * 60 + t.minute()).is_multiple_of(slot)
}

/// The asset-booking rules; the error is the 422 message.
fn check_booking(
    s: &IpassanState,
    asset_id: &str,
    b: &BookingBody,
) -> Result<(String, DateTime<Utc>, DateTime<Utc>), String> {
    let asset = s
        .assets
        .iter()
        .find(|a| a.uuid == asset_id)
        .ok_or_else(|| format!("asset {asset_id} not found"))?;
    let person_id = b.person_uuid.as_deref().ok_or("person_uuid is required")?;
    let person = s
        .persons
        .iter()
        .find(|p| p.uuid == person_id && p.site_uuid.eq_ignore_ascii_case(&asset.site_uuid))
        .ok_or_else(|| format!("person {person_id} does not exist at this site"))?;
    let start = b
        .start
        .as_deref()
        .and_then(parse_ts)
        .ok_or("start is required and must be an ISO-8601 timestamp")?;
    let end = b
        .end
        .as_deref()
        .and_then(parse_ts)
        .ok_or("end is required and must be an ISO-8601 timestamp")?;
    if end <= start {
        return Err("end must be after start".into());
    }
    let slot = asset.time_slot_minutes;
    if !on_slot(&start, slot) || !on_slot(&end, slot) {
        return Err(format!(
            "start and end must be on {slot}-minute time slot boundaries of asset {}",
            asset.name
        ));
    }
    let minutes = (end - start).num_minutes();
    if minutes > i64::from(asset.max_booking_minutes) {
        return Err(format!(
            "booking of {minutes} minutes exceeds the maximum booking time of {} minutes of asset {}",
            asset.max_booking_minutes, asset.name
        ));
    }
    let profile_name = |id: &str| {
        s.access_profiles
            .iter()
            .find(|p| p.uuid == id)
            .map_or_else(|| id.to_owned(), |p| p.name.clone())
    };
    if let Some(door) = &asset.door_profile_uuid
        && !person.door_permanent.contains(door)
        && !person.door_temporary.contains(door)
    {
        return Err(format!(
            "person {person_id} does not hold the door/zone access profile '{}' ({door}) required by asset {}",
            profile_name(door),
            asset.name
        ));
    }
    if let Some(floor) = &asset.floor_profile_uuid
        && !person.floor_permanent.contains(floor)
        && !person.floor_temporary.contains(floor)
    {
        return Err(format!(
            "person {person_id} does not hold the floor access profile '{}' ({floor}) required by asset {}",
            profile_name(floor),
            asset.name
        ));
    }
    if asset.one_booking_per_slot
        && let Some(other) = s
            .asset_bookings
            .of_asset(asset_id)
            .find(|x| x.start < end && start < x.end)
    {
        return Err(format!(
            "asset {} allows one booking per time slot and booking {} already holds {} - {}",
            asset.name,
            other.uuid,
            ts_secs(&other.start),
            ts_secs(&other.end)
        ));
    }
    Ok((person_id.to_owned(), start, end))
}

async fn create_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, asset)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let now = st.now();
    let mut s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    try_resp!(asset_exists(&s, &site, &asset));
    let b: BookingBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")),
    };
    let (person, start, end) = match check_booking(&s, &asset, &b) {
        Ok(v) => v,
        Err(m) => return unprocessable(&m),
    };
    let booking = AssetBooking {
        uuid: uuid::Uuid::new_v4().to_string(),
        asset_uuid: asset,
        site_uuid: site,
        person_uuid: person,
        start,
        end,
        reference: b.reference,
        title: b.title,
        created_at: now,
    };
    let out = booking_json(&booking);
    s.asset_bookings.insert(booking);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn delete_booking(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((site, asset, id)): Path<(String, String, String)>,
) -> Response {
    let mut s = lock(&st.inner.ipassan);
    try_resp!(site_access(&st, &s, &headers, &site));
    try_resp!(asset_exists(&s, &site, &asset));
    if s.asset_bookings.remove(&asset, &id).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("booking {id} not found"));
    }
    StatusCode::NO_CONTENT.into_response()
}
