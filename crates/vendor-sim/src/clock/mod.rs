//! Clock PMS+ PMS API simulator (an upstream, not a lock vendor): holds bookings per account
//! and serves them as the documented API does (VENDORS.md "Upstream APIs"; docs/upstreams.md):
//! `/{pms_api}/{subscription}/{account}/bookings/`, **HTTP Digest** authentication of an API
//! user and its API key (RFC 7616, MD5, `qop=auth`: 401 with a challenge, a replayed or
//! foreign nonce, a wrong key or a `uri` other than the request's is 401 again), a rate limit
//! of **5 calls per second** per API user (429 beyond; injected on demand too), and filters on
//! first-level attributes with the documented operators `eq, not_eq, gt, gteq, lt, lteq`
//! (anything else is 400).
//!
//! Bookings are served as given; a booking references its room (`arrival_room_id`,
//! `current_room_id`) and guest profile (`main_booking_guest`) as Clock's do, and the
//! simulator serves those too: `GET …/rooms` and `…/rooms/{id}` (`{id, name,
//! room_type_id}`) of the account, `GET …/guests/{id}` (the guests table's fields). Tests add
//! them with [`ClockSim::put_room`] / [`ClockSim::put_guest`]; [`ClockSim::calls_to`] counts
//! the look-ups. [`ClockSim::seed_demo`] fills an account for `make dev`.
//!
//! Ours (not public): filters written `attr[op]=value`; paging `page` (from 1) and `per_page`
//! (default 20, at most 100, else 400); a list answered as a JSON array ordered by id; errors
//! `{"error": "..."}` (the shape Clock answers a missing right with), a 401 body as Rails'
//! digest authentication writes it; the realm [`REALM`]. Tests change what it holds through
//! [`ClockSim`] or `PUT`/`DELETE /_sim/accounts/{a}/bookings/{id}` and `POST /_sim/throttle/{n}`.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{SimError, upstream::Served};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde_json::{Value, json};

/// Subscription of the demo account.
pub const DEMO_SUBSCRIPTION: &str = "176987";
/// The demo account (a property: our site).
pub const DEMO_ACCOUNT: &str = "16449";
/// API user the simulator accepts unless told otherwise.
pub const DEMO_USER: &str = "accesshub_api";
/// Its API key.
pub const DEMO_API_KEY: &str = "clock-demo-api-key";
/// Digest realm (ours).
pub const REALM: &str = "Clock PMS+ API";
/// Documented: 5 calls per second per API user.
pub const RATE_PER_SEC: usize = 5;
/// Largest `per_page` (ours).
pub const MAX_PER_PAGE: usize = 100;
/// `per_page` when none is given (ours).
pub const DEFAULT_PER_PAGE: usize = 20;

#[derive(Debug)]
struct Inner {
    user: String,
    api_key: String,
    subscription: String,
    /// Account → booking id → booking (served as held).
    accounts: BTreeMap<String, BTreeMap<i64, Value>>,
    /// Account → room id → room `{id, name, room_type_id}`.
    rooms: BTreeMap<String, BTreeMap<i64, Value>>,
    /// Guest profiles of the subscription by id.
    guests: BTreeMap<i64, Value>,
    /// Paths of the API calls answered past authentication and the rate limit, oldest first.
    paths: Vec<String>,
    /// Nonces handed out → the highest `nc` seen with each.
    nonces: HashMap<String, u32>,
    /// Calls of the last second (the rate limit).
    recent: VecDeque<Instant>,
    throttle_next: u32,
    calls: u64,
}

/// Handle to a running Clock PMS+ simulator; cheap to clone.
#[derive(Clone)]
pub struct ClockSim {
    inner: Arc<Mutex<Inner>>,
    served: Served,
}

impl std::fmt::Debug for ClockSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockSim")
            .field("addr", &self.served.addr)
            .finish()
    }
}

/// Starts a simulator on `addr` (port 0: any free port) for `user` / `api_key`.
pub async fn start(addr: SocketAddr, user: &str, api_key: &str) -> Result<ClockSim, SimError> {
    let inner = Arc::new(Mutex::new(Inner {
        user: user.to_owned(),
        api_key: api_key.to_owned(),
        subscription: DEMO_SUBSCRIPTION.to_owned(),
        accounts: BTreeMap::from([(DEMO_ACCOUNT.to_owned(), BTreeMap::new())]),
        rooms: BTreeMap::new(),
        guests: BTreeMap::new(),
        paths: Vec::new(),
        nonces: HashMap::new(),
        recent: VecDeque::new(),
        throttle_next: 0,
        calls: 0,
    }));
    let served = Served::start("clock", addr, router(inner.clone())).await?;
    Ok(ClockSim { inner, served })
}

/// Starts one on an ephemeral port of 127.0.0.1 for [`DEMO_USER`] / [`DEMO_API_KEY`].
pub async fn start_ephemeral() -> Result<ClockSim, SimError> {
    start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        DEMO_USER,
        DEMO_API_KEY,
    )
    .await
}

impl ClockSim {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The API base URL of `account`: `http://<addr>/pms_api/<subscription>/<account>`.
    pub fn account_url(&self, account: &str) -> String {
        let sub = self.lock().subscription.clone();
        format!("{}/pms_api/{sub}/{account}", self.served.url())
    }

    /// Creates or replaces a booking of `account` (the account is created if needed; its
    /// `account_id` is set). The booking must hold a numeric `id`; it is served as given.
    pub fn put_booking(&self, account: &str, mut booking: Value) {
        let Some(id) = booking["id"].as_i64() else {
            return;
        };
        booking["account_id"] = account.parse::<i64>().map_or(json!(account), |n| json!(n));
        self.lock()
            .accounts
            .entry(account.to_owned())
            .or_default()
            .insert(id, booking);
    }

    /// Creates or replaces a room of `account` (`name`: its number as staff entered it).
    pub fn put_room(&self, account: &str, id: i64, name: &str) {
        self.lock()
            .rooms
            .entry(account.to_owned())
            .or_default()
            .insert(
                id,
                json!({"id": id, "name": name, "room_type_id": 4100 + id % 10,
                   "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}),
            );
    }

    /// Creates or replaces a guest profile (`first_name`, `last_name`, `e_mail`,
    /// `phone_number`, …; `id` is set).
    pub fn put_guest(&self, id: i64, mut profile: Value) {
        profile["id"] = json!(id);
        self.lock().guests.insert(id, profile);
    }

    /// Authenticated, admitted API calls so far whose path contains `needle` (e.g. `/rooms/`):
    /// challenges and 429s are not counted.
    pub fn calls_to(&self, needle: &str) -> usize {
        self.lock()
            .paths
            .iter()
            .filter(|p| p.contains(needle))
            .count()
    }

    /// The demo account of `make dev`: rooms 101, 102, 201 (the demo lock systems know them)
    /// and bookings served the way Clock serves them (rooms and the guest profile by
    /// reference): one in house since yesterday, one arriving tomorrow in a moved room, one
    /// arriving in three days whose guest is only a profile reference, and one cancelled.
    pub fn seed_demo(&self, account: &str) {
        let today = chrono::Utc::now().date_naive();
        let day = |d: i64| (today + chrono::Duration::days(d)).to_string();
        let now = chrono::Utc::now().to_rfc3339();
        for (id, name) in [(7101, "101"), (7102, "102"), (7201, "201")] {
            self.put_room(account, id, name);
        }
        self.put_guest(
            9301,
            json!({"first_name": "Sanne", "last_name": "de Vries",
                   "e_mail": "sanne.devries@example.com", "phone_number": "+31687654321"}),
        );
        let booking = |id: i64, arrival: i64, nights: i64, status: &str, extra: Value| {
            let mut b = json!({
                "id": id, "number": format!("CLK-{id}"), "arrival": day(arrival),
                "arrival_time": "", "departure": day(arrival + nights), "departure_time": "",
                "status": status, "created_at": now, "updated_at": now,
                "status_changed_at": now, "arrival_room_type_id": 4101, "rate_id": 784160,
                "mobile_key": true,
            });
            if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            b
        };
        for b in [
            booking(
                580301,
                -1,
                3,
                "checked_in",
                json!({"arrival_room_id": 7101,
                "guest_last_name": "Jansen", "guest_first_name": "Pieter",
                "guest_e_mail": "pieter.jansen@example.com", "guest_phone_number": "+31612345678"}),
            ),
            booking(
                580302,
                1,
                2,
                "expected",
                json!({"arrival_room_id": 7101,
                "current_room_id": 7102, "guest_last_name": "Petrova",
                "guest_first_name": "Maria", "guest_e_mail": "",
                "guest_phone_number": "+359888123456"}),
            ),
            booking(
                580303,
                3,
                2,
                "expected",
                json!({"arrival_room_id": 7201,
                "main_booking_guest": 9301, "guest_last_name": "", "guest_first_name": ""}),
            ),
            booking(
                580304,
                2,
                1,
                "canceled",
                json!({"arrival_room_id": 7201,
                "guest_last_name": "Müller", "guest_first_name": "Jonas"}),
            ),
        ] {
            self.put_booking(account, b);
        }
    }

    /// Sets a booking's `status` as Clock does (`updated_at` and `status_changed_at` now);
    /// whether it existed.
    pub fn set_status(&self, account: &str, id: i64, status: &str) -> bool {
        let now = chrono::Utc::now().to_rfc3339();
        let mut g = self.lock();
        match g.accounts.get_mut(account).and_then(|a| a.get_mut(&id)) {
            Some(b) => {
                b["status"] = json!(status);
                b["updated_at"] = json!(now);
                b["status_changed_at"] = json!(now);
                true
            }
            None => false,
        }
    }

    /// Deletes a booking; whether it existed.
    pub fn delete_booking(&self, account: &str, id: i64) -> bool {
        self.lock()
            .accounts
            .get_mut(account)
            .is_some_and(|a| a.remove(&id).is_some())
    }

    /// The next `n` API calls answer 429.
    pub fn throttle_next(&self, n: u32) {
        self.lock().throttle_next = n;
    }

    /// API calls served so far (401 challenges and 429s included).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Stops the server.
    pub async fn shutdown(&self) {
        self.served.shutdown().await;
    }
}

type Shared = Arc<Mutex<Inner>>;

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/{api}/{sub}/{account}/bookings", get(list_bookings))
        .route("/{api}/{sub}/{account}/bookings/", get(list_bookings))
        .route("/{api}/{sub}/{account}/rooms", get(list_rooms))
        .route("/{api}/{sub}/{account}/rooms/", get(list_rooms))
        .route("/{api}/{sub}/{account}/rooms/{id}", get(get_room))
        .route("/{api}/{sub}/{account}/guests/{id}", get(get_guest))
        .route(
            "/_sim/accounts/{account}/bookings/{id}",
            put(control_put).delete(control_delete),
        )
        .route("/_sim/throttle/{n}", post(control_throttle))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not found") })
        .with_state(inner)
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"error": text}))).into_response()
}

/// A 401 with a fresh Digest challenge (the nonce is remembered for its `nc` counter).
fn challenge(g: &mut Inner) -> Response {
    let nonce = format!("{:032x}", rand::random::<u128>());
    let opaque = format!("{:032x}", rand::random::<u128>());
    g.nonces.insert(nonce.clone(), 0);
    let header = format!(
        "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\", opaque=\"{opaque}\""
    );
    let mut r = (StatusCode::UNAUTHORIZED, "HTTP Digest: Access denied.\n").into_response();
    if let Ok(v) = HeaderValue::from_str(&header) {
        r.headers_mut().insert("www-authenticate", v);
    }
    r
}

/// Whether `header` is a valid Digest answer for a GET of `uri` (and records its `nc`).
fn digest_ok(g: &mut Inner, header: &str, uri: &str) -> bool {
    let Ok(given) = digest_auth::AuthorizationHeader::parse(header) else {
        return false;
    };
    let fresh_nc = g
        .nonces
        .get(&given.nonce)
        .is_some_and(|last| given.nc > *last);
    if given.username != g.user || given.realm != REALM || given.uri != uri || !fresh_nc {
        return false;
    }
    let cx = digest_auth::AuthContext::new(g.user.as_str(), g.api_key.as_str(), uri);
    let mut expected = given.clone();
    expected.digest(&cx);
    if expected.response != given.response {
        return false;
    }
    g.nonces.insert(given.nonce, given.nc);
    true
}

/// Counting, injected throttling, the documented rate limit and Digest authentication.
fn admit(inner: &Shared, headers: &HeaderMap, uri: &Uri) -> Result<(), Response> {
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    g.calls += 1;
    let now = Instant::now();
    while g
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        g.recent.pop_front();
    }
    if g.throttle_next > 0 || g.recent.len() >= RATE_PER_SEC {
        g.throttle_next = g.throttle_next.saturating_sub(1);
        return Err(error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"));
    }
    g.recent.push_back(now);
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("Digest "))
        .is_some_and(|v| digest_ok(&mut g, v, &path_and_query));
    if ok {
        g.paths.push(uri.path().to_owned());
        Ok(())
    } else {
        Err(challenge(&mut g))
    }
}

/// Compares a booking's value with a filter value: numbers as numbers, else as text
/// (ISO dates and times order as text).
fn compare(have: &Value, want: &str) -> Option<std::cmp::Ordering> {
    match have {
        Value::Number(n) => n.as_f64()?.partial_cmp(&want.parse::<f64>().ok()?),
        Value::String(s) => Some(s.as_str().cmp(want)),
        Value::Bool(b) => Some(b.to_string().as_str().cmp(want)),
        _ => None,
    }
}

/// `attr[op]` → (attr, op) for a documented operator.
fn filter_name(key: &str) -> Option<(&str, &str)> {
    let (attr, rest) = key.split_once('[')?;
    let op = rest.strip_suffix(']')?;
    ["eq", "not_eq", "gt", "gteq", "lt", "lteq"]
        .contains(&op)
        .then_some((attr, op))
}

fn matches(b: &Value, filters: &[(&str, &str, &str)]) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    filters.iter().all(|(attr, op, want)| {
        let Some(ord) = b.get(*attr).and_then(|v| compare(v, want)) else {
            return false;
        };
        match *op {
            "eq" => ord == Equal,
            "not_eq" => ord != Equal,
            "gt" => ord == Greater,
            "gteq" => ord != Less,
            "lt" => ord == Less,
            _ => ord != Greater,
        }
    })
}

async fn list_bookings(
    State(inner): State<Shared>,
    Path((api, sub, account)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&inner, &headers, &uri) {
        return r;
    }
    let g = inner.lock().unwrap_or_else(|e| e.into_inner());
    if api != "pms_api" || sub != g.subscription {
        return error(StatusCode::NOT_FOUND, "Not found");
    }
    let Some(bookings) = g.accounts.get(&account) else {
        return error(StatusCode::NOT_FOUND, "Account not found");
    };
    let bad = |p: &str, what: &str| error(StatusCode::BAD_REQUEST, &format!("{p}: {what}"));
    let num = |name: &str, default: usize| -> Result<usize, Response> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad(name, "must be a positive integer"))
        })
    };
    let (page, per_page) = match (num("page", 1), num("per_page", DEFAULT_PER_PAGE)) {
        (Ok(p), Ok(s)) if s <= MAX_PER_PAGE => (p, s),
        (Err(r), _) | (_, Err(r)) => return r,
        _ => return bad("per_page", "at most 100"),
    };
    let mut filters = Vec::new();
    for (k, v) in &q {
        if k == "page" || k == "per_page" {
            continue;
        }
        let Some((attr, op)) = filter_name(k) else {
            return bad(
                k,
                "unknown parameter (filters are attr[eq|not_eq|gt|gteq|lt|lteq])",
            );
        };
        let first_level = bookings
            .values()
            .next()
            .and_then(|b| b.get(attr))
            .is_none_or(|v| !v.is_object() && !v.is_array());
        if !first_level {
            return bad(k, "only first-level attributes can be filtered");
        }
        filters.push((attr, op, v.as_str()));
    }
    let items: Vec<Value> = bookings
        .values()
        .filter(|b| matches(b, &filters))
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .cloned()
        .collect();
    Json(items).into_response()
}

/// The account of a look-up path, after authentication (404 for another API or subscription).
fn account_of<'a>(g: &Inner, api: &str, sub: &str, account: &'a str) -> Result<&'a str, Response> {
    if api != "pms_api" || sub != g.subscription {
        return Err(error(StatusCode::NOT_FOUND, "Not found"));
    }
    Ok(account)
}

async fn list_rooms(
    State(inner): State<Shared>,
    Path((api, sub, account)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&inner, &headers, &uri) {
        return r;
    }
    let g = inner.lock().unwrap_or_else(|e| e.into_inner());
    match account_of(&g, &api, &sub, &account) {
        Ok(a) => Json(
            g.rooms
                .get(a)
                .map(|r| r.values().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .into_response(),
        Err(r) => r,
    }
}

/// One record a look-up path names (`…/rooms/{id}`, `…/guests/{id}`), after authentication
/// and the rate limit; 404 naming `what` when there is none.
fn look_up(
    inner: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    (api, sub, account, id): (String, String, String, String),
    what: &str,
    find: impl FnOnce(&Inner, &str, i64) -> Option<Value>,
) -> Response {
    if let Err(r) = admit(inner, headers, uri) {
        return r;
    }
    let g = inner.lock().unwrap_or_else(|e| e.into_inner());
    let account = match account_of(&g, &api, &sub, &account) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match id.parse::<i64>().ok().and_then(|id| find(&g, account, id)) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("{what} not found")),
    }
}

async fn get_room(
    State(inner): State<Shared>,
    Path(p): Path<(String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    look_up(&inner, &headers, &uri, p, "Room", |g, account, id| {
        g.rooms.get(account).and_then(|r| r.get(&id)).cloned()
    })
}

/// Guests are shared by the subscription's accounts: any account's path serves them.
async fn get_guest(
    State(inner): State<Shared>,
    Path(p): Path<(String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    look_up(&inner, &headers, &uri, p, "Guest", |g, _, id| {
        g.guests.get(&id).cloned()
    })
}

async fn control_put(
    State(inner): State<Shared>,
    Path((account, id)): Path<(String, i64)>,
    Json(mut body): Json<Value>,
) -> Response {
    if !body.is_object() {
        return error(StatusCode::BAD_REQUEST, "a booking object is required");
    }
    body["id"] = json!(id);
    body["account_id"] = account.parse::<i64>().map_or(json!(account), |n| json!(n));
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accounts
        .entry(account)
        .or_default()
        .insert(id, body);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_delete(
    State(inner): State<Shared>,
    Path((account, id)): Path<(String, i64)>,
) -> Response {
    let gone = inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accounts
        .get_mut(&account)
        .is_some_and(|a| a.remove(&id).is_some());
    if gone {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "Booking not found")
    }
}

async fn control_throttle(State(inner): State<Shared>, Path(n): Path<u32>) -> Response {
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .throttle_next = n;
    StatusCode::NO_CONTENT.into_response()
}
