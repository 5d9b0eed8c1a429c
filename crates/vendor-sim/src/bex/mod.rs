//! BEX PMS API v3 simulator (an upstream, not a lock vendor): holds administrations,
//! reservations and guests, and serves them as the documented API does (VENDORS.md "Upstream
//! APIs"): JSON:API documents, `x-api-key` authentication, `page[number]`/`page[size]` paging
//! with `links.next` (null on the last page), `filter[start_date]`/`filter[updated_at]` ranges
//! (`a..b`) and `filter[state]` lists (`a,b`), `X-RateLimit-*` headers, 429 with `Retry-After`
//! (injected), and errors as `{errors: [{status, code, title, detail, source}]}`.
//!
//! It runs on its own port ([`start`]); tests change what it holds through [`BexSim`] or the
//! control routes under `/_sim/` (`PUT`/`DELETE /_sim/administrations/{a}/reservations/{r}`,
//! `PUT /_sim/administrations/{a}`, `POST /_sim/throttle/{n}`).
//!
//! Rentables (accommodation objects) are listed per administration
//! (`GET /v3/administrations/{a}/rentables`) and a reservation references the one it occupies
//! as `relationships.rentable` ([`BexSim::put_rentable`], [`BexSim::set_rentable`]); an
//! administration names its organization as `relationships.organization`
//! ([`BexSim::set_organization`]).
//!
//! Ours (BEX documents none): `page[size]` at most 100 (else 400), default 25; the reservation
//! attribute `license_plates`; guests' `phone`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use crate::{SimError, upstream::Served};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

/// The API key the simulator accepts unless told otherwise.
pub const DEMO_API_KEY: &str = "bex-demo-api-key";
/// Largest `page[size]` (ours).
pub const MAX_PAGE_SIZE: usize = 100;
/// `page[size]` when none is given (ours).
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// `X-RateLimit-Limit` (documented: 500 calls per 15 minutes).
pub const RATE_LIMIT: u32 = 500;

/// One reservation as the simulator holds it: its attributes (any JSON object, served as
/// given: documented names such as `start_date`, `end_date`, `state`, `last_name`,
/// `updated_at`, and ours such as `license_plates`) and its guests' attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReservation {
    /// Reservation id.
    pub id: String,
    /// Attributes.
    pub attributes: Value,
    /// Guests' attributes (`first_name`, `last_name`, `email`).
    pub guests: Vec<Value>,
}

#[derive(Debug, Default)]
struct Inner {
    api_key: String,
    /// Administration id → (attributes, reservations by id).
    administrations: BTreeMap<String, (Value, BTreeMap<String, SimReservation>)>,
    /// Administration → rentable id → name.
    rentables: BTreeMap<String, BTreeMap<String, String>>,
    /// (administration, reservation) → the rentable it occupies.
    rentable_of: BTreeMap<(String, String), String>,
    /// Administration → its organization.
    organization_of: BTreeMap<String, String>,
    /// The next N API calls answer 429.
    throttle_next: u32,
    /// API calls served (not control calls), for tests counting pages.
    calls: u64,
}

/// Handle to a running BEX simulator; cheap to clone. Dropping the last clone does not stop
/// it: call [`BexSim::shutdown`].
#[derive(Clone)]
pub struct BexSim {
    inner: Arc<Mutex<Inner>>,
    served: Served,
}

impl std::fmt::Debug for BexSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BexSim")
            .field("addr", &self.served.addr)
            .finish()
    }
}

/// Starts a BEX simulator on `addr` (port 0: any free port) accepting `api_key`.
pub async fn start(addr: SocketAddr, api_key: &str) -> Result<BexSim, SimError> {
    let inner = Arc::new(Mutex::new(Inner {
        api_key: api_key.to_owned(),
        ..Inner::default()
    }));
    let served = Served::start("bex", addr, router(inner.clone())).await?;
    Ok(BexSim { inner, served })
}

/// Starts one on an ephemeral port of 127.0.0.1 with [`DEMO_API_KEY`].
pub async fn start_ephemeral() -> Result<BexSim, SimError> {
    start(SocketAddr::from(([127, 0, 0, 1], 0)), DEMO_API_KEY).await
}

impl BexSim {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Base URL (the API is under `/v3`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Adds (or renames) an administration.
    pub fn add_administration(&self, id: &str, name: &str) {
        let mut g = self.lock();
        let entry = g
            .administrations
            .entry(id.to_owned())
            .or_insert_with(|| (Value::Null, BTreeMap::new()));
        entry.0 = json!({"name": name, "utc_offset": "+01:00"});
    }

    /// Creates or replaces a reservation (the administration is created if needed). The
    /// attributes must hold `start_date`, `end_date` and `updated_at` (as BEX always does).
    pub fn put_reservation(&self, administration: &str, r: SimReservation) {
        let mut g = self.lock();
        let entry = g
            .administrations
            .entry(administration.to_owned())
            .or_insert_with(|| {
                (
                    json!({"name": administration, "utc_offset": "+01:00"}),
                    BTreeMap::new(),
                )
            });
        entry.1.insert(r.id.clone(), r);
    }

    /// Adds (or renames) a rentable of `administration`.
    pub fn put_rentable(&self, administration: &str, id: &str, name: &str) {
        self.lock()
            .rentables
            .entry(administration.to_owned())
            .or_default()
            .insert(id.to_owned(), name.to_owned());
    }

    /// Makes reservation `id` of `administration` occupy `rentable`.
    pub fn set_rentable(&self, administration: &str, id: &str, rentable: &str) {
        self.lock().rentable_of.insert(
            (administration.to_owned(), id.to_owned()),
            rentable.to_owned(),
        );
    }

    /// Sets the organization `administration` belongs to.
    pub fn set_organization(&self, administration: &str, organization: &str) {
        self.lock()
            .organization_of
            .insert(administration.to_owned(), organization.to_owned());
    }

    /// Deletes a reservation; whether it existed.
    pub fn delete_reservation(&self, administration: &str, id: &str) -> bool {
        self.lock()
            .administrations
            .get_mut(administration)
            .is_some_and(|a| a.1.remove(id).is_some())
    }

    /// The next `n` API calls answer 429 with `Retry-After: 1`.
    pub fn throttle_next(&self, n: u32) {
        self.lock().throttle_next = n;
    }

    /// API calls served so far (429s included).
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
        .route("/v3/administrations", get(list_administrations))
        .route(
            "/v3/administrations/{admin}/reservations",
            get(list_reservations),
        )
        .route(
            "/v3/administrations/{admin}/reservations/{rid}/guests",
            get(list_guests),
        )
        .route("/v3/administrations/{admin}/rentables", get(list_rentables))
        .route(
            "/_sim/administrations/{admin}/reservations/{rid}",
            put(control_put).delete(control_delete),
        )
        .route("/_sim/administrations/{admin}", put(control_admin))
        .route("/_sim/throttle/{n}", post(control_throttle))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "Not found", None) })
        .with_state(inner)
}

/// `{errors: [{status, code, title, detail, source}]}` (JSON:API).
fn error(status: StatusCode, code: &str, detail: &str, parameter: Option<&str>) -> Response {
    let mut e = json!({
        "status": status.as_u16().to_string(),
        "code": code,
        "title": status.canonical_reason().unwrap_or("Error"),
        "detail": detail,
    });
    if let Some(p) = parameter {
        e["source"] = json!({"parameter": p});
    }
    let mut resp = (status, Json(json!({"errors": [e]}))).into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.api+json"),
    );
    resp
}

/// Authentication, injected throttling and the rate-limit headers of every API call.
fn admit(inner: &Shared, headers: &HeaderMap) -> Result<u32, Response> {
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    g.calls += 1;
    if g.throttle_next > 0 {
        g.throttle_next -= 1;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Rate limit exceeded",
            None,
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        r.headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        return Err(r);
    }
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if given != Some(g.api_key.as_str()) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid API key",
            None,
        ));
    }
    Ok(RATE_LIMIT.saturating_sub(u32::try_from(g.calls % u64::from(RATE_LIMIT)).unwrap_or(0)))
}

/// `page[number]`, `page[size]` from the query (400 naming the parameter when invalid).
fn paging(q: &BTreeMap<String, String>) -> Result<(usize, usize), Response> {
    let num = |name: &str, default: usize| -> Result<usize, Response> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    &format!("{name} must be a positive integer"),
                    Some(name),
                )
            }),
        }
    };
    let number = num("page[number]", 1)?;
    let size = num("page[size]", DEFAULT_PAGE_SIZE)?;
    if size > MAX_PAGE_SIZE {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            &format!("page[size] must be at most {MAX_PAGE_SIZE}"),
            Some("page[size]"),
        ));
    }
    Ok((number, size))
}

/// An admitted list call: which page, and the calls left in the rate window.
struct Listing {
    number: usize,
    size: usize,
    remaining: u32,
}

impl Listing {
    /// Authentication, throttling and paging parameters of a list call.
    fn admit(
        inner: &Shared,
        headers: &HeaderMap,
        q: &BTreeMap<String, String>,
    ) -> Result<Listing, Response> {
        let remaining = admit(inner, headers)?;
        let (number, size) = paging(q)?;
        Ok(Listing {
            number,
            size,
            remaining,
        })
    }
}

/// One page of `items` as a JSON:API list document with `links.next` built from `uri`.
fn page_doc(uri: &Uri, headers: &HeaderMap, items: Vec<Value>, page: &Listing) -> Response {
    let total = items.len();
    let data: Vec<Value> = items
        .into_iter()
        .skip(page.start())
        .take(page.size)
        .collect();
    page_doc_of(uri, headers, total, data, page)
}

impl Listing {
    /// Index of the page's first item.
    fn start(&self) -> usize {
        (self.number - 1).saturating_mul(self.size)
    }
}

/// The page `data` (already cut from `total` items) as a JSON:API list document: a list
/// whose items are costly to render renders only the page's (a 100k-reservation
/// administration rendered all of them for every page, which made a paged pull quadratic).
fn page_doc_of(
    uri: &Uri,
    headers: &HeaderMap,
    total: usize,
    data: Vec<Value>,
    page: &Listing,
) -> Response {
    let (number, size, remaining) = (page.number, page.size, page.remaining);
    let start = page.start();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let link = |n: usize| {
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "page[number]" && k != "page[size]")
                .collect();
        params.push(("page[number]".into(), n.to_string()));
        params.push(("page[size]".into(), size.to_string()));
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("http://{host}{}?{q}", uri.path())
    };
    let next = (start + size < total).then(|| link(number + 1));
    let mut resp = Json(json!({
        "data": data,
        "links": {"self": link(number), "next": next},
        "meta": {"total_count": total},
    }))
    .into_response();
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/vnd.api+json"),
    );
    h.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    resp
}

async fn list_administrations(
    State(inner): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let page = match Listing::admit(&inner, &headers, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Vec<Value> = {
        let g = inner.lock().unwrap_or_else(|e| e.into_inner());
        g.administrations
            .iter()
            .map(|(id, (attrs, _))| {
                let mut a = json!({"id": id, "type": "administration", "attributes": attrs});
                if let Some(org) = g.organization_of.get(id) {
                    a["relationships"] =
                        json!({"organization": {"data": {"id": org, "type": "organization"}}});
                }
                a
            })
            .collect()
    };
    page_doc(&uri, &headers, items, &page)
}

/// Inclusive bounds of a range filter, either side open.
type Bounds<T> = (Option<T>, Option<T>);

/// `a..b` (either side may be empty) → inclusive bounds.
fn range<T: std::str::FromStr>(raw: &str) -> Option<Bounds<T>> {
    let (a, b) = raw.split_once("..")?;
    let side = |s: &str| -> Option<Option<T>> {
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    Some((side(a)?, side(b)?))
}

fn in_range<T: PartialOrd>(v: &T, (lo, hi): &Bounds<T>) -> bool {
    lo.as_ref().is_none_or(|l| v >= l) && hi.as_ref().is_none_or(|h| v <= h)
}

async fn list_reservations(
    State(inner): State<Shared>,
    Path(admin): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let page = match Listing::admit(&inner, &headers, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let bad = |p: &str, what: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_filter",
            &format!("{p} must be {what}"),
            Some(p),
        )
    };
    let start: Option<Bounds<NaiveDate>> = match q.get("filter[start_date]") {
        None => None,
        Some(v) => match range(v) {
            Some(r) => Some(r),
            None => {
                return bad(
                    "filter[start_date]",
                    "a date range like 2030-01-01..2030-01-05",
                );
            }
        },
    };
    let updated: Option<Bounds<DateTime<Utc>>> = match q.get("filter[updated_at]") {
        None => None,
        Some(v) => match range(v) {
            Some(r) => Some(r),
            None => return bad("filter[updated_at]", "a time range (RFC 3339)"),
        },
    };
    let states: Option<Vec<String>> = q
        .get("filter[state]")
        .map(|v| v.split(',').map(str::to_owned).collect());
    for k in q.keys() {
        if k.starts_with("filter[")
            && !["filter[start_date]", "filter[updated_at]", "filter[state]"].contains(&k.as_str())
        {
            return bad(k, "a supported filter (start_date, updated_at, state)");
        }
    }
    let (total, items): (usize, Vec<Value>) = {
        let g = inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, reservations)) = g.administrations.get(&admin) else {
            drop(g);
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "Administration not found",
                None,
            );
        };
        let matching: Vec<_> = reservations
            .values()
            .filter(|r| {
                let a = &r.attributes;
                let date = a["start_date"]
                    .as_str()
                    .and_then(|s| s.parse::<NaiveDate>().ok());
                let upd = a["updated_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc));
                start
                    .as_ref()
                    .is_none_or(|rg| date.is_some_and(|d| in_range(&d, rg)))
                    && updated
                        .as_ref()
                        .is_none_or(|rg| upd.is_some_and(|u| in_range(&u, rg)))
                    && states
                        .as_ref()
                        .is_none_or(|s| s.iter().any(|x| Some(x.as_str()) == a["state"].as_str()))
            })
            .collect();
        let rendered = matching
            .iter()
            .skip(page.start())
            .take(page.size)
            .map(|r| {
                let mut res = json!({
                    "id": r.id, "type": "reservation", "attributes": r.attributes,
                    "relationships": {"administration": {"data": {"id": admin, "type": "administration"}}},
                });
                if let Some(obj) = g.rentable_of.get(&(admin.clone(), r.id.clone())) {
                    res["relationships"]["rentable"] =
                        json!({"data": {"id": obj, "type": "rentable"}});
                }
                res
            })
            .collect();
        (matching.len(), rendered)
    };
    page_doc_of(&uri, &headers, total, items, &page)
}

async fn list_rentables(
    State(inner): State<Shared>,
    Path(admin): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let page = match Listing::admit(&inner, &headers, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Option<Vec<Value>> = {
        let g = inner.lock().unwrap_or_else(|e| e.into_inner());
        g.administrations.contains_key(&admin).then(|| {
            g.rentables
                .get(&admin)
                .map(|r| {
                    r.iter()
                        .map(|(id, name)| {
                            json!({"id": id, "type": "rentable", "attributes": {"name": name}})
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    };
    page_or_404(&uri, &headers, items, &page, "Administration not found")
}

async fn list_guests(
    State(inner): State<Shared>,
    Path((admin, rid)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let page = match Listing::admit(&inner, &headers, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items: Option<Vec<Value>> = {
        let g = inner.lock().unwrap_or_else(|e| e.into_inner());
        g.administrations
            .get(&admin)
            .and_then(|a| a.1.get(&rid))
            .map(|r| {
                r.guests
                    .iter()
                    .enumerate()
                    .map(|(i, g)| json!({"id": format!("{rid}-g{i}"), "type": "guest", "attributes": g}))
                    .collect()
            })
    };
    page_or_404(&uri, &headers, items, &page, "Reservation not found")
}

/// One page of what a parent holds, or 404 naming the missing parent.
fn page_or_404(
    uri: &Uri,
    headers: &HeaderMap,
    items: Option<Vec<Value>>,
    page: &Listing,
    missing: &str,
) -> Response {
    match items {
        Some(items) => page_doc(uri, headers, items, page),
        None => error(StatusCode::NOT_FOUND, "not_found", missing, None),
    }
}

/// `PUT /_sim/administrations/{a}/reservations/{r}` `{attributes, guests?}`.
async fn control_put(
    State(inner): State<Shared>,
    Path((admin, rid)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let Some(attributes) = body.get("attributes").filter(|a| a.is_object()).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "attributes (object) is required",
            None,
        );
    };
    let guests = body
        .get("guests")
        .and_then(|g| g.as_array())
        .cloned()
        .unwrap_or_default();
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    g.administrations
        .entry(admin.clone())
        .or_insert_with(|| {
            (
                json!({"name": admin, "utc_offset": "+01:00"}),
                BTreeMap::new(),
            )
        })
        .1
        .insert(
            rid.clone(),
            SimReservation {
                id: rid,
                attributes,
                guests,
            },
        );
    StatusCode::NO_CONTENT.into_response()
}

async fn control_delete(
    State(inner): State<Shared>,
    Path((admin, rid)): Path<(String, String)>,
) -> Response {
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    let gone = g
        .administrations
        .get_mut(&admin)
        .is_some_and(|a| a.1.remove(&rid).is_some());
    if gone {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn control_admin(
    State(inner): State<Shared>,
    Path(admin): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    g.administrations
        .entry(admin)
        .or_insert_with(|| (Value::Null, BTreeMap::new()))
        .0 = body;
    StatusCode::NO_CONTENT.into_response()
}

async fn control_throttle(State(inner): State<Shared>, Path(n): Path<u32>) -> Response {
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .throttle_next = n;
    StatusCode::NO_CONTENT.into_response()
}
