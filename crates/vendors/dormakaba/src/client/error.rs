//! What can go wrong talking to the lock system, and whether retrying can help.

use std::time::Duration;

use accesshub_domain::{Classify, ErrorClass};
use vendor_http::{VendorError, class_of_status};

/// Fault reasons of the Messenger PMS web service (VENDORS.md) that retrying can cure — the
/// encoder or room is momentarily unavailable, or the lock system is busy — each with the
/// front desk's words for it. Everything else (credentials, parameters, not-found, limits,
/// phone validation) gives the same answer again. The one list: [`fault_class`] and
/// [`fault_description`] both read it.
pub const TRANSIENT_FAULTS: &[(&str, &str)] = &[
    ("EncoderBusy", "encoder busy"),
    ("EncoderNotOnlineOrNotExist", "encoder offline"),
    ("TimeoutWaitingKey", "timed out waiting for a card"),
    ("KeyJammed", "card jammed in the encoder"),
    ("RoomOFFLine", "room offline"),
    ("BusyProcessingPreviousRequest", "lock system busy"),
];

/// The front desk's words for a transient fault reason (`EncoderBusy` → "encoder busy");
/// `None` for any other reason.
pub fn fault_description(code: &str) -> Option<&'static str> {
    let code = code.trim();
    TRANSIENT_FAULTS
        .iter()
        .find(|(f, _)| f.eq_ignore_ascii_case(code))
        .map(|(_, words)| *words)
}

/// Whether a fault reason (the `faultcode` inside the result) is transient.
pub fn fault_class(code: &str) -> ErrorClass {
    if fault_description(code).is_some() {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// A failed SOAP call. Every variant names the operation so DLQ reasons are self-explaining.
#[derive(Debug, thiserror::Error)]
pub enum SoapError {
    /// The lock system answered with a `<Fault>` inside the operation's result (HTTP 200).
    #[error("dormakaba {operation}: {code} ({string}{})", detail_suffix(.detail))]
    Fault {
        /// Operation called.
        operation: &'static str,
        /// Fault reason, e.g. `EncoderBusy`.
        code: String,
        /// Human text.
        string: String,
        /// `detailInfo`.
        detail: String,
    },
    /// A real SOAP 1.1 Fault: the request could not even be dispatched (wrong namespace,
    /// unknown operation, not SOAP). `soap:Client` is our mistake (permanent), `soap:Server`
    /// is the service's (transient).
    #[error("dormakaba {operation}: SOAP fault {code}: {string}")]
    SoapFault {
        /// Operation called.
        operation: &'static str,
        /// `faultcode` (e.g. `soap:Client`).
        code: String,
        /// `faultstring`.
        string: String,
    },
    /// `bSuccess` false without a fault.
    #[error("dormakaba {operation}: unsuccessful (ResponseCode {code}: {message})")]
    Unsuccessful {
        /// Operation called.
        operation: &'static str,
        /// `ResponseCode`.
        code: String,
        /// `ResponseMessage`.
        message: String,
    },
    /// A non-2xx HTTP answer that is not a SOAP Fault.
    #[error("dormakaba {operation}: HTTP {status}: {body}")]
    Http {
        /// Operation called.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// First bytes of the body.
        body: String,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or dropped, timeout.
    #[error("dormakaba {operation}: {message}")]
    Transport {
        /// Operation called.
        operation: &'static str,
        /// What happened.
        message: String,
        /// The class vendor-http gave the failure (timeouts and broken connections are
        /// transient).
        class: ErrorClass,
    },
    /// A 200 answer we cannot read (the service changed its format).
    #[error("dormakaba {operation}: unreadable reply: {message}")]
    Decode {
        /// Operation called.
        operation: &'static str,
        /// Why.
        message: String,
    },
    /// The hotel's edge relay does not answer: its leaf link to the cluster is down (or the
    /// relay is stopped). A state of the site, not a fault of this booking: reservations wait
    /// for the site, key requests are answered "site offline" at once.
    #[error("dormakaba {operation}: site {site} offline (its edge relay does not answer)")]
    SiteOffline {
        /// Operation called.
        operation: &'static str,
        /// Edge site.
        site: String,
    },
    /// The connection's settings cannot produce a request (bad URL).
    #[error("dormakaba connection settings: {0}")]
    Config(String),
    /// What the lock system answered makes the planned operation impossible as documented
    /// (a `ReservationCheckedOut` answer to a stay that wants access again:
    /// [`crate::desired::PlanError::Reopen`]).
    #[error(transparent)]
    Plan(crate::desired::PlanError),
}

fn detail_suffix(detail: &str) -> String {
    if detail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", detail.trim())
    }
}

impl SoapError {
    /// The same error with every occurrence of `phone` (as sent, and as its bare digits)
    /// replaced by its masked form: a phone number is personal data, and the lock system's
    /// texts may repeat it.
    pub fn redact_phone(self, phone: &str) -> Self {
        let phone = phone.trim();
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let masked = accesshub_domain::pii::mask_phone(phone);
        let clean = |t: String| {
            let mut t = if phone.is_empty() {
                t
            } else {
                t.replace(phone, &masked)
            };
            if digits.len() >= 6 {
                t = t.replace(&digits, &masked);
            }
            t
        };
        match self {
            SoapError::Fault {
                operation,
                code,
                string,
                detail,
            } => SoapError::Fault {
                operation,
                code,
                string: clean(string),
                detail: clean(detail),
            },
            SoapError::SoapFault {
                operation,
                code,
                string,
            } => SoapError::SoapFault {
                operation,
                code,
                string: clean(string),
            },
            SoapError::Unsuccessful {
                operation,
                code,
                message,
            } => SoapError::Unsuccessful {
                operation,
                code,
                message: clean(message),
            },
            SoapError::Http {
                operation,
                status,
                body,
                retry_after,
            } => SoapError::Http {
                operation,
                status,
                body: clean(body),
                retry_after,
            },
            SoapError::Decode { operation, message } => SoapError::Decode {
                operation,
                message: clean(message),
            },
            other => other,
        }
    }

    /// The fault reason, when the lock system gave one.
    pub fn fault_code(&self) -> Option<&str> {
        match self {
            SoapError::Fault { code, .. } => Some(code),
            _ => None,
        }
    }

    /// What the front desk is told while a transient failure is retried, e.g. "encoder busy,
    /// retrying" (a fault reason without words of its own is shown as is; no fault at all
    /// means the lock system could not be reached).
    pub fn desk_message(&self) -> String {
        if let SoapError::SiteOffline { site, .. } = self {
            return format!(
                "site offline: the lock server at {site} cannot be reached from accesshub, retrying"
            );
        }
        let what = match self.fault_code() {
            Some(code) => fault_description(code).unwrap_or(code),
            None => "lock system unreachable",
        };
        format!("{what}, retrying")
    }

    /// A vendor-http failure without an answer (timeout, connection, request building),
    /// keeping vendor-http's class.
    pub(crate) fn from_vendor(operation: &'static str, e: VendorError) -> Self {
        let class = e.class();
        let message = match e {
            VendorError::Config(message) => return SoapError::Config(message),
            VendorError::Timeout { .. } => "timed out".to_owned(),
            VendorError::Connect { message, .. } => format!("connection failed: {message}"),
            VendorError::Status {
                status,
                body,
                retry_after,
                ..
            } => {
                // `send_bytes` hands every answer back; kept total should that change.
                return SoapError::Http {
                    operation,
                    status,
                    body,
                    retry_after,
                };
            }
            other => other.to_string(),
        };
        SoapError::Transport {
            operation,
            message,
            class,
        }
    }
}

impl Classify for SoapError {
    fn class(&self) -> ErrorClass {
        match self {
            SoapError::Fault { code, .. } => fault_class(code),
            SoapError::SoapFault { code, .. } => {
                // `soap:Server` / `Receiver`: the service failed; ours is `Client` / `VersionMismatch`.
                let local = code.rsplit(':').next().unwrap_or(code);
                if local.eq_ignore_ascii_case("Server") || local.eq_ignore_ascii_case("Receiver") {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            SoapError::Http { status, .. } => class_of_status(*status),
            SoapError::Transport { class, .. } => *class,
            SoapError::SiteOffline { .. } => ErrorClass::Transient,
            SoapError::Unsuccessful { .. }
            | SoapError::Decode { .. }
            | SoapError::Config(_)
            | SoapError::Plan(_) => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SoapError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 26: a phone number the lock system repeats in its fault, as sent or as bare
    /// digits, never survives into the error's text.
    #[test]
    fn a_repeated_phone_number_is_masked() {
        let e = SoapError::Fault {
            operation: "IssueMobileKey",
            code: "UnableToDeliverToPhone".into(),
            string: "\"07700 900463\" is not in international format".into(),
            detail: "number 07700900463 refused".into(),
        }
        .redact_phone(" 07700 900463 ");
        let text = e.to_string();
        assert!(!text.contains("900463"), "{text}");
        assert!(
            text.contains("UnableToDeliverToPhone") && text.contains("077***63"),
            "{text}"
        );
        assert_eq!(e.fault_code(), Some("UnableToDeliverToPhone"));
    }

    fn fault(code: &str) -> SoapError {
        SoapError::Fault {
            operation: "CreateNewBooking",
            code: code.into(),
            string: "x".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn classifies_every_documented_fault() {
        for c in [
            "EncoderBusy",
            "EncoderNotOnlineOrNotExist",
            "TimeoutWaitingKey",
            "KeyJammed",
            "RoomOFFLine",
            "BusyProcessingPreviousRequest",
        ] {
            assert_eq!(fault(c).class(), ErrorClass::Transient, "{c}");
        }
        for c in [
            "AuthHeaderNotRecognized",
            "UserCredentialsNotProvided",
            "InvalidWSParameter",
            "RoomNumberNotFound",
            "ReservationNotFound",
            "ReservationCheckedOut",
            "CheckoutDateLessThanSystemDate",
            "MaxDuplicatesMadeReached",
            "MaxSharedReached",
            "InvalidEncoderNumber",
            "EmptyPhoneNumber",
            "PhoneNumberTooSmall",
            "UnableToDeliverToPhone",
        ] {
            let e = fault(c);
            assert_eq!(e.class(), ErrorClass::Permanent, "{c}");
            assert!(e.to_string().contains(c));
        }
        let http = |status| SoapError::Http {
            operation: "X",
            status,
            body: String::new(),
            retry_after: None,
        };
        for status in [400, 404, 408, 429, 500, 503, 599] {
            assert_eq!(http(status).class(), class_of_status(status), "{status}");
        }
    }

    #[test]
    fn desk_message_words_every_transient_fault() {
        // The front desk's wording the dormakaba handler has always shown.
        for (code, words) in [
            ("EncoderBusy", "encoder busy, retrying"),
            ("EncoderNotOnlineOrNotExist", "encoder offline, retrying"),
            (
                "TimeoutWaitingKey",
                "timed out waiting for a card, retrying",
            ),
            ("KeyJammed", "card jammed in the encoder, retrying"),
            ("RoomOFFLine", "room offline, retrying"),
            (
                "BusyProcessingPreviousRequest",
                "lock system busy, retrying",
            ),
            ("SomethingNew", "SomethingNew, retrying"),
        ] {
            assert_eq!(fault(code).desk_message(), words, "{code}");
        }
        assert_eq!(TRANSIENT_FAULTS.len(), 6);
        assert_eq!(fault_description(" roomoffline "), Some("room offline"));
        assert_eq!(fault_description("ReservationNotFound"), None);
        let down = SoapError::from_vendor(
            "HelloWorldTest",
            VendorError::Timeout {
                vendor: "dormakaba",
                operation: "HelloWorldTest",
            },
        );
        assert_eq!(down.desk_message(), "lock system unreachable, retrying");
    }

    #[test]
    fn vendor_http_failures_keep_their_class() {
        let timeout = SoapError::from_vendor(
            "CheckOutGuest",
            VendorError::Timeout {
                vendor: "dormakaba",
                operation: "CheckOutGuest",
            },
        );
        assert!(
            matches!(
                &timeout,
                SoapError::Transport {
                    class: ErrorClass::Transient,
                    ..
                }
            ),
            "{timeout:?}"
        );
        assert_eq!(timeout.to_string(), "dormakaba CheckOutGuest: timed out");
        let refused = SoapError::from_vendor(
            "CheckOutGuest",
            VendorError::Connect {
                vendor: "dormakaba",
                operation: "CheckOutGuest",
                message: "refused".into(),
            },
        );
        assert_eq!(refused.class(), ErrorClass::Transient);
        assert_eq!(
            refused.to_string(),
            "dormakaba CheckOutGuest: connection failed: refused"
        );
        let bad = SoapError::from_vendor("X", VendorError::Config("bad URL".into()));
        assert!(matches!(bad, SoapError::Config(_)), "{bad:?}");
        assert_eq!(bad.class(), ErrorClass::Permanent);
    }
}
