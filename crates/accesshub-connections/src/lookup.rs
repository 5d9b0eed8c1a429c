//! Lookups fill an operator's dropdowns by asking the vendor (CloudPass sites and time
//! restrictions, iPassan assets, Tapkey bound locks, Saflok `HelloWorldTest`). The worker that
//! owns the vendor's client answers NATS requests on `lookup.<vendor>` (namespaced), so
//! credentials and clients live in one place; the admin API asks with [`request`].

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use accesshub_bus::Bus;
use accesshub_domain::{Classify, ErrorClass, subjects};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::model::Vendor;

/// A question for the worker of one vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    /// Tenant whose connection to use.
    pub tenant: String,
    /// Connection name (default `default`).
    #[serde(default = "default_connection")]
    pub connection: String,
    /// What to list: `sites`, `time-restrictions`, `assets`, `locks`, `encoder-test`, …
    pub what: String,
    /// Extra parameters (e.g. `site` for CloudPass time restrictions).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

fn default_connection() -> String {
    "default".into()
}

/// One entry of a dropdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LookupItem {
    /// Vendor id to put in the connection settings.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Extra detail (lock type, time slot, test result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why a lookup failed, so the API can answer with the right status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupFailureKind {
    /// The worker does not know this `what` or a parameter is missing (HTTP 400).
    BadRequest,
    /// The tenant has no such connection (HTTP 404).
    NoConnection,
    /// The vendor refused the credentials or permissions (HTTP 502 with the hint).
    Credentials,
    /// Any other vendor failure (HTTP 502).
    Vendor,
}

/// The worker's error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct LookupFailure {
    /// What went wrong, written for an operator (never contains secrets).
    pub message: String,
    /// Whether asking again may help.
    pub class: ErrorClass,
    /// Category, for the HTTP status.
    #[serde(default = "vendor_kind")]
    pub kind: LookupFailureKind,
}

fn vendor_kind() -> LookupFailureKind {
    LookupFailureKind::Vendor
}

impl LookupFailure {
    /// A request the worker cannot answer (unknown `what`, missing parameter).
    pub fn bad_request(message: impl Into<String>) -> Self {
        LookupFailure {
            message: message.into(),
            class: ErrorClass::Permanent,
            kind: LookupFailureKind::BadRequest,
        }
    }

    /// The tenant has no connection of that name.
    pub fn no_connection(tenant: &str, vendor: Vendor, name: &str) -> Self {
        LookupFailure {
            message: format!(
                "tenant {tenant:?} has no {vendor} connection named {name:?} (create it with `accessctl connections apply -f`)"
            ),
            class: ErrorClass::Permanent,
            kind: LookupFailureKind::NoConnection,
        }
    }

    /// The vendor answered 401/403: the message tells the operator where to fix it.
    pub fn credentials(vendor: Vendor, status: u16) -> Self {
        LookupFailure {
            message: format!(
                "{} answered {status}: {}",
                vendor_name(vendor),
                credentials_hint(vendor)
            ),
            class: ErrorClass::Permanent,
            kind: LookupFailureKind::Credentials,
        }
    }

    /// Any other vendor error.
    pub fn vendor(message: impl Into<String>, class: ErrorClass) -> Self {
        LookupFailure {
            message: message.into(),
            class,
            kind: LookupFailureKind::Vendor,
        }
    }
}

/// The vendor's product name for messages.
pub fn vendor_name(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Cloudpass => "CloudPass",
        Vendor::Dormakaba => "dormakaba",
        Vendor::Ipassan => "iPassan",
        Vendor::Tapkey => "Tapkey",
    }
}

/// Where an operator fixes credentials or permissions that a vendor refused (401/403).
pub fn credentials_hint(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Cloudpass => {
            "the client ID/secret were refused or the API user lacks permissions: check the API user's permissions under Settings → Website Users on the CloudPass website"
        }
        Vendor::Dormakaba => {
            "the PMS user name or password was refused: check the PMS web service user configured in the lock system"
        }
        Vendor::Ipassan => {
            "the client credentials were refused or have no access to the site: check the Web API client in iPassan and the site GUID (a wrong site answers \"Access Denied\")"
        }
        Vendor::Tapkey => {
            "the OAuth client was refused or lacks scopes: check the client credentials and its access to the owner account in the Tapkey Integrator Portal"
        }
    }
}

/// The worker's answer: items, or an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LookupResponse {
    /// Success.
    Items {
        /// Dropdown entries.
        items: Vec<LookupItem>,
    },
    /// Failure.
    Error {
        /// Why.
        error: LookupFailure,
    },
}

/// Asking a worker failed before it answered.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No worker of this vendor is subscribed.
    #[error(
        "no {0}-worker is running to answer lookups (is the worker deployed and connected to NATS?)"
    )]
    NoWorker(Vendor),
    /// A worker is subscribed but did not answer in time.
    #[error(
        "the {vendor}-worker did not answer within {timeout:?} (the vendor may be slow or unreachable)"
    )]
    Timeout {
        /// Vendor.
        vendor: Vendor,
        /// How long we waited.
        timeout: Duration,
    },
    /// NATS failed.
    #[error("NATS: {0}")]
    Bus(String),
    /// The answer is not a [`LookupResponse`].
    #[error("malformed lookup answer: {0}")]
    Decode(String),
}

impl Classify for LookupError {
    fn class(&self) -> ErrorClass {
        match self {
            LookupError::Decode(_) => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

/// Sends `req` to the worker owning `vendor` and waits up to `timeout` for its answer.
pub async fn request(
    bus: &Bus,
    vendor: Vendor,
    req: &LookupRequest,
    timeout: Duration,
) -> Result<LookupResponse, LookupError> {
    let payload = serde_json::to_vec(req).map_err(|e| LookupError::Decode(e.to_string()))?;
    let subject = bus.subject(&subjects::lookup(vendor.as_str()));
    let msg = bus
        .client
        .send_request(
            subject,
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout)),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => LookupError::NoWorker(vendor),
            async_nats::RequestErrorKind::TimedOut => LookupError::Timeout { vendor, timeout },
            _ => LookupError::Bus(e.to_string()),
        })?;
    serde_json::from_slice(&msg.payload).map_err(|e| LookupError::Decode(e.to_string()))
}

/// Answers lookups for `vendor` with `handler` until the subscription ends. Replicas share
/// the work (queue group `lookup-<vendor>`); each request is handled in its own task. The
/// subscription exists when this returns.
pub async fn serve_lookups<F, Fut>(
    bus: &Bus,
    vendor: Vendor,
    handler: F,
) -> Result<tokio::task::JoinHandle<()>, LookupError>
where
    F: Fn(LookupRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<LookupItem>, LookupFailure>> + Send + 'static,
{
    let subject = bus.subject(&subjects::lookup(vendor.as_str()));
    let mut sub = bus
        .client
        .queue_subscribe(subject, format!("lookup-{}", vendor.as_str()))
        .await
        .map_err(|e| LookupError::Bus(e.to_string()))?;
    bus.client
        .flush()
        .await
        .map_err(|e| LookupError::Bus(e.to_string()))?;
    let client = bus.client.clone();
    let handler = Arc::new(handler);
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let client = client.clone();
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let answer = match serde_json::from_slice::<LookupRequest>(&msg.payload) {
                    Ok(req) => {
                        tracing::debug!(tenant = %req.tenant, what = %req.what, %vendor, "lookup");
                        match handler(req).await {
                            Ok(items) => LookupResponse::Items { items },
                            Err(error) => LookupResponse::Error { error },
                        }
                    }
                    Err(e) => LookupResponse::Error {
                        error: LookupFailure::bad_request(format!("malformed lookup request: {e}")),
                    },
                };
                match serde_json::to_vec(&answer) {
                    Ok(body) => {
                        if let Err(e) = client.publish(reply, body.into()).await {
                            tracing::warn!(error = %e, "lookup reply failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "encode lookup reply"),
                }
            });
        }
    }))
}
