//! Clock PMS+ PMS API simulator (an upstream, not a lock vendor): holds bookings per account
//! and serves them as the documented API does (VENDORS.md "Upstream APIs"; docs/upstreams.md):
//! `/{pms_api}/{subscription}/{account}/bookings/`, **HTTP Digest** authentication of an API
//! user and its API key (RFC 7616, MD5, `qop=auth`: 401 with a challenge, a replayed or
//! foreign nonce, a wrong key or a `uri` other than the request's is 401 again), a rate limit
//! of **5 calls per second** per API user (429 beyond; injected on demand too), and filters on
//! first-level attributes with the documented operators `eq, not_eq, gt, gteq, lt, lteq`
//! (anything else is 400).
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
    if ok { Ok(()) } else { Err(challenge(&mut g)) }
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
