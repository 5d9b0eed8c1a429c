//! Clock PMS+ PMS API client.
//!
//! **Documented** (Clock PMS+ API Docs, the Postman collection at api-docs.clock-software.com,
//! as quoted by integrators; docs/upstreams.md names the sources):
//! - Base URL per region, API, subscription and account:
//!   `https://{region}.clock-software.com/{pms_api|base_api}/{subscription_id}/{account_id}`;
//!   bookings under `.../bookings/`.
//! - Authentication: an API user's name and API key with **HTTP Digest** (RFC 7616, MD5,
//!   `qop=auth`): the first request is answered 401 with a `WWW-Authenticate: Digest`
//!   challenge. The challenge is kept and re-used with an increasing `nc` (one round trip per
//!   call); a 401 on a re-used nonce (expired, `stale`) takes the new challenge once.
//! - Rate limit: 5 calls per second per API user, answered 429 beyond; retry with backoff
//!   (a `Retry-After`, if any, is honoured, capped at a minute). Other answered errors (4xx,
//!   5xx) are not to be retried automatically: only 429 and transport failures are.
//! - Filters on first-level attributes with the operators `eq, not_eq, gt, gteq, lt, lteq`.
//!
//! - A booking references its room, room type, rate and guest profile by id (see the module
//!   doc of [`super`]); `GET …/rooms/{id}` ("rooms - VIEW": `id, name, room_type_id`; the
//!   name is the room's number as staff entered it) and `GET …/guests/{id}` (the guests
//!   table: `first_name, middle_name, last_name, e_mail, phone_number`) resolve them.
//!   [`References`] does so once per id and pull run, through the same rate limit.
//!
//! **Ours** (not public; kept in [`ours`], one place to change): the query form of a filter
//! (`arrival[gteq]=YYYY-MM-DD`), paging by `page` (1-based) and `per_page` (at most 100)
//! until a page holds fewer than `per_page` bookings, a list answered as a JSON array of
//! booking objects, and the guest profile under the account's base URL (Clock shares guests
//! across a subscription's accounts; which API path serves one is not public).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::NaiveDate;
use digest_auth::{AuthContext, WwwAuthenticateHeader};
use serde::{Deserialize, de::DeserializeOwned};
use vendor_http::{Method, Url, VendorError, decode_json, path_segment};

use super::Booking;
use crate::Id;

use crate::UpstreamError;

/// Metrics and error label.
pub const UPSTREAM: &str = "clock";
/// Documented limit: 5 calls per second per API user.
pub const DEFAULT_RATE_PER_SEC: f64 = 5.0;
/// Burst within that limit.
pub const DEFAULT_BURST: u32 = 5;
/// Page size we ask for.
pub const PAGE_SIZE: u32 = 100;
/// Pages walked at most: a server that ignored `page` would otherwise be paged forever.
pub const MAX_PAGES: u32 = 10_000;

/// Query names that are ours (see the module doc).
pub mod ours {
    /// Page number (1-based).
    pub const PAGE: &str = "page";
    /// Page size.
    pub const PER_PAGE: &str = "per_page";
    /// Arrival on or after (`gteq`, a documented operator).
    pub const ARRIVAL_FROM: &str = "arrival[gteq]";
    /// Arrival on or before (`lteq`).
    pub const ARRIVAL_TO: &str = "arrival[lteq]";
    /// Where one guest profile is read, under the account's base URL.
    pub const GUESTS: &str = "/guests";
}

/// A room of `GET …/rooms/{id}` (documented).
#[derive(Debug, Clone, Deserialize)]
pub struct Room {
    /// Room id.
    pub id: Id,
    /// The room's number or name as staff entered it: what the lock system knows it by.
    #[serde(default)]
    pub name: Option<String>,
    /// Its room type.
    #[serde(default)]
    pub room_type_id: Option<Id>,
}

/// A guest profile of `GET …/guests/{id}` (documented fields of the guests table).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GuestProfile {
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Middle name.
    #[serde(default)]
    pub middle_name: Option<String>,
    /// Surname.
    #[serde(default)]
    pub last_name: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub e_mail: Option<String>,
    /// Phone number.
    #[serde(default)]
    pub phone_number: Option<String>,
}

/// What one pull run has looked up: each room and guest profile is read once per run (a
/// hotel's bookings share few rooms), through the client's rate limit.
#[derive(Debug, Default)]
pub struct References {
    rooms: HashMap<String, String>,
    guests: HashMap<String, GuestProfile>,
    /// API calls the look-ups made.
    pub calls: u32,
}

impl References {
    /// Fills in what `b` only references: its room number (`rooms`, from `current_room_id`,
    /// else `arrival_room_id`) unless it carries `rooms` itself, and its main guest's names
    /// and contacts (from `main_booking_guest`) when the booking's snapshot has no surname.
    /// A booking without a room yet (booked by room type) keeps no room.
    pub async fn resolve(
        &mut self,
        client: &ClockClient,
        b: &mut Booking,
    ) -> Result<(), UpstreamError> {
        if b.rooms.is_empty()
            && let Some(id) = b.room_ref()
        {
            if !self.rooms.contains_key(&id) {
                self.calls += 1;
                let room = client.room(&id).await?;
                let name = room
                    .name
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| UpstreamError::Decode {
                        upstream: UPSTREAM,
                        message: format!("room {id} has no name (number)"),
                    })?;
                self.rooms.insert(id.clone(), name);
            }
            b.rooms = self.rooms.get(&id).cloned().into_iter().collect();
        }
        if !b.has_guest_name()
            && let Some(id) = b.main_booking_guest.as_ref().map(ToString::to_string)
        {
            if !self.guests.contains_key(&id) {
                self.calls += 1;
                let g = client.guest(&id).await?;
                self.guests.insert(id.clone(), g);
            }
            if let Some(g) = self.guests.get(&id) {
                let fill = |slot: &mut Option<String>, v: &Option<String>| {
                    if slot.as_deref().is_none_or(|s| s.trim().is_empty()) {
                        slot.clone_from(v);
                    }
                };
                fill(&mut b.guest_last_name, &g.last_name);
                fill(&mut b.guest_first_name, &g.first_name);
                fill(&mut b.guest_middle_name, &g.middle_name);
                fill(&mut b.guest_e_mail, &g.e_mail);
                fill(&mut b.guest_phone_number, &g.phone_number);
            }
        }
        Ok(())
    }
}

/// Which bookings of the account to list.
#[derive(Debug, Clone)]
pub struct BookingQuery {
    /// Arrival dates, inclusive.
    pub arrival: Option<(NaiveDate, NaiveDate)>,
    /// Page size (1..=100).
    pub page_size: u32,
}

impl Default for BookingQuery {
    fn default() -> Self {
        BookingQuery {
            arrival: None,
            page_size: PAGE_SIZE,
        }
    }
}

/// A Clock PMS+ API client for one API user and account. Cheap to clone (clones share the
/// Digest challenge).
#[derive(Clone)]
pub struct ClockClient {
    ep: crate::http::Endpoint,
    user: Arc<str>,
    key: Arc<str>,
    /// The server's last Digest challenge, re-used with an increasing `nc`.
    challenge: Arc<Mutex<Option<WwwAuthenticateHeader>>>,
}

impl std::fmt::Debug for ClockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockClient")
            .field("base", &self.ep.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ClockClient {
    /// A client for `base_url` (`https://sky-eu1.clock-software.com/pms_api/{sub}/{account}`)
    /// with `secret` = `api user:api key`, at `rate` calls per second.
    pub fn new(base_url: &str, secret: &str, rate: f64, burst: u32) -> Result<Self, UpstreamError> {
        let (user, key) = secret
            .split_once(':')
            .filter(|(u, k)| !u.is_empty() && !k.is_empty())
            .ok_or_else(|| {
                UpstreamError::Config("clock credentials must be user:api key".into())
            })?;
        let ep = crate::http::Endpoint::new(UPSTREAM, base_url, rate, burst)?;
        Ok(ClockClient {
            ep,
            user: user.into(),
            key: key.into(),
            challenge: Arc::default(),
        })
    }

    /// The account the base URL names (its last path segment): the site of its bookings.
    pub fn account(&self) -> Option<String> {
        self.ep
            .base
            .path_segments()
            .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
            .map(str::to_owned)
    }

    /// An `Authorization` header for `uri` from the kept challenge (`None` before the first).
    fn authorization(&self, uri: &str) -> Option<String> {
        let mut guard = self.challenge.lock().unwrap_or_else(|e| e.into_inner());
        let prompt = guard.as_mut()?;
        let cx = AuthContext::new(&*self.user, &*self.key, uri);
        prompt.respond(&cx).ok().map(|h| h.to_header_string())
    }

    /// Keeps the Digest challenge of a 401; whether there was one.
    fn take_challenge(&self, resp: &reqwest::Response) -> bool {
        let parsed = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| v.trim_start().starts_with("Digest"))
            .find_map(|v| digest_auth::parse(v).ok());
        let found = parsed.is_some();
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        found
    }

    /// One GET with Digest authentication: a 401 carrying a challenge is answered once with
    /// it (first call, or the kept nonce expired); any other non-2xx is a classified error.
    async fn get_once<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &Url,
    ) -> Result<T, VendorError> {
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut auth = self.authorization(&uri);
        let mut answered_challenge = false;
        loop {
            let mut req = self
                .ep
                .http
                .request(Method::GET, url.as_str())
                .header("accept", "application/json");
            if let Some(a) = &auth {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            let resp = self.ep.http.send_raw(operation, req).await?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED
                && !answered_challenge
                && self.take_challenge(&resp)
            {
                answered_challenge = true;
                auth = self.authorization(&uri);
                continue;
            }
            if !resp.status().is_success() {
                return Err(VendorError::from_response(UPSTREAM, operation, resp).await);
            }
            return decode_json(UPSTREAM, operation, resp).await;
        }
    }

    /// GETs `path` (under the base URL) with `query`, retrying transient failures.
    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, UpstreamError> {
        let url = Url::parse_with_params(&self.ep.url(path), query)
            .map_err(|e| UpstreamError::Config(format!("clock url: {e}")))?;
        // Clock asks not to retry answered errors other than 429 automatically (a 5xx means
        // the request needs revising); timeouts and broken connections are retried.
        crate::http::retrying(
            &self.ep.http,
            operation,
            || self.get_once(operation, &url),
            |e| e.status().is_none_or(|s| s == 429),
        )
        .await
    }

    /// `GET …/rooms/{id}`: one room of the account.
    pub async fn room(&self, id: &str) -> Result<Room, UpstreamError> {
        let path = format!("/rooms/{}", path_segment(id)?);
        self.get("get_room", &path, &[]).await
    }

    /// `GET …/guests/{id}`: one guest profile.
    pub async fn guest(&self, id: &str) -> Result<GuestProfile, UpstreamError> {
        let path = format!("{}/{}", ours::GUESTS, path_segment(id)?);
        self.get("get_guest", &path, &[]).await
    }

    /// `GET .../bookings/` of the account, page by page; each booking handed to `each` raw
    /// (the one mapping reads it, so a booking that does not map fails alone).
    pub async fn bookings(
        &self,
        q: &BookingQuery,
        mut each: impl FnMut(Vec<serde_json::Value>) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError> {
        let size = q.page_size.clamp(1, 100);
        for page in 1..=MAX_PAGES {
            let mut query = vec![
                (ours::PAGE, page.to_string()),
                (ours::PER_PAGE, size.to_string()),
            ];
            if let Some((from, to)) = q.arrival {
                query.push((ours::ARRIVAL_FROM, from.to_string()));
                query.push((ours::ARRIVAL_TO, to.to_string()));
            }
            let list: Vec<serde_json::Value> =
                self.get("list_bookings", "/bookings/", &query).await?;
            let done = list.len() < size as usize;
            each(list)?;
            if done {
                return Ok(());
            }
        }
        Err(UpstreamError::Decode {
            upstream: UPSTREAM,
            message: format!("more than {MAX_PAGES} pages of bookings (is paging ignored?)"),
        })
    }
}
