//! SOAP 1.1 client for the Messenger PMS Web Service Interface Rev. 4 (Saflok 6000) and the
//! Ambiance PMS web service, which we drive with the same operation set and fault model
//! behind the connection's `product` switch (VENDORS.md).
//!
//! Requests are written with quick-xml so every value is escaped (guest names come from
//! upstream PMSs). Replies are `<OpResult>` holding the `CMessengerResponse` fields or a
//! `<Fault>` **inside the result** with HTTP 200; faults become [`SoapError::Fault`] and are
//! classified by their reason ([`error::fault_class`]).
//!
//! The transport is vendor-http's [`VendorClient::send_bytes`], as for every other vendor:
//! rate limit, `vendor.request` span, `traceparent`, `accesshub_vendor_*` metrics, and the one
//! HTTP status / `Retry-After` rule ([`vendor_http::class_of_status`]).

pub mod error;
mod xml;

use std::{sync::Arc, time::Duration};

use accesshub_connections::{DormakabaProduct, DormakabaSettings, Secret};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use vendor_http::{HttpSettings, Method, RateLimiter, VendorClient};

pub use error::{SoapError, TRANSIENT_FAULTS, fault_class, fault_description};
use xml::{Element, XmlWriter};

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Vendor label of the `accesshub_vendor_*` metrics and the `vendor.request` span.
const VENDOR: &str = "dormakaba";
/// TCP/TLS connect timeout: a lock server that does not accept within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Endpoint path used when the connection does not set one.
pub fn default_path(product: DormakabaProduct) -> &'static str {
    match product {
        DormakabaProduct::Saflok => "/MessengerPMSWS",
        DormakabaProduct::Ambiance => "/AmbiancePMSWS",
    }
}

/// Namespace used when the connection does not set one: Messenger's documented
/// `http://tempuri.org`; for Ambiance (undocumented) ours, `http://tempuri.org/AmbiancePMSWS`,
/// matching the default endpoint path.
pub fn default_namespace(product: DormakabaProduct) -> &'static str {
    match product {
        DormakabaProduct::Saflok => "http://tempuri.org",
        DormakabaProduct::Ambiance => "http://tempuri.org/AmbiancePMSWS",
    }
}

/// Everything needed to talk to one lock system, derived from a connection.
#[derive(Debug, Clone)]
pub struct SoapConfig {
    /// Which product (only changes defaults; the wire protocol is shared).
    pub product: DormakabaProduct,
    /// Full endpoint URL.
    pub endpoint: String,
    /// Operation / AuthHeader namespace.
    pub namespace: String,
    /// AuthHeader user.
    pub username: String,
    /// AuthHeader password (never logged).
    pub password: Secret,
    /// `SiteName` sent with every operation.
    pub site_name: String,
    /// `PMSTerminalID` sent with every operation.
    pub pms_terminal_id: String,
    /// `AuthHeader/From`: who is calling, for the lock system's audit log.
    pub from: String,
    /// Whole-request timeout: encoding a card takes seconds, but a hung service must become
    /// a transient error, not a stuck worker.
    pub timeout: Duration,
}

impl SoapConfig {
    /// Config from a stored connection.
    pub fn from_settings(s: &DormakabaSettings) -> Self {
        let path = s
            .path
            .clone()
            .unwrap_or_else(|| default_path(s.product).to_owned());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let host = if s.host.contains(':') && !s.host.starts_with('[') {
            format!("[{}]", s.host)
        } else {
            s.host.clone()
        };
        SoapConfig {
            product: s.product,
            endpoint: format!("{}://{}:{}{}", s.scheme, host, s.port, path),
            namespace: s
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace(s.product).to_owned()),
            username: s.username.clone(),
            password: s.password.clone(),
            site_name: s.site_name.clone(),
            pms_terminal_id: s.pms_terminal_id.clone(),
            from: "accesshub".to_owned(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Access mode of a common area (`CCommonAreas.eMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaMode {
    /// Whatever the lock system configured for the room.
    DefaultConfiguredAccess,
    /// Grant access.
    GrantAccess,
    /// Deny access.
    DenyAccess,
}

impl AreaMode {
    fn as_str(self) -> &'static str {
        match self {
            AreaMode::DefaultConfiguredAccess => "DefaultConfiguredAccess",
            AreaMode::GrantAccess => "GrantAccess",
            AreaMode::DenyAccess => "DenyAccess",
        }
    }
}

/// A common area on a key: pass level plus mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonArea {
    /// Pass level number in the lock system.
    pub pass_level: u32,
    /// Mode.
    pub mode: AreaMode,
}

/// Fields of `CreateNewBooking` / `ChangeKeyAccess`.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingRequest {
    /// Our reservation reference (idempotency key at the lock system).
    pub reservation_id: String,
    /// "Surname, First, Middle".
    pub guest_name: String,
    /// Main room number in the lock system.
    pub main_room: String,
    /// Further rooms (`VariableRoomList`).
    pub extra_rooms: Vec<String>,
    /// Pass levels (`CommonAreaList`).
    pub common_areas: Vec<CommonArea>,
    /// Key valid from, in the site's timezone (sent with its offset).
    pub check_in: DateTime<chrono_tz::Tz>,
    /// Key valid until, in the site's timezone.
    pub check_out: DateTime<chrono_tz::Tz>,
    /// Encoder id in the lock system ("0" returns key data instead of encoding).
    pub encoder_id: String,
    /// Cards to encode (0 registers the booking without a card).
    pub key_count: u32,
    /// `KeySize` from the connection.
    pub key_size: u32,
    /// Mobile number to send a mobile key to with the booking (our extension).
    pub mobile_number: Option<String>,
}

/// A successful `CMessengerResponse` / `CMessengerGuestCreateResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessengerResponse {
    /// `ResponseCode`.
    pub code: String,
    /// `ResponseMessage`.
    pub message: String,
    /// `retAccessKey`: key data when encoder 0 was used.
    pub access_key: Option<String>,
    /// `retPMSTransactionNo` of guest-creating operations.
    pub transaction_no: Option<String>,
}

fn xs_datetime<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A SOAP client for one lock system. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SoapClient {
    cfg: SoapConfig,
    http: VendorClient,
    /// Set for a lock server on the hotel's LAN: calls go through its edge relay.
    edge: Option<(Arc<crate::edge::EdgeLink>, crate::edge::EdgeTarget)>,
    /// The connection's rate limit for edge calls (HTTP calls take it in `http`).
    limiter: Option<Arc<RateLimiter>>,
}

impl SoapClient {
    /// A client with its own connection pool and no rate limit.
    pub fn new(cfg: SoapConfig) -> Result<Self, SoapError> {
        if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) {
            return Err(SoapError::Config(format!(
                "endpoint {:?} must be http(s)",
                cfg.endpoint
            )));
        }
        let http = VendorClient::new(
            VENDOR,
            HttpSettings {
                timeout: cfg.timeout,
                connect_timeout: CONNECT_TIMEOUT,
            },
        )
        .map_err(|e| SoapError::Config(e.to_string()))?;
        Ok(SoapClient {
            cfg,
            http,
            edge: None,
            limiter: None,
        })
    }

    /// Calls go over NATS to the site's edge relay instead of HTTP from here.
    pub fn via_edge(
        mut self,
        link: Arc<crate::edge::EdgeLink>,
        target: crate::edge::EdgeTarget,
    ) -> Self {
        self.edge = Some((link, target));
        self
    }

    /// The edge site this client's calls go through (`None`: straight HTTP).
    pub fn edge_target(&self) -> Option<&crate::edge::EdgeTarget> {
        self.edge.as_ref().map(|(_, t)| t)
    }

    /// Every call of this client (and its clones) first takes a token from `limiter`, the
    /// connection's rate limit — so callers need not acquire tokens themselves.
    pub fn with_rate_limit(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter.clone());
        self.http = self.http.with_rate_limit(limiter);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SoapConfig {
        &self.cfg
    }

    /// `HelloWorldTest`: checks reachability and credentials (the "encoder test" lookup).
    pub async fn hello_world_test(&self) -> Result<MessengerResponse, SoapError> {
        self.call("HelloWorldTest", |_| {}).await
    }

    /// `CreateNewBooking`. What a lock system does with a `ReservationID` it already holds is
    /// undocumented (some answer the existing booking, "Booking already exists"; one that
    /// does not de-duplicate holds a second booking), so the worker probes before repeating
    /// a create that may have reached it (`desired::Op::CreateUnlessExists`).
    pub async fn create_new_booking(
        &self,
        b: &BookingRequest,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call_with_phone("CreateNewBooking", b.mobile_number.as_deref(), |w| {
            w.leaf("ReservationID", &b.reservation_id)
                .leaf("SiteName", site)
                .leaf("PMSTerminalID", term)
                .leaf("EncoderID", &b.encoder_id)
                .leaf("CheckIn", &xs_datetime(&b.check_in))
                .leaf("CheckOut", &xs_datetime(&b.check_out))
                .leaf("GuestName", &b.guest_name)
                .leaf("MainRoomNo", &b.main_room)
                .leaf("bGrantAccessPredefinedSuiteDoors", "true");
            write_rooms_and_areas(w, &b.extra_rooms, &b.common_areas);
            w.leaf("KeyCount", &b.key_count.to_string())
                .leaf("KeySize", &b.key_size.to_string());
            if let Some(m) = &b.mobile_number {
                w.leaf("GuestMobileNumber", m);
            }
        })
        .await
    }

    /// `ChangeKeyAccess`: rewrites rooms, areas, validity and guest name, encoding
    /// `key_count` new cards (earlier cards stop working).
    pub async fn change_key_access(
        &self,
        b: &BookingRequest,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call("ChangeKeyAccess", |w| {
            w.leaf("ReservationID", &b.reservation_id)
                .leaf("SiteName", site)
                .leaf("PMSTerminalID", term)
                .leaf("EncoderID", &b.encoder_id)
                .leaf("CheckIn", &xs_datetime(&b.check_in))
                .leaf("CheckOut", &xs_datetime(&b.check_out))
                .leaf("GuestName", &b.guest_name)
                .leaf("MainRoomNo", &b.main_room);
            write_rooms_and_areas(w, &b.extra_rooms, &b.common_areas);
            w.leaf("KeyCount", &b.key_count.to_string())
                .leaf("KeySize", &b.key_size.to_string());
        })
        .await
    }

    /// `MakeDuplicateKey`: more cards for the same stay.
    pub async fn make_duplicate_key(
        &self,
        reservation_id: &str,
        guest_name: &str,
        encoder_id: &str,
        key_count: u32,
        key_size: u32,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call("MakeDuplicateKey", |w| {
            w.leaf("ReservationID", reservation_id)
                .leaf("SiteName", site)
                .leaf("PMSTerminalID", term)
                .leaf("EncoderID", encoder_id)
                .leaf("KeyCount", &key_count.to_string())
                .leaf("KeySize", &key_size.to_string())
                .leaf("GuestName", guest_name);
        })
        .await
    }

    /// `CheckOutGuest`: ends access now (also cancels mobile keys).
    pub async fn check_out_guest(
        &self,
        reservation_id: &str,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call("CheckOutGuest", |w| {
            w.leaf("ReservationID", reservation_id)
                .leaf("SiteName", site)
                .leaf("PMSTerminalID", term);
        })
        .await
    }

    /// `ExtendCheckOut`: moves the end of validity (earlier or later) without new cards.
    pub async fn extend_check_out(
        &self,
        reservation_id: &str,
        new_check_out: &DateTime<chrono_tz::Tz>,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call("ExtendCheckOut", |w| {
            w.leaf("ReservationID", reservation_id)
                .leaf("SiteName", site)
                .leaf("PMSTerminalID", term)
                .leaf("NewCheckOut", &xs_datetime(new_check_out));
        })
        .await
    }

    /// `CancelGuestsMobileAccessToRoom`.
    pub async fn cancel_mobile_access(
        &self,
        reservation_id: &str,
        main_room: &str,
        mobile_number: &str,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call_with_phone("CancelGuestsMobileAccessToRoom", Some(mobile_number), |w| {
            w.leaf("SiteName", site)
                .leaf("ReservationID", reservation_id)
                .leaf("MainRoomNumber", main_room)
                .leaf("GuestMobileNumber", mobile_number)
                .leaf("PMSTerminalID", term);
        })
        .await
    }

    /// `IssueMobileKey` (the simulator's / our mobile-key operation): the app matches the
    /// surname (pass it already cut at the first comma) and the phone number. A mismatch is
    /// still a success to the PMS; the lock system logs that nothing was delivered.
    pub async fn issue_mobile_key(
        &self,
        reservation_id: &str,
        main_room: &str,
        surname: &str,
        mobile_number: &str,
    ) -> Result<MessengerResponse, SoapError> {
        let (site, term) = (&self.cfg.site_name, &self.cfg.pms_terminal_id);
        self.call_with_phone("IssueMobileKey", Some(mobile_number), |w| {
            w.leaf("SiteName", site)
                .leaf("ReservationID", reservation_id)
                .leaf("MainRoomNumber", main_room)
                .leaf("GuestName", surname)
                .leaf("GuestMobileNumber", mobile_number)
                .leaf("PMSTerminalID", term);
        })
        .await
    }

    /// The whole envelope of one call (public for tests of the wire format).
    pub fn envelope(
        &self,
        operation: &str,
        body: impl FnOnce(&mut XmlWriterHandle<'_>),
    ) -> Vec<u8> {
        let now = Utc::now();
        let created = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let expires =
            (now + chrono::Duration::minutes(5)).to_rfc3339_opts(SecondsFormat::Millis, true);
        let ns = self.cfg.namespace.as_str();
        let mut w = XmlWriter::new();
        w.open(
            "soap:Envelope",
            &[
                ("xmlns:soap", SOAP_ENV),
                ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
                ("xmlns:xsd", "http://www.w3.org/2001/XMLSchema"),
            ],
        );
        w.open("soap:Header", &[]);
        w.open("AuthHeader", &[("xmlns", ns)])
            .leaf("From", &self.cfg.from)
            .leaf("MessageID", &uuid::Uuid::new_v4().to_string());
        w.open("Security", &[]);
        w.open("Timestamp", &[])
            .leaf("Created", &created)
            .leaf("Expires", &expires)
            .close();
        w.open("UsernameToken", &[])
            .leaf("Username", &self.cfg.username)
            .leaf("Password", self.cfg.password.expose())
            .leaf("Created", &created)
            .close();
        w.close().close().close(); // Security, AuthHeader, Header
        w.open("soap:Body", &[]);
        w.open(operation, &[("xmlns", ns)]);
        body(&mut XmlWriterHandle(&mut w));
        w.finish()
    }

    async fn call(
        &self,
        operation: &'static str,
        body: impl FnOnce(&mut XmlWriterHandle<'_>),
    ) -> Result<MessengerResponse, SoapError> {
        self.call_with_phone(operation, None, body).await
    }

    /// [`Self::call`] of an operation that sends a phone number: the lock system's error texts
    /// may repeat it, so the error is redacted ([`SoapError::redact_phone`]) before anything
    /// (a debug log, a DLQ reason, the desk's message) can show it.
    async fn call_with_phone(
        &self,
        operation: &'static str,
        phone: Option<&str>,
        body: impl FnOnce(&mut XmlWriterHandle<'_>),
    ) -> Result<MessengerResponse, SoapError> {
        let redact = |r: Result<MessengerResponse, SoapError>| match (r, phone) {
            (Err(e), Some(p)) => Err(e.redact_phone(p)),
            (r, _) => r,
        };
        let envelope = self.envelope(operation, body);
        let action = format!(
            "\"{}/{operation}\"",
            self.cfg.namespace.trim_end_matches('/')
        );
        if let Some((link, target)) = &self.edge {
            if let Some(l) = &self.limiter {
                l.acquire().await;
            }
            let (status, body, retry_after) =
                link.call(target, operation, &action, envelope).await?;
            return redact(parse_reply(operation, status, &body, retry_after));
        }
        let request = self
            .http
            .request(Method::POST, &self.cfg.endpoint)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", action)
            .body(envelope);
        let reply = self
            .http
            .send_bytes(operation, request)
            .await
            .map_err(|e| SoapError::from_vendor(operation, e))?;
        let result = redact(parse_reply(
            operation,
            reply.status.as_u16(),
            &reply.body,
            reply.retry_after(),
        ));
        if let Err(e) = &result {
            tracing::debug!(operation, error = %e, "dormakaba call failed");
        }
        result
    }
}

/// What operation bodies are written with (keeps the writer type private).
pub struct XmlWriterHandle<'a>(&'a mut XmlWriter);

impl XmlWriterHandle<'_> {
    /// `<name>text</name>`, escaped.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.0.leaf(name, text);
        self
    }
    fn open(&mut self, name: &str) -> &mut Self {
        self.0.open(name, &[]);
        self
    }
    fn close(&mut self) -> &mut Self {
        self.0.close();
        self
    }
}

/// Both lists are always sent, empty ones too: `ChangeKeyAccess` leaves a list it is not
/// sent unchanged, so leaving out an emptied list would keep the rooms or common areas a
/// changed reservation no longer has (access outliving its booking).
fn write_rooms_and_areas(w: &mut XmlWriterHandle<'_>, rooms: &[String], areas: &[CommonArea]) {
    w.open("VariableRoomList");
    for r in rooms {
        w.leaf("string", r);
    }
    w.close();
    w.open("CommonAreaList");
    for a in areas {
        w.open("CCommonAreas")
            .leaf("PassLevelNo", &a.pass_level.to_string())
            .leaf("eMode", a.mode.as_str())
            .close();
    }
    w.close();
}

/// The start of a body for a message, scrubbed (the lock system may echo our password).
fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    vendor_http::scrub(&s)
}

/// Reads a reply: a fault inside the result, a real SOAP Fault, or the response fields.
fn parse_reply(
    operation: &'static str,
    status: u16,
    bytes: &[u8],
    retry_after: Option<Duration>,
) -> Result<MessengerResponse, SoapError> {
    let root = parse_ok(bytes);
    let soap_fault = |root: &Element| {
        let body = root.child("Body")?;
        let f = body.child("Fault")?;
        Some(SoapError::SoapFault {
            operation,
            code: f.text_of("faultcode").unwrap_or_default().to_owned(),
            string: vendor_http::scrub(f.text_of("faultstring").unwrap_or_default()),
        })
    };
    if !(200..300).contains(&status) {
        if let Some(e) = root.as_ref().and_then(soap_fault) {
            return Err(e);
        }
        return Err(SoapError::Http {
            operation,
            status,
            body: snippet(bytes),
            retry_after,
        });
    }
    let root = root.ok_or_else(|| SoapError::Decode {
        operation,
        message: format!("not XML: {}", snippet(bytes)),
    })?;
    let result_name = format!("{operation}Result");
    let Some(result) = root.find(&result_name) else {
        if let Some(e) = soap_fault(&root) {
            return Err(e);
        }
        return Err(SoapError::Decode {
            operation,
            message: format!("no {result_name} element"),
        });
    };
    if let Some(f) = result.child("Fault") {
        return Err(SoapError::Fault {
            operation,
            code: f.text_of("faultcode").unwrap_or_default().to_owned(),
            string: vendor_http::scrub(f.text_of("faultstring").unwrap_or_default()),
            detail: vendor_http::scrub(f.text_of("detailInfo").unwrap_or_default()),
        });
    }
    let code = result
        .text_of("ResponseCode")
        .unwrap_or_default()
        .to_owned();
    let message = result
        .text_of("ResponseMessage")
        .unwrap_or_default()
        .to_owned();
    if result
        .text_of("bSuccess")
        .is_some_and(|s| s.eq_ignore_ascii_case("false") || s == "0")
    {
        return Err(SoapError::Unsuccessful {
            operation,
            code,
            message,
        });
    }
    let opt = |name: &str| {
        result
            .text_of(name)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(MessengerResponse {
        code,
        message,
        access_key: opt("retAccessKey"),
        transaction_no: opt("retPMSTransactionNo"),
    })
}

fn parse_ok(bytes: &[u8]) -> Option<Element> {
    xml::parse(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fault_inside_result_and_success() {
        let ok = br#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><CreateNewBookingResponse xmlns="http://tempuri.org"><CreateNewBookingResult><bSuccess>true</bSuccess><ResponseCode>0</ResponseCode><ResponseMessage>Booking created</ResponseMessage><retAccessKey/><retPMSTransactionNo>100001</retPMSTransactionNo></CreateNewBookingResult></CreateNewBookingResponse></soap:Body></soap:Envelope>"#;
        let r = parse_reply("CreateNewBooking", 200, ok, None).unwrap();
        assert_eq!(r.transaction_no.as_deref(), Some("100001"));
        assert_eq!(r.access_key, None);
        let fault = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><x:CheckOutGuestResponse xmlns:x="http://tempuri.org"><x:CheckOutGuestResult><x:Fault><x:faultcode>EncoderBusy</x:faultcode><x:faultstring>The encoder is busy</x:faultstring><x:detailInfo>encoder 1 &amp; more</x:detailInfo></x:Fault></x:CheckOutGuestResult></x:CheckOutGuestResponse></s:Body></s:Envelope>"#;
        let e = parse_reply("CheckOutGuest", 200, fault, None).unwrap_err();
        assert_eq!(e.fault_code(), Some("EncoderBusy"));
        assert!(e.to_string().contains("encoder 1 & more"));
        let sf = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>Server did not recognize</faultstring></soap:Fault></soap:Body></soap:Envelope>"#;
        let e = parse_reply("X", 500, sf, None).unwrap_err();
        assert!(matches!(e, SoapError::SoapFault { .. }));
        let e = parse_reply("X", 503, b"{\"error\":1}", None).unwrap_err();
        assert!(matches!(e, SoapError::Http { status: 503, .. }));
    }
}
