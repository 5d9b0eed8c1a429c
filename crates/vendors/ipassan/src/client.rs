//! The iPassan API client, in one module.
//!
//! Auth and persons follow public integrator code; the asset-booking wire format is our own
//! (shared/VENDORS.md). Every path, query parameter and field name lives here, so adapting to
//! the real wire format is a change to this file only. HTTP plumbing (timeouts, trace
//! propagation, metrics, the transient/permanent classification, the OAuth2 token cache) is
//! `vendor-http`'s; this module only adds iPassan's paths, bodies and error messages.

use accesshub_connections::IpassanSettings;
use accesshub_domain::{Classify, ErrorClass};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use vendor_http::{AuthedClient, TokenSourceConfig, VendorClient, VendorError};

/// Metrics/tracing label of every call.
pub const VENDOR: &str = "ipassan";

/// Token endpoint, relative to the base URL.
const TOKEN_PATH: &str = "/api/v1/token";
/// The only scope iPassan hands out to API clients.
const SCOPE: &str = "all";
/// Default page size: large enough that a site rarely needs a second page, well inside the
/// API's 1–500 range.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// A runaway cursor (a vendor bug) must not loop forever: lists stop with an error after this
/// many pages.
const MAX_PAGES: usize = 1000;
/// iPassan's person type for residents (2 employee, 3 visitor).
pub const PERSON_TYPE_RESIDENT: u8 = 1;

fn persons_path(site: &str) -> String {
    format!("/api/v1/access/site/{site}/person")
}
fn assets_path(site: &str) -> String {
    format!("/api/v1/access/site/{site}/asset")
}
fn bookings_path(site: &str, asset: &str) -> String {
    format!("/api/v1/access/site/{site}/asset/{asset}/booking")
}
fn booking_path(site: &str, asset: &str, booking: &str) -> String {
    format!("/api/v1/access/site/{site}/asset/{asset}/booking/{booking}")
}

/// A person at a site (only the fields the worker needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    /// GUID.
    pub uuid: String,
    /// E-mail; residents are matched on it.
    #[serde(default)]
    pub mail: String,
    /// First name.
    #[serde(default)]
    pub firstname: String,
    /// Last name.
    #[serde(default)]
    pub lastname: String,
}

/// A person to create (form-encoded, as the API wants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPerson {
    /// Last name (required by iPassan).
    pub lastname: String,
    /// First name.
    pub firstname: String,
    /// E-mail.
    pub mail: String,
    /// Our upstream id, kept in iPassan's person number so operators can trace a person back.
    pub number: String,
    /// 1 resident, 2 employee, 3 visitor.
    pub person_type: u8,
}

/// A bookable asset (connecX's "facility") and the rules iPassan enforces on its bookings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Asset {
    /// GUID.
    pub uuid: String,
    /// Name, for messages.
    #[serde(default)]
    pub name: String,
    /// Slot length: bookings start and end on multiples of it (minutes since midnight UTC).
    #[serde(default = "default_slot")]
    pub time_slot_minutes: u32,
    /// Longest allowed booking.
    pub max_booking_minutes: u32,
    /// When true, bookings of this asset may not overlap.
    #[serde(default)]
    pub one_booking_per_slot: bool,
    /// Door/zone profile a booker must hold.
    #[serde(default)]
    pub door_access_profile: Option<String>,
    /// Floor profile a booker must hold.
    #[serde(default)]
    pub floor_access_profile: Option<String>,
}

/// iPassan's documented default slot.
fn default_slot() -> u32 {
    15
}

/// An asset booking as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssetBooking {
    /// GUID.
    pub uuid: String,
    /// Booker.
    pub person_uuid: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Our idempotency key (not unique at the vendor: looked up before creating).
    #[serde(default)]
    pub reference: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
}

/// An asset booking to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBooking {
    /// Booker.
    pub person_uuid: String,
    /// Start (slot boundary).
    pub start: DateTime<Utc>,
    /// End (slot boundary).
    pub end: DateTime<Utc>,
    /// Our reference.
    pub reference: String,
    /// Title shown in iPassan's planning view.
    pub title: String,
}

#[derive(Serialize)]
struct BookingBody<'a> {
    person_uuid: &'a str,
    start: String,
    end: String,
    reference: &'a str,
    title: &'a str,
}

/// iPassan timestamps: RFC 3339, UTC, whole seconds.
fn ts(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One cursor page `{data, next_cursor}`. `next_cursor` is documented as the next offset
/// (integer) but read leniently: a string cursor is passed back as `cursor`.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    next_cursor: Option<serde_json::Value>,
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq)]
enum Cursor {
    Offset(u64),
    Opaque(String),
}

impl Cursor {
    fn from_json(v: Option<serde_json::Value>) -> Option<Cursor> {
        match v? {
            serde_json::Value::Number(n) => n.as_u64().map(Cursor::Offset),
            serde_json::Value::String(s) if s.is_empty() => None,
            serde_json::Value::String(s) => Some(match s.parse::<u64>() {
                Ok(n) => Cursor::Offset(n),
                Err(_) => Cursor::Opaque(s),
            }),
            _ => None,
        }
    }
}

/// An iPassan call failed.
#[derive(Debug, thiserror::Error)]
pub enum IpassanError {
    /// 403 "Access Denied": the site GUID is wrong or outside the API client's bases. Retrying
    /// cannot help; an operator must fix the connection.
    #[error(
        "iPassan denied access to site {site} (\"Access Denied\" on {operation}): check the connection's site_guid and that the API client is linked to the site's base"
    )]
    AccessDenied {
        /// Site GUID of the connection.
        site: String,
        /// Operation label.
        operation: &'static str,
    },
    /// The vendor answered non-2xx; `message` is its `error_description` or `Error.message`.
    /// Classified by `vendor-http` (5xx/429 transient, other 4xx permanent).
    #[error("iPassan {operation}: HTTP {status}: {message}")]
    Api {
        /// Operation label.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// The vendor's message (or the raw body when it has none).
        message: String,
        /// The classified HTTP error.
        #[source]
        source: VendorError,
    },
    /// Transport failure, timeout, undecodable body, client configuration.
    #[error(transparent)]
    Http(#[from] VendorError),
    /// A list's cursor did not advance or never ended.
    #[error("iPassan {operation}: pagination did not terminate ({detail})")]
    Pagination {
        /// Operation label.
        operation: &'static str,
        /// What went wrong.
        detail: String,
    },
}

impl IpassanError {
    /// HTTP status, when the vendor answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            IpassanError::Api { status, .. } => Some(*status),
            IpassanError::AccessDenied { .. } => Some(403),
            _ => None,
        }
    }

    /// The vendor's message, when it answered with an error.
    pub fn vendor_message(&self) -> Option<&str> {
        match self {
            IpassanError::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Turns `vendor-http`'s error into ours, extracting iPassan's message.
    fn from_vendor(site: &str, operation: &'static str, e: VendorError) -> Self {
        let (Some(status), Some(body)) = (e.status(), e.body()) else {
            return IpassanError::Http(e);
        };
        let message = vendor_http::scrub(&vendor_message(body));
        if status == 403 && message.eq_ignore_ascii_case("access denied") {
            return IpassanError::AccessDenied {
                site: site.to_owned(),
                operation,
            };
        }
        IpassanError::Api {
            operation,
            status,
            message,
            source: e,
        }
    }
}

impl Classify for IpassanError {
    fn class(&self) -> ErrorClass {
        match self {
            IpassanError::AccessDenied { .. } | IpassanError::Pagination { .. } => {
                ErrorClass::Permanent
            }
            IpassanError::Api { source, .. } => source.class(),
            IpassanError::Http(e) => e.class(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            IpassanError::Api { source, .. } => source.retry_after(),
            IpassanError::Http(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// iPassan's error text: `error_description` (auth errors), `Error.message` (everything
/// else), else the raw body.
pub fn vendor_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Body {
        error_description: Option<String>,
        #[serde(rename = "Error")]
        error: Option<Inner>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(Body {
            error_description: Some(d),
            ..
        }) => d,
        Ok(Body {
            error: Some(Inner { message: Some(m) }),
            ..
        }) => m,
        _ => body.trim().to_owned(),
    }
}

/// A client for one connection: one site, one token cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IpassanClient {
    http: AuthedClient,
    base: String,
    site: String,
    page_size: u32,
}

impl IpassanClient {
    /// A client for `settings` sending through `http` (which carries timeouts and the
    /// connection's rate limit).
    pub fn new(http: VendorClient, settings: &IpassanSettings) -> Self {
        let base = settings.base_url.trim_end_matches('/').to_owned();
        let tokens = TokenSourceConfig {
            token_url: format!("{base}{TOKEN_PATH}"),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.expose().to_owned(),
            scope: Some(SCOPE.to_owned()),
        };
        IpassanClient {
            http: AuthedClient::new(http, tokens),
            base,
            site: settings.site_guid.clone(),
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Overrides the page size (1–500); tests use small pages to exercise pagination.
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, 500);
        self
    }

    /// The connection's site GUID.
    pub fn site(&self) -> &str {
        &self.site
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn err(&self, operation: &'static str) -> impl Fn(VendorError) -> IpassanError + '_ {
        move |e| IpassanError::from_vendor(&self.site, operation, e)
    }

    /// Every page of a list, following `next_cursor` until it is null.
    async fn list_all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<T>, IpassanError> {
        let url = self.url(path);
        let limit = self.page_size.to_string();
        let mut out = Vec::new();
        let mut cursor: Option<Cursor> = None;
        for _ in 0..MAX_PAGES {
            let mut query: Vec<(&str, String)> =
                filters.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            query.push(("limit", limit.clone()));
            match &cursor {
                Some(Cursor::Offset(o)) => query.push(("offset", o.to_string())),
                Some(Cursor::Opaque(c)) => query.push(("cursor", c.clone())),
                None => {}
            }
            let page: Page<T> = self
                .http
                .send_json(operation, |c| c.get(&url).query(&query))
                .await
                .map_err(self.err(operation))?;
            out.extend(page.data);
            let next = Cursor::from_json(page.next_cursor);
            match next {
                None => return Ok(out),
                Some(n) if Some(&n) == cursor.as_ref() => {
                    return Err(IpassanError::Pagination {
                        operation,
                        detail: format!("cursor {n:?} repeated"),
                    });
                }
                Some(n) => cursor = Some(n),
            }
        }
        Err(IpassanError::Pagination {
            operation,
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Proves the credentials and site GUID work (token + one list call), for connection checks.
    pub async fn check_credentials(&self) -> Result<(), IpassanError> {
        self.list_assets().await.map(|_| ())
    }

    /// Persons at the site, optionally filtered by e-mail (all pages).
    pub async fn list_persons(&self, mail: Option<&str>) -> Result<Vec<Person>, IpassanError> {
        let filters: Vec<(&str, &str)> = mail.map(|m| ("mail", m)).into_iter().collect();
        self.list_all("list_persons", &persons_path(&self.site), &filters)
            .await
    }

    /// The first person at the site whose e-mail matches (case-insensitive). The `mail`
    /// filter is sent, and the match re-checked here, so a server that ignores the filter
    /// still gives the right answer.
    pub async fn find_person_by_mail(&self, mail: &str) -> Result<Option<Person>, IpassanError> {
        let all = self.list_persons(Some(mail)).await?;
        Ok(all
            .into_iter()
            .find(|p| p.mail.trim().eq_ignore_ascii_case(mail.trim())))
    }

    /// Creates a person (form-encoded, with `accessType[...]` left to the site's operators:
    /// we never grant profiles, so iPassan's own profile rule stays in charge).
    pub async fn create_person(&self, p: &NewPerson) -> Result<Person, IpassanError> {
        let url = self.url(&persons_path(&self.site));
        let person_type = p.person_type.to_string();
        let form = [
            ("lastname", p.lastname.as_str()),
            ("firstname", p.firstname.as_str()),
            ("mail", p.mail.as_str()),
            ("number", p.number.as_str()),
            ("type", person_type.as_str()),
        ];
        self.http
            .send_json("create_person", |c| c.post(&url).form(&form))
            .await
            .map_err(self.err("create_person"))
    }

    /// Every asset at the site (all pages).
    pub async fn list_assets(&self) -> Result<Vec<Asset>, IpassanError> {
        self.list_all("list_assets", &assets_path(&self.site), &[])
            .await
    }

    /// One asset by GUID (from the list: the API has no single-asset endpoint).
    pub async fn find_asset(&self, uuid: &str) -> Result<Option<Asset>, IpassanError> {
        Ok(self
            .list_assets()
            .await?
            .into_iter()
            .find(|a| a.uuid.eq_ignore_ascii_case(uuid)))
    }

    /// Bookings of an asset, optionally only those carrying `reference` (all pages).
    pub async fn list_bookings(
        &self,
        asset: &str,
        reference: Option<&str>,
    ) -> Result<Vec<AssetBooking>, IpassanError> {
        let filters: Vec<(&str, &str)> = reference.map(|r| ("reference", r)).into_iter().collect();
        let all: Vec<AssetBooking> = self
            .list_all("list_bookings", &bookings_path(&self.site, asset), &filters)
            .await?;
        // Re-checked here: a server ignoring the filter must not make us adopt others' bookings.
        Ok(match reference {
            Some(r) => all
                .into_iter()
                .filter(|b| b.reference.as_deref() == Some(r))
                .collect(),
            None => all,
        })
    }

    /// Creates an asset booking.
    pub async fn create_booking(
        &self,
        asset: &str,
        b: &NewBooking,
    ) -> Result<AssetBooking, IpassanError> {
        let url = self.url(&bookings_path(&self.site, asset));
        let body = BookingBody {
            person_uuid: &b.person_uuid,
            start: ts(&b.start),
            end: ts(&b.end),
            reference: &b.reference,
            title: &b.title,
        };
        self.http
            .send_json("create_booking", |c| c.post(&url).json(&body))
            .await
            .map_err(self.err("create_booking"))
    }

    /// One asset booking; `None` when it (or its asset) does not exist.
    pub async fn get_booking(
        &self,
        asset: &str,
        booking: &str,
    ) -> Result<Option<AssetBooking>, IpassanError> {
        let url = self.url(&booking_path(&self.site, asset, booking));
        let resp = self
            .http
            .send_raw("get_booking", |c| c.get(&url))
            .await
            .map_err(self.err("get_booking"))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            let e = VendorError::from_response(VENDOR, "get_booking", resp).await;
            return Err(self.err("get_booking")(e));
        }
        vendor_http::decode_json(VENDOR, "get_booking", resp)
            .await
            .map(Some)
            .map_err(IpassanError::Http)
    }

    /// Deletes an asset booking. `Ok(false)` when it was already gone (404): the desired
    /// state — no booking — holds either way.
    pub async fn delete_booking(&self, asset: &str, booking: &str) -> Result<bool, IpassanError> {
        let url = self.url(&booking_path(&self.site, asset, booking));
        let resp = self
            .http
            .send_raw("delete_booking", |c| c.request(Method::DELETE, &url))
            .await
            .map_err(self.err("delete_booking"))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if resp.status().is_success() {
            return Ok(true);
        }
        let e = VendorError::from_response(VENDOR, "delete_booking", resp).await;
        Err(self.err("delete_booking")(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_both_error_shapes() {
        assert_eq!(
            vendor_message(r#"{"error":"access_denied","error_description":"Access Denied"}"#),
            "Access Denied"
        );
        assert_eq!(
            vendor_message(r#"{"Error":{"code":422,"message":"end must be after start"}}"#),
            "end must be after start"
        );
        assert_eq!(vendor_message(" plain text "), "plain text");
    }

    #[test]
    fn cursors() {
        assert_eq!(
            Cursor::from_json(Some(serde_json::json!(50))),
            Some(Cursor::Offset(50))
        );
        assert_eq!(
            Cursor::from_json(Some(serde_json::json!("100"))),
            Some(Cursor::Offset(100))
        );
        assert_eq!(
            Cursor::from_json(Some(serde_json::json!("abc"))),
            Some(Cursor::Opaque("abc".into()))
        );
        assert_eq!(Cursor::from_json(Some(serde_json::Value::Null)), None);
        assert_eq!(Cursor::from_json(None), None);
    }

    #[test]
    fn access_denied_is_permanent_with_reason() {
        let e = IpassanError::from_vendor(
            "site-x",
            "list_assets",
            VendorError::Status {
                vendor: VENDOR,
                operation: "list_assets",
                status: 403,
                body: r#"{"error":"access_denied","error_description":"Access Denied"}"#.into(),
                retry_after: None,
            },
        );
        assert!(matches!(e, IpassanError::AccessDenied { .. }));
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("site-x"));
    }

    #[test]
    fn server_errors_stay_transient() {
        let e = IpassanError::from_vendor(
            "s",
            "create_booking",
            VendorError::Status {
                vendor: VENDOR,
                operation: "create_booking",
                status: 503,
                body: r#"{"Error":{"code":503,"message":"busy"}}"#.into(),
                retry_after: Some(std::time::Duration::from_secs(2)),
            },
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(2)));
        assert_eq!(e.vendor_message(), Some("busy"));
    }
}
