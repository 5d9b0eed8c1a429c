//! SOAP 1.1 plumbing: routing, envelope parsing, response and WSDL rendering.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::xml::{self, esc};
use super::{AMBIANCE_PATH, Product, SAFLOK_PATH, ops};
use crate::faults::{LayerCtx, vendor_layer};
use crate::state::{SimState, Vendor, lock};

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// What an operation answers inside its `...Result` element.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// `CMessengerResponse` (or `CMessengerGuestCreateResponse` when `transaction_no` is set).
    Ok {
        message: String,
        access_key: Option<String>,
        transaction_no: Option<String>,
    },
    /// `<Fault>` inside the result element.
    Fault {
        code: String,
        string: String,
        detail: String,
    },
}

impl Outcome {
    pub(crate) fn fault(code: &str, detail: impl Into<String>) -> Self {
        Outcome::Fault {
            code: code.to_owned(),
            string: fault_string(code).to_owned(),
            detail: detail.into(),
        }
    }
}

/// The human text of each fault reason.
fn fault_string(code: &str) -> &'static str {
    match code {
        "AuthHeaderNotRecognized" => "The AuthHeader credentials were not recognized",
        "UserCredentialsNotProvided" => "User credentials were not provided in the AuthHeader",
        "InvalidWSParameter" => "Invalid web service parameter",
        "RoomNumberNotFound" => "Room number not found",
        "ReservationNotFound" => "Reservation not found",
        "ReservationCheckedOut" => "Reservation already checked out",
        "MaxSharedReached" => "Maximum number of shared guests reached",
        "BusyProcessingPreviousRequest" => "Busy processing a previous request",
        "EmptyPhoneNumber" => "The phone number is empty",
        "PhoneNumberTooSmall" => "The phone number is too short",
        "UnableToDeliverToPhone" => "Unable to deliver to the phone",
        "RoomOFFLine" => "The room is offline",
        "EncoderNotOnlineOrNotExist" => "The encoder is not online or does not exist",
        "EncoderBusy" => "The encoder is busy",
        "InvalidEncoderNumber" => "Invalid encoder number",
        "TimeoutWaitingKey" => "Timeout waiting for a key",
        "KeyJammed" => "Key jammed in the encoder",
        "CheckoutDateLessThanSystemDate" => "The checkout date is earlier than the system date",
        "MaxDuplicatesMadeReached" => "Maximum number of duplicate keys reached",
        _ => "Operation failed",
    }
}

/// Operations whose result is a `CMessengerGuestCreateResponse`.
pub(crate) fn is_guest_create(op: &str) -> bool {
    matches!(op, "CreateNewBooking" | "AddSharedGuest")
}

/// The dormakaba router: both products' endpoints on one port.
pub(crate) fn router(state: SimState) -> Router {
    let ctx = LayerCtx {
        state: state.clone(),
        vendor: Vendor::Dormakaba,
    };
    Router::new()
        .route(
            SAFLOK_PATH,
            get(|st, q| wsdl(st, q, Product::Saflok)).post(|st, b| handle(st, b, Product::Saflok)),
        )
        .route(
            AMBIANCE_PATH,
            get(|st, q| wsdl(st, q, Product::Ambiance))
                .post(|st, b| handle(st, b, Product::Ambiance)),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such SOAP endpoint") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(ctx, vendor_layer))
}

fn product_of_path(path: &str) -> Product {
    if path.starts_with(AMBIANCE_PATH) {
        Product::Ambiance
    } else {
        Product::Saflok
    }
}

/// The operation name of a SOAP request body (first child of `Body`), for logs and faults.
pub(crate) fn soap_operation(body: &[u8]) -> Option<String> {
    let root = xml::parse(body).ok()?;
    let body = root.child("Body")?;
    body.children.first().map(|op| op.name.clone())
}

/// The response for an injected `SoapFault`: the fault inside the operation's result.
pub(crate) fn injected_fault_response(
    state: &SimState,
    path: &str,
    op: &str,
    reason: &str,
) -> Response {
    let product = product_of_path(path);
    let ns = lock(&state.inner.dormakaba)
        .system(product)
        .namespace
        .clone();
    let outcome = Outcome::Fault {
        code: reason.to_owned(),
        string: fault_string(reason).to_owned(),
        detail: "injected fault".to_owned(),
    };
    xml_response(StatusCode::OK, render(&ns, op, &outcome))
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A real SOAP 1.1 Fault (HTTP 500), for requests the service cannot even dispatch.
fn soap_fault(code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{SOAP_ENV}\"><soap:Body><soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{}</faultstring><detail/></soap:Fault></soap:Body></soap:Envelope>",
        esc(message)
    );
    xml_response(StatusCode::INTERNAL_SERVER_ERROR, body)
}

/// Renders `<OpResponse xmlns=ns><OpResult>...</OpResult></OpResponse>` in an envelope.
pub(crate) fn render(ns: &str, op: &str, outcome: &Outcome) -> String {
    let mut inner = String::new();
    match outcome {
        Outcome::Ok {
            message,
            access_key,
            transaction_no,
        } => {
            let _ = write!(
                inner,
                "<bSuccess>true</bSuccess><ResponseCode>0</ResponseCode><ResponseMessage>{}</ResponseMessage><retAccessKey>{}</retAccessKey>",
                esc(message),
                esc(access_key.as_deref().unwrap_or(""))
            );
            if is_guest_create(op) {
                let _ = write!(
                    inner,
                    "<retPMSTransactionNo>{}</retPMSTransactionNo>",
                    esc(transaction_no.as_deref().unwrap_or(""))
                );
            }
        }
        Outcome::Fault {
            code,
            string,
            detail,
        } => {
            let _ = write!(
                inner,
                "<Fault><faultcode>{}</faultcode><faultstring>{}</faultstring><detailInfo>{}</detailInfo></Fault>",
                esc(code),
                esc(string),
                esc(detail)
            );
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{SOAP_ENV}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body><{op}Response xmlns=\"{ns}\"><{op}Result>{inner}</{op}Result></{op}Response></soap:Body></soap:Envelope>",
        ns = esc(ns)
    )
}

async fn handle(State(st): State<SimState>, body: Bytes, product: Product) -> Response {
    let root = match xml::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            return soap_fault(
                "Client",
                &format!("the request is not well-formed XML: {e}"),
            );
        }
    };
    if root.name != "Envelope" || xml::namespace_of(&[&root]).as_deref() != Some(SOAP_ENV) {
        return soap_fault("VersionMismatch", "expected a SOAP 1.1 Envelope");
    }
    let Some(body_el) = root.child("Body") else {
        return soap_fault("Client", "the Envelope has no Body");
    };
    let Some(op_el) = body_el.children.first() else {
        return soap_fault("Client", "the Body names no operation");
    };
    let ns = lock(&st.inner.dormakaba).system(product).namespace.clone();
    let op_ns = xml::namespace_of(&[&root, body_el, op_el]);
    if op_ns.as_deref().map(|n| n.trim_end_matches('/')) != Some(ns.trim_end_matches('/')) {
        return soap_fault(
            "Client",
            &format!(
                "Server did not recognize the operation {} in namespace {}; expected namespace {ns}",
                op_el.name,
                op_ns.unwrap_or_default()
            ),
        );
    }
    let op = op_el.name.clone();
    if !ops::OPERATIONS.contains(&op.as_str()) {
        return soap_fault(
            "Client",
            &format!("Server did not recognize the operation {op}"),
        );
    }
    let header = root.path(&["Header", "AuthHeader"]);
    let outcome = ops::run(&st, product, &op, header, op_el);
    xml_response(StatusCode::OK, render(&ns, &op, &outcome))
}

/// Serves the WSDL at `?wsdl`; other GETs explain how to use the endpoint.
async fn wsdl(
    State(st): State<SimState>,
    Query(q): Query<HashMap<String, String>>,
    product: Product,
) -> Response {
    if !q.keys().any(|k| k.eq_ignore_ascii_case("wsdl")) {
        return (
            StatusCode::OK,
            "SOAP 1.1 endpoint: POST an Envelope, or GET ?wsdl",
        )
            .into_response();
    }
    let ns = lock(&st.inner.dormakaba).system(product).namespace.clone();
    let (service, path) = match product {
        Product::Saflok => ("MessengerPMSWSService", SAFLOK_PATH),
        Product::Ambiance => ("AmbiancePMSWSService", AMBIANCE_PATH),
    };
    xml_response(StatusCode::OK, render_wsdl(&ns, service, path))
}

fn render_wsdl(ns: &str, service: &str, path: &str) -> String {
    let ns = esc(ns);
    let mut types = String::new();
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut binding_ops = String::new();
    for op in ops::OPERATIONS {
        let fields: String = ops::fields(op)
            .iter()
            .map(|f| {
                format!(
                    "<s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"{f}\" type=\"s:string\"/>"
                )
            })
            .collect();
        let result_type = if is_guest_create(op) {
            "CMessengerGuestCreateResponse"
        } else {
            "CMessengerResponse"
        };
        let _ = write!(
            types,
            "<s:element name=\"{op}\"><s:complexType><s:sequence>{fields}</s:sequence></s:complexType></s:element>\
             <s:element name=\"{op}Response\"><s:complexType><s:sequence><s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"{op}Result\" type=\"tns:{result_type}\"/></s:sequence></s:complexType></s:element>"
        );
        let _ = write!(
            messages,
            "<wsdl:message name=\"{op}SoapIn\"><wsdl:part name=\"parameters\" element=\"tns:{op}\"/></wsdl:message>\
             <wsdl:message name=\"{op}SoapOut\"><wsdl:part name=\"parameters\" element=\"tns:{op}Response\"/></wsdl:message>"
        );
        let _ = write!(
            port_ops,
            "<wsdl:operation name=\"{op}\"><wsdl:input message=\"tns:{op}SoapIn\"/><wsdl:output message=\"tns:{op}SoapOut\"/></wsdl:operation>"
        );
        let _ = write!(
            binding_ops,
            "<wsdl:operation name=\"{op}\"><soap:operation soapAction=\"{ns}/{op}\" style=\"document\"/><wsdl:input><soap:body use=\"literal\"/><soap:header message=\"tns:{op}AuthHeader\" part=\"AuthHeader\" use=\"literal\"/></wsdl:input><wsdl:output><soap:body use=\"literal\"/></wsdl:output></wsdl:operation>"
        );
        let _ = write!(
            messages,
            "<wsdl:message name=\"{op}AuthHeader\"><wsdl:part name=\"AuthHeader\" element=\"tns:AuthHeader\"/></wsdl:message>"
        );
    }
    let resp_fields = "<s:element minOccurs=\"1\" maxOccurs=\"1\" name=\"bSuccess\" type=\"s:boolean\"/><s:element minOccurs=\"1\" maxOccurs=\"1\" name=\"ResponseCode\" type=\"s:int\"/><s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"ResponseMessage\" type=\"s:string\"/><s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"retAccessKey\" type=\"s:string\"/><s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"Fault\" type=\"tns:Fault\"/>";
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<wsdl:definitions xmlns:s=\"http://www.w3.org/2001/XMLSchema\" xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" xmlns:tns=\"{ns}\" xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" targetNamespace=\"{ns}\">\
<wsdl:types><s:schema elementFormDefault=\"qualified\" targetNamespace=\"{ns}\">\
<s:element name=\"AuthHeader\"><s:complexType><s:sequence><s:element minOccurs=\"0\" name=\"From\" type=\"s:string\"/><s:element minOccurs=\"0\" name=\"MessageID\" type=\"s:string\"/><s:element minOccurs=\"0\" name=\"Security\"><s:complexType><s:sequence><s:element minOccurs=\"0\" name=\"Timestamp\"><s:complexType><s:sequence><s:element name=\"Created\" type=\"s:string\"/><s:element name=\"Expires\" type=\"s:string\"/></s:sequence></s:complexType></s:element><s:element minOccurs=\"0\" name=\"UsernameToken\"><s:complexType><s:sequence><s:element name=\"Username\" type=\"s:string\"/><s:element name=\"Password\" type=\"s:string\"/><s:element minOccurs=\"0\" name=\"Created\" type=\"s:string\"/></s:sequence></s:complexType></s:element></s:sequence></s:complexType></s:element></s:sequence></s:complexType></s:element>\
<s:complexType name=\"Fault\"><s:sequence><s:element name=\"faultcode\" type=\"s:string\"/><s:element name=\"faultstring\" type=\"s:string\"/><s:element name=\"detailInfo\" type=\"s:string\"/></s:sequence></s:complexType>\
<s:complexType name=\"CMessengerResponse\"><s:sequence>{resp_fields}</s:sequence></s:complexType>\
<s:complexType name=\"CMessengerGuestCreateResponse\"><s:sequence>{resp_fields}<s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"retPMSTransactionNo\" type=\"s:string\"/></s:sequence></s:complexType>\
{types}</s:schema></wsdl:types>{messages}\
<wsdl:portType name=\"{service}Soap\">{port_ops}</wsdl:portType>\
<wsdl:binding name=\"{service}Soap\" type=\"tns:{service}Soap\"><soap:binding transport=\"http://schemas.xmlsoap.org/soap/http\"/>{binding_ops}</wsdl:binding>\
<wsdl:service name=\"{service}\"><wsdl:port name=\"{service}Soap\" binding=\"tns:{service}Soap\"><soap:address location=\"{path}\"/></wsdl:port></wsdl:service>\
</wsdl:definitions>"
    )
}
