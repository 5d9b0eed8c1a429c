//! What can go wrong talking to the lock system, and whether retrying can help.

use std::time::Duration;

use accesshub_domain::{Classify, ErrorClass};

/// Fault reasons of the Messenger PMS web service (VENDORS.md) that retrying can cure: the
/// encoder or room is momentarily unavailable, or the lock system is busy. Everything else
/// (credentials, parameters, not-found, limits, phone validation) gives the same answer again.
pub const TRANSIENT_FAULTS: &[&str] = &[
    "EncoderBusy",
    "EncoderNotOnlineOrNotExist",
    "TimeoutWaitingKey",
    "KeyJammed",
    "RoomOFFLine",
    "BusyProcessingPreviousRequest",
];

/// Whether a fault reason (the `faultcode` inside the result) is transient.
pub fn fault_class(code: &str) -> ErrorClass {
    if TRANSIENT_FAULTS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(code.trim()))
    {
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
    },
    /// A 200 answer we cannot read (the service changed its format).
    #[error("dormakaba {operation}: unreadable reply: {message}")]
    Decode {
        /// Operation called.
        operation: &'static str,
        /// Why.
        message: String,
    },
    /// The connection's settings cannot produce a request (bad URL).
    #[error("dormakaba connection settings: {0}")]
    Config(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", detail.trim())
    }
}

impl SoapError {
    /// The fault reason, when the lock system gave one.
    pub fn fault_code(&self) -> Option<&str> {
        match self {
            SoapError::Fault { code, .. } => Some(code),
            _ => None,
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
            SoapError::Http { status, .. } => {
                if *status >= 500 || *status == 429 || *status == 408 {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            SoapError::Transport { .. } => ErrorClass::Transient,
            SoapError::Unsuccessful { .. } | SoapError::Decode { .. } | SoapError::Config(_) => {
                ErrorClass::Permanent
            }
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
        assert_eq!(http(503).class(), ErrorClass::Transient);
        assert_eq!(http(429).class(), ErrorClass::Transient);
        assert_eq!(http(404).class(), ErrorClass::Permanent);
    }
}
