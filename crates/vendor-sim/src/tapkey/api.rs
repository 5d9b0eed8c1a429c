//! Tapkey HTTP handlers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json_, json};

use super::odata::{self, Value};
use super::{Contact, Grant, TapkeyState, Token, error};
use crate::faults::{LayerCtx, vendor_layer};
use crate::state::{SimState, Vendor, lock, new_token};
use crate::util::{bearer, client_credentials, form_get, parse_form, parse_ts, ts_millis};

/// The Tapkey router (authority `/connect/token` + API `/api/v1`).
pub(crate) fn router(state: SimState) -> Router {
    let ctx = LayerCtx {
        state: state.clone(),
        vendor: Vendor::Tapkey,
    };
    Router::new()
        .route("/connect/token", post(token))
        .route("/api/v1/Owners", get(owners))
        .route("/api/v1/Owners/{o}/BoundLocks", get(locks))
        .route("/api/v1/Owners/{o}/BoundLocks/{id}", get(one_lock))
        .route(
            "/api/v1/Owners/{o}/Contacts",
            get(contacts).put(put_contact),
        )
        .route(
            "/api/v1/Owners/{o}/Contacts/{id}",
            get(one_contact).patch(patch_contact),
        )
        .route(
            "/api/v1/Owners/{o}/Contacts/{id}/RevokeGrants",
            post(revoke_contact_grants),
        )
        .route("/api/v1/Owners/{o}/Grants", get(grants).put(put_grant))
        .route("/api/v1/Owners/{o}/Grants/{id}", get(one_grant))
        .route("/api/v1/Owners/{o}/Grants/{id}/Revoke", post(revoke_grant))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NotFound", "no such endpoint") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(ctx, vendor_layer))
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn token(State(st): State<SimState>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let (id, secret) = match client_credentials(&form) {
        Ok(c) => c,
        Err((code, d)) => return oauth_error(StatusCode::BAD_REQUEST, code, d),
    };
    let ttl = st.inner.tapkey_token_ttl;
    let now = st.now();
    let mut s = lock(&st.inner.tapkey);
    let Some(client) = s
        .clients
        .iter()
        .find(|c| c.client_id == id && c.client_secret == secret)
        .cloned()
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client or wrong secret",
        );
    };
    let scopes: Vec<String> = match form_get(&form, "scope") {
        Some(sc) if !sc.trim().is_empty() => sc.split_whitespace().map(str::to_owned).collect(),
        _ => client.scopes.clone(),
    };
    if let Some(bad) = scopes.iter().find(|sc| !client.scopes.contains(sc)) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("scope {bad} is not allowed for this client"),
        );
    }
    let tok = new_token();
    s.tokens.insert(
        tok.clone(),
        Token {
            client_id: client.client_id,
            scopes: scopes.clone(),
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
        },
    );
    Json(json!({
        "access_token": tok,
        "expires_in": ttl.as_secs(),
        "token_type": "Bearer",
        "scope": scopes.join(" "),
    }))
    .into_response()
}

/// Token validity (401), scope (403), owner existence (404) and access (403).
fn authorize(
    st: &SimState,
    s: &TapkeyState,
    headers: &HeaderMap,
    scope: &str,
    owner: Option<&str>,
) -> Result<(), Response> {
    let unauthorized = |m: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, "Unauthorized", m);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        r
    };
    let tok = bearer(headers).ok_or_else(|| unauthorized("missing bearer token"))?;
    let t = s
        .tokens
        .get(tok)
        .ok_or_else(|| unauthorized("invalid access token"))?;
    if t.expires_at <= st.now() {
        return Err(unauthorized("the access token has expired"));
    }
    if !t.scopes.iter().any(|x| x == scope) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "InsufficientScope",
            &format!("scope {scope} is required"),
        ));
    }
    if let Some(o) = owner {
        if !s.owners.iter().any(|x| x.id == o) {
            return Err(error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("owner account {o} not found"),
            ));
        }
        let allowed = s
            .clients
            .iter()
            .find(|c| c.client_id == t.client_id)
            .is_some_and(|c| c.owner_ids.iter().any(|x| x == o));
        if !allowed {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("no access to owner account {o}"),
            ));
        }
    }
    Ok(())
}

macro_rules! try_resp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn owners(State(st): State<SimState>, headers: HeaderMap) -> Response {
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:owneraccounts", None));
    let client_id = bearer(&headers)
        .and_then(|t| s.tokens.get(t))
        .map(|t| t.client_id.clone())
        .unwrap_or_default();
    let visible: Vec<String> = s
        .clients
        .iter()
        .find(|c| c.client_id == client_id)
        .map(|c| c.owner_ids.clone())
        .unwrap_or_default();
    let out: Vec<_> = s
        .owners
        .iter()
        .filter(|o| visible.contains(&o.id))
        .map(|o| json!({"id": o.id, "name": o.name}))
        .collect();
    Json(out).into_response()
}

fn lock_json(l: &super::BoundLock) -> Json_ {
    json!({
        "id": l.id, "title": l.title, "description": l.description, "active": l.active,
        "physicalLockId": l.physical_lock_id, "lockTypeId": l.lock_type_id,
        "ownerAccountId": l.owner_account_id,
    })
}

fn contact_json(c: &Contact) -> Json_ {
    json!({
        "id": c.id, "ownerId": c.owner_id, "identifier": c.identifier, "ipId": c.ip_id,
        "title": c.title, "comment": c.comment,
    })
}

/// [`grant_json`]'s document, serialized straight from the state (no JSON tree): the answer
/// to every grant PUT, the call a worker benchmark makes most.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantView<'a> {
    id: &'a str,
    owner_account_id: &'a str,
    bound_lock_id: &'a str,
    contact_id: &'a str,
    contact: Option<ContactView<'a>>,
    bound_lock: Option<LockView<'a>>,
    valid_from: String,
    valid_before: Option<String>,
    time_restriction_ical: Option<&'a str>,
    state: &'a str,
    active: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactView<'a> {
    id: &'a str,
    owner_id: &'a str,
    identifier: &'a str,
    ip_id: &'a str,
    title: Option<&'a str>,
    comment: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LockView<'a> {
    id: &'a str,
    title: &'a str,
    description: Option<&'a str>,
    active: bool,
    physical_lock_id: &'a str,
    lock_type_id: &'a str,
    owner_account_id: &'a str,
}

/// A grant as a JSON response (same document as [`grant_json`]).
fn grant_response(s: &TapkeyState, g: &Grant) -> Response {
    let view = GrantView {
        id: &g.id,
        owner_account_id: &g.owner_account_id,
        bound_lock_id: &g.bound_lock_id,
        contact_id: &g.contact_id,
        contact: s
            .contact_by_id(&g.owner_account_id, &g.contact_id)
            .map(|c| ContactView {
                id: &c.id,
                owner_id: &c.owner_id,
                identifier: &c.identifier,
                ip_id: &c.ip_id,
                title: c.title.as_deref(),
                comment: c.comment.as_deref(),
            }),
        bound_lock: s
            .bound_locks
            .iter()
            .find(|l| l.id == g.bound_lock_id)
            .map(|l| LockView {
                id: &l.id,
                title: &l.title,
                description: l.description.as_deref(),
                active: l.active,
                physical_lock_id: &l.physical_lock_id,
                lock_type_id: &l.lock_type_id,
                owner_account_id: &l.owner_account_id,
            }),
        valid_from: ts_millis(&g.valid_from),
        valid_before: g.valid_before.as_ref().map(ts_millis),
        time_restriction_ical: g.time_restriction_ical.as_deref(),
        state: &g.state,
        active: g.active,
    };
    match serde_json::to_vec(&view) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            &e.to_string(),
        ),
    }
}

fn grant_json(s: &TapkeyState, g: &Grant) -> Json_ {
    json!({
        "id": g.id,
        "ownerAccountId": g.owner_account_id,
        "boundLockId": g.bound_lock_id,
        "contactId": g.contact_id,
        "contact": s.contact_by_id(&g.owner_account_id, &g.contact_id).map(contact_json),
        "boundLock": s.bound_locks.iter().find(|l| l.id == g.bound_lock_id).map(lock_json),
        "validFrom": ts_millis(&g.valid_from),
        "validBefore": g.valid_before.as_ref().map(ts_millis),
        "timeRestrictionIcal": g.time_restriction_ical,
        "state": g.state,
        "active": g.active,
    })
}

async fn locks(State(st): State<SimState>, headers: HeaderMap, Path(o): Path<String>) -> Response {
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:core:entities", Some(&o)));
    let out: Vec<_> = s
        .bound_locks
        .iter()
        .filter(|l| l.owner_account_id == o)
        .map(lock_json)
        .collect();
    Json(out).into_response()
}

async fn one_lock(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((o, id)): Path<(String, String)>,
) -> Response {
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:core:entities", Some(&o)));
    match s
        .bound_locks
        .iter()
        .find(|l| l.owner_account_id == o && l.id == id)
    {
        Some(l) => Json(lock_json(l)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("bound lock {id} not found"),
        ),
    }
}

fn parse_filter(q: &HashMap<String, String>) -> Result<Vec<odata::Clause>, Response> {
    match q.get("$filter") {
        None => Ok(Vec::new()),
        Some(f) => odata::parse(f).map_err(|e| error(StatusCode::BAD_REQUEST, "InvalidFilter", &e)),
    }
}

/// `$skip` / `$top` (OData paging), checked before any item is rendered.
fn paging(q: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let num = |k: &str| -> Result<Option<usize>, Response> {
        q.get(k)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "InvalidQuery",
                        &format!("{k} must be a non-negative integer"),
                    )
                })
            })
            .transpose()
    };
    let skip = num("$skip")?.unwrap_or(0);
    let top = num("$top")?.unwrap_or(usize::MAX);
    Ok((skip, top))
}

/// The candidates matching every clause, `$skip`/`$top` applied before rendering. A field
/// not in `fields` is a 400 whether or not anything would match; `test` answers `None` for a
/// value of the wrong type (400 as well).
fn select<'a, T: 'a>(
    q: &HashMap<String, String>,
    clauses: &[odata::Clause],
    fields: &[&str],
    candidates: impl Iterator<Item = &'a T>,
    test: impl Fn(&T, &odata::Clause) -> Option<bool>,
    render: impl Fn(&T) -> Json_,
) -> Result<Vec<Json_>, Response> {
    if let Some(cl) = clauses
        .iter()
        .find(|cl| !fields.contains(&cl.field.as_str()))
    {
        return Err(unsupported(&cl.field));
    }
    let (skip, top) = paging(q)?;
    let mut out = Vec::new();
    let mut skipped = 0;
    for item in candidates {
        let mut keep = true;
        for cl in clauses {
            keep &= test(item, cl).ok_or_else(|| unsupported(&cl.field))?;
        }
        if !keep {
            continue;
        }
        if skipped < skip {
            skipped += 1;
        } else if out.len() < top {
            out.push(render(item));
        }
    }
    Ok(out)
}

fn unsupported(field: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidFilter",
        &format!("filtering on {field} is not supported"),
    )
}

async fn contacts(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:core:entities", Some(&o)));
    let clauses = try_resp!(parse_filter(&q));
    // An identifier or id clause narrows the candidates to at most one contact.
    let narrowed = clauses
        .iter()
        .find_map(|cl| match (cl.field.as_str(), &cl.value) {
            ("identifier", Value::Str(v)) => Some(s.contact_by_identifier(&o, v)),
            ("id", Value::Str(v)) => Some(s.contact_position(&o, v)),
            _ => None,
        });
    let candidates: Box<dyn Iterator<Item = &Contact>> = match narrowed {
        Some(at) => Box::new(at.and_then(|i| s.contacts.get(i)).into_iter()),
        None => Box::new(s.contacts.iter()),
    };
    let out = try_resp!(select(
        &q,
        &clauses,
        &["identifier", "id", "ipId"],
        candidates.filter(|c| c.owner_id == o),
        |c, cl| match (cl.field.as_str(), &cl.value) {
            ("identifier", Value::Str(v)) => Some(c.identifier.eq_ignore_ascii_case(v)),
            ("id", Value::Str(v)) => Some(&c.id == v),
            ("ipId", Value::Str(v)) => Some(&c.ip_id == v),
            _ => None,
        },
        contact_json,
    ));
    Json(out).into_response()
}

async fn one_contact(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((o, id)): Path<(String, String)>,
) -> Response {
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:core:entities", Some(&o)));
    match s.contact_by_id(&o, &id) {
        Some(c) => Json(contact_json(c)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("contact {id} not found"),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContactBody {
    ip_id: Option<String>,
    identifier: Option<String>,
    title: Option<String>,
    comment: Option<String>,
}

fn bad_request(m: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BadRequest", m)
}

fn valid_email(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.') && !s.contains(char::is_whitespace))
}

/// Finds or creates the contact with this identifier (case-insensitive, ipId `tapkey`).
/// "Create-or-return" as documented: an existing contact comes back **unchanged**, its title
/// and comment included (a marker in `comment` needs `PATCH .../Contacts/{id}`).
pub(crate) fn upsert_contact(
    s: &mut TapkeyState,
    owner: &str,
    identifier: &str,
    title: Option<String>,
    comment: Option<String>,
) -> Contact {
    if let Some(c) = s
        .contact_by_identifier(owner, identifier)
        .and_then(|at| s.contacts.get(at))
    {
        return c.clone();
    }
    let c = Contact {
        id: new_token(),
        owner_id: owner.to_owned(),
        identifier: identifier.to_owned(),
        ip_id: "tapkey".to_owned(),
        title,
        comment,
    };
    s.push_contact(c.clone());
    c
}

async fn put_contact(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = lock(&st.inner.tapkey);
    try_resp!(authorize(
        &st,
        &s,
        &headers,
        "write:core:entities",
        Some(&o)
    ));
    let b: ContactBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("invalid JSON body: {e}")),
    };
    if b.ip_id.as_deref() != Some("tapkey") {
        return bad_request("ipId must be \"tapkey\"");
    }
    let Some(identifier) = b.identifier.filter(|i| valid_email(i)) else {
        return bad_request("identifier must be an e-mail address");
    };
    let c = upsert_contact(&mut s, &o, &identifier, b.title, b.comment);
    Json(contact_json(&c)).into_response()
}

/// `PATCH .../Contacts/{id}`: only `title` and `comment` may change (documented); any other
/// field is refused with 400 instead of being ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContactPatch {
    title: Option<String>,
    comment: Option<String>,
}

async fn patch_contact(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((o, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut s = lock(&st.inner.tapkey);
    try_resp!(authorize(
        &st,
        &s,
        &headers,
        "write:core:entities",
        Some(&o)
    ));
    let p: ContactPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return bad_request(&format!(
                "invalid contact patch (only title and comment can change): {e}"
            ));
        }
    };
    let Some(c) = s
        .contact_position(&o, &id)
        .and_then(|at| s.contacts.get_mut(at))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("contact {id} not found"),
        );
    };
    if p.title.is_some() {
        c.title = p.title;
    }
    if p.comment.is_some() {
        c.comment = p.comment;
    }
    Json(contact_json(c)).into_response()
}

async fn grants(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let honour_filter = st.tapkey_grant_filter_honoured();
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:grants", Some(&o)));
    let mut clauses = try_resp!(parse_filter(&q));
    if !honour_filter {
        clauses.clear(); // OData on Grants is undocumented: a server may ignore it
    }
    // A contactId or id clause narrows the candidates (in creation order, as without it).
    let narrowed: Option<Vec<usize>> =
        clauses
            .iter()
            .find_map(|cl| match (cl.field.as_str(), &cl.value) {
                ("id", Value::Str(v)) => Some(s.grant_by_id(&o, v).into_iter().collect()),
                ("contactId", Value::Str(v)) => Some(s.grants_of_contact(v).to_vec()),
                _ => None,
            });
    let candidates: Box<dyn Iterator<Item = &Grant>> = match narrowed {
        Some(at) => Box::new(at.into_iter().filter_map(|i| s.grants.get(i))),
        None => Box::new(s.grants.iter()),
    };
    let out = try_resp!(select(
        &q,
        &clauses,
        &["active", "contactId", "boundLockId", "state", "id"],
        candidates.filter(|g| g.owner_account_id == o),
        |g, cl| match (cl.field.as_str(), &cl.value) {
            ("active", Value::Bool(b)) => Some(g.active == *b),
            ("contactId", Value::Str(v)) => Some(&g.contact_id == v),
            ("boundLockId", Value::Str(v)) => Some(&g.bound_lock_id == v),
            ("state", Value::Str(v)) => Some(&g.state == v),
            ("id", Value::Str(v)) => Some(&g.id == v),
            _ => None,
        },
        |g| grant_json(&s, g),
    ));
    Json(out).into_response()
}

async fn one_grant(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((o, id)): Path<(String, String)>,
) -> Response {
    let s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "read:grants", Some(&o)));
    match s.grant_by_id(&o, &id).and_then(|at| s.grants.get(at)) {
        Some(g) => Json(grant_json(&s, g)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("grant {id} not found"),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantContact {
    identifier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantBody {
    bound_lock_id: Option<String>,
    contact: Option<GrantContact>,
    contact_id: Option<String>,
    valid_from: Option<String>,
    valid_before: Option<String>,
    time_restriction_ical: Option<String>,
}

async fn put_grant(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    body: Bytes,
) -> Response {
    let dedupe = st.dedupe(Vendor::Tapkey);
    let mut s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "write:grants", Some(&o)));
    let b: GrantBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("invalid JSON body: {e}")),
    };
    let Some(lock_id) = b.bound_lock_id else {
        return bad_request("boundLockId is required");
    };
    match s
        .bound_locks
        .iter()
        .find(|l| l.owner_account_id == o && l.id == lock_id)
    {
        None => {
            return bad_request(&format!(
                "bound lock {lock_id} does not exist in owner account {o}"
            ));
        }
        Some(l) if !l.active => return bad_request(&format!("bound lock {lock_id} is not active")),
        Some(_) => {}
    }
    let Some(from) = b.valid_from.as_deref().and_then(tapkey_time) else {
        return bad_request(
            "validFrom is required and must be ISO-8601 UTC with milliseconds (2019-02-01T10:00:00.000Z)",
        );
    };
    let before = match b.valid_before.as_deref() {
        None => None,
        Some(v) => match tapkey_time(v) {
            Some(t) => Some(t),
            None => {
                return bad_request(
                    "validBefore must be ISO-8601 UTC with milliseconds (2019-02-01T10:00:00.000Z)",
                );
            }
        },
    };
    if before.is_some_and(|t| t <= from) {
        return bad_request("validBefore must be after validFrom");
    }
    // Resolve the contact before any mutation, so a rejected grant leaves no trace.
    let contact = match (b.contact_id, b.contact.and_then(|c| c.identifier)) {
        (Some(id), _) => {
            if s.contact_by_id(&o, &id).is_none() {
                return bad_request(&format!("contact {id} does not exist"));
            }
            ContactRef::Existing(id)
        }
        (None, Some(ident)) => {
            if !valid_email(&ident) {
                return bad_request("contact.identifier must be an e-mail address");
            }
            match s
                .contact_by_identifier(&o, &ident)
                .and_then(|at| s.contacts.get(at))
            {
                Some(c) => ContactRef::Existing(c.id.clone()),
                None => ContactRef::New(ident),
            }
        }
        (None, None) => return bad_request("contact.identifier or contactId is required"),
    };
    let existing_contact = match &contact {
        ContactRef::Existing(id) => Some(id.as_str()),
        ContactRef::New(_) => None,
    };
    let identical = existing_contact
        .map(|c| s.grants_of_contact(c))
        .unwrap_or(&[])
        .iter()
        .filter_map(|at| s.grants.get(*at))
        .find(|g| {
            g.owner_account_id == o
                && g.active
                && g.bound_lock_id == lock_id
                && existing_contact.is_some_and(|c| g.contact_id == c)
                && g.valid_from == from
                && g.valid_before == before
                && g.time_restriction_ical == b.time_restriction_ical
        });
    if dedupe && let Some(g) = identical {
        return error(
            StatusCode::CONFLICT,
            "Conflict",
            &format!("an identical active grant {} already exists", g.id),
        );
    }
    let limit = s
        .owners
        .iter()
        .find(|x| x.id == o)
        .and_then(|x| x.grant_limit);
    let active_count = s.active_grants_of_owner(&o);
    if limit.is_some_and(|l| active_count >= l) {
        return error(
            StatusCode::PAYMENT_REQUIRED,
            "PlanLimitReached",
            "the owner account's plan allows no more grants",
        );
    }
    let contact_id = match contact {
        ContactRef::Existing(id) => id,
        ContactRef::New(ident) => upsert_contact(&mut s, &o, &ident, None, None).id,
    };
    let g = Grant {
        id: new_token(),
        owner_account_id: o,
        bound_lock_id: lock_id,
        contact_id,
        valid_from: from,
        valid_before: before,
        time_restriction_ical: b.time_restriction_ical,
        state: "Ok".to_owned(),
        active: true,
    };
    s.push_grant(g);
    match s.grants.last() {
        Some(g) => grant_response(&s, g),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", "grant lost"),
    }
}

/// A time as Tapkey documents them: ISO-8601 in UTC with milliseconds,
/// `2019-02-01T10:00:00.000Z`. A local offset or a missing fraction is refused (400) rather
/// than guessed, so a client that sends local times or drops the milliseconds finds out here.
fn tapkey_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    if s.as_bytes().get(10) != Some(&b'T') {
        return None; // RFC 3339 allows a space here, ISO-8601 does not
    }
    let body = s.strip_suffix('Z')?;
    let (_, frac) = body.rsplit_once('.')?;
    if frac.len() != 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_ts(s)
}

/// The grant's contact: already known, or to be created from an identifier.
enum ContactRef {
    Existing(String),
    New(String),
}

async fn revoke_grant(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((o, id)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "write:grants", Some(&o)));
    let Some(at) = s.grant_by_id(&o, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("grant {id} not found"),
        );
    };
    if !s.revoke_at(at) {
        return error(
            StatusCode::CONFLICT,
            "Conflict",
            "desired state already present: the grant is already revoked",
        );
    }
    match s.grants.get(at) {
        Some(g) => Json(grant_json(&s, g)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("grant {id} not found"),
        ),
    }
}

async fn revoke_contact_grants(
    State(st): State<SimState>,
    headers: HeaderMap,
    Path((o, id)): Path<(String, String)>,
) -> Response {
    let mut s = lock(&st.inner.tapkey);
    try_resp!(authorize(&st, &s, &headers, "write:grants", Some(&o)));
    if s.contact_by_id(&o, &id).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("contact {id} not found"),
        );
    }
    let mut revoked = Vec::new();
    for at in s.grants_of_contact(&id).to_vec() {
        if s.grants.get(at).is_some_and(|g| g.owner_account_id == o) && s.revoke_at(at) {
            revoked.push(at);
        }
    }
    let out: Vec<_> = revoked
        .iter()
        .filter_map(|at| s.grants.get(*at))
        .map(|g| grant_json(&s, g))
        .collect();
    Json(out).into_response()
}
