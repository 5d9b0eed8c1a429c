//! Fault injection and the call log.
//!
//! Every vendor router is wrapped by [`vendor_layer`]: it logs each call ([`crate::CallRecord`])
//! and consults the [`FaultRule`]s. Rules match by vendor and, optionally, a substring of the
//! request path (for dormakaba also the SOAP operation, as `"/MessengerPMSWS#CreateNewBooking"`)
//! and the HTTP method.
//! Probabilistic rules draw from an RNG seeded by `SimConfig::seed`, so a scenario replays
//! exactly when requests arrive in the same order.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::server::ConnKill;
use crate::state::{CallRecord, SimState, Vendor};

/// What an injected fault does to a matching call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "FaultKindWire", from = "FaultKindWire")]
pub enum FaultKind {
    /// Delay the call, then answer normally (combines with other faults).
    Latency(Duration),
    /// `429 Too Many Requests` with a `Retry-After` header (seconds).
    Status429 {
        /// Value of the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// `500 Internal Server Error`.
    Status500,
    /// `503 Service Unavailable`.
    Status503,
    /// Never answer (the client's timeout must fire); the call is logged with status 0.
    Hang,
    /// Close the TCP connection without any response; logged with status 0.
    DropConnection,
    /// dormakaba only: answer the operation with this fault code inside the result element
    /// (e.g. `"EncoderBusy"`, `"BusyProcessingPreviousRequest"`). Other vendors answer 500.
    SoapFault(String),
    /// The vendor applies the call, then never answers (the client's timeout fires). The
    /// ambiguous failure a retry must survive without a second object.
    TimeoutAfterCommit,
    /// The vendor applies the call, then closes the connection without an answer.
    ResetAfterCommit,
    /// The vendor applies the call, then answers `500` instead of its real answer.
    Status500AfterCommit,
    /// The vendor applies the call, then answers `503` instead of its real answer.
    Status503AfterCommit,
}

impl FaultKind {
    /// Whether the vendor handler runs (and its effect stays) before the answer is lost.
    pub fn after_commit(&self) -> bool {
        matches!(
            self,
            FaultKind::TimeoutAfterCommit
                | FaultKind::ResetAfterCommit
                | FaultKind::Status500AfterCommit
                | FaultKind::Status503AfterCommit
        )
    }
}

/// JSON shape of [`FaultKind`] in the control API, e.g. `{"type":"latency","ms":250}`,
/// `{"type":"status429","retry_after_secs":2}`, `{"type":"soap_fault","reason":"EncoderBusy"}`,
/// `{"type":"timeout_after_commit"}`, `{"type":"reset_after_commit"}`,
/// `{"type":"status500_after_commit"}`, `{"type":"status503_after_commit"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FaultKindWire {
    Latency {
        ms: u64,
    },
    #[serde(rename = "status429")]
    Status429 {
        retry_after_secs: u64,
    },
    #[serde(rename = "status500")]
    Status500,
    #[serde(rename = "status503")]
    Status503,
    Hang,
    DropConnection,
    SoapFault {
        reason: String,
    },
    TimeoutAfterCommit,
    ResetAfterCommit,
    #[serde(rename = "status500_after_commit")]
    Status500AfterCommit,
    #[serde(rename = "status503_after_commit")]
    Status503AfterCommit,
}

impl From<FaultKind> for FaultKindWire {
    fn from(k: FaultKind) -> Self {
        match k {
            FaultKind::Latency(d) => FaultKindWire::Latency {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            FaultKind::Status429 { retry_after_secs } => {
                FaultKindWire::Status429 { retry_after_secs }
            }
            FaultKind::Status500 => FaultKindWire::Status500,
            FaultKind::Status503 => FaultKindWire::Status503,
            FaultKind::Hang => FaultKindWire::Hang,
            FaultKind::DropConnection => FaultKindWire::DropConnection,
            FaultKind::SoapFault(reason) => FaultKindWire::SoapFault { reason },
            FaultKind::TimeoutAfterCommit => FaultKindWire::TimeoutAfterCommit,
            FaultKind::ResetAfterCommit => FaultKindWire::ResetAfterCommit,
            FaultKind::Status500AfterCommit => FaultKindWire::Status500AfterCommit,
            FaultKind::Status503AfterCommit => FaultKindWire::Status503AfterCommit,
        }
    }
}

impl From<FaultKindWire> for FaultKind {
    fn from(k: FaultKindWire) -> Self {
        match k {
            FaultKindWire::Latency { ms } => FaultKind::Latency(Duration::from_millis(ms)),
            FaultKindWire::Status429 { retry_after_secs } => {
                FaultKind::Status429 { retry_after_secs }
            }
            FaultKindWire::Status500 => FaultKind::Status500,
            FaultKindWire::Status503 => FaultKind::Status503,
            FaultKindWire::Hang => FaultKind::Hang,
            FaultKindWire::DropConnection => FaultKind::DropConnection,
            FaultKindWire::SoapFault { reason } => FaultKind::SoapFault(reason),
            FaultKindWire::TimeoutAfterCommit => FaultKind::TimeoutAfterCommit,
            FaultKindWire::ResetAfterCommit => FaultKind::ResetAfterCommit,
            FaultKindWire::Status500AfterCommit => FaultKind::Status500AfterCommit,
            FaultKindWire::Status503AfterCommit => FaultKind::Status503AfterCommit,
        }
    }
}

/// When a rule fires. JSON: `{"probability":0.3}` or `{"next_n":2}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Each matching call independently, with this probability (0.0–1.0, seeded RNG).
    Probability(f64),
    /// The next N matching calls; the rule is removed afterwards.
    NextN(u32),
}

/// One fault-injection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The vendor whose calls are affected.
    pub vendor: Vendor,
    /// What happens.
    pub kind: FaultKind,
    /// When it happens.
    pub mode: FaultMode,
    /// Only calls whose path (with query; for dormakaba `path#Operation`) contains this.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Only calls with this HTTP method (case-insensitive), e.g. `POST`: an after-commit
    /// fault on the create, not on the lookup before it that shares its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl FaultRule {
    /// A rule firing for the next `n` calls of `vendor`.
    pub fn next_n(vendor: Vendor, kind: FaultKind, n: u32) -> Self {
        Self {
            vendor,
            kind,
            mode: FaultMode::NextN(n),
            path_contains: None,
            method: None,
        }
    }

    /// A rule firing with probability `p` for calls of `vendor`.
    pub fn probability(vendor: Vendor, kind: FaultKind, p: f64) -> Self {
        Self {
            vendor,
            kind,
            mode: FaultMode::Probability(p),
            path_contains: None,
            method: None,
        }
    }

    /// Restricts the rule to calls whose path (or `path#SoapOperation`) contains `s`.
    pub fn on_path(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    /// Restricts the rule to calls with this HTTP method (e.g. `"POST"`).
    pub fn on_method(mut self, m: impl Into<String>) -> Self {
        self.method = Some(m.into());
        self
    }
}

/// The rules plus the seeded RNG.
pub(crate) struct FaultEngine {
    rules: Vec<FaultRule>,
    rng: StdRng,
}

/// What the engine decided for one call.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub(crate) latency: Duration,
    pub(crate) action: Option<FaultKind>,
}

impl FaultEngine {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rules: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub(crate) fn rules(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// Evaluates every matching rule in order: latencies add up, the first other fault that
    /// fires decides the answer. `NextN` rules are consumed only when they fire.
    pub(crate) fn decide(&mut self, vendor: Vendor, method: &str, target: &str) -> Decision {
        let mut d = Decision::default();
        let rng = &mut self.rng;
        self.rules.retain_mut(|rule| {
            if rule.vendor != vendor
                || rule
                    .path_contains
                    .as_deref()
                    .is_some_and(|p| !target.contains(p))
                || rule
                    .method
                    .as_deref()
                    .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                return true;
            }
            let is_latency = matches!(rule.kind, FaultKind::Latency(_));
            if !is_latency && d.action.is_some() {
                return true; // already decided; do not consume this rule
            }
            let (fires, keep) = match &mut rule.mode {
                FaultMode::Probability(p) => (rng.random::<f64>() < p.clamp(0.0, 1.0), true),
                FaultMode::NextN(n) => {
                    if *n == 0 {
                        (false, false)
                    } else {
                        *n -= 1;
                        (true, *n > 0)
                    }
                }
            };
            if fires {
                match &rule.kind {
                    FaultKind::Latency(l) => d.latency += *l,
                    other => d.action = Some(other.clone()),
                }
            }
            keep
        });
        d
    }
}

/// Per-router context of [`vendor_layer`].
#[derive(Clone)]
pub(crate) struct LayerCtx {
    pub(crate) state: SimState,
    pub(crate) vendor: Vendor,
}

const MAX_BODY: usize = 4 * 1024 * 1024;
const SUMMARY: usize = 512;

fn summary(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(SUMMARY)]);
    s.into_owned()
}

/// Middleware: log the call, apply injected faults, run the vendor handler. Faults fire
/// before the handler (nothing applied), except the `*AfterCommit` kinds, which run it and
/// then lose its answer.
pub(crate) async fn vendor_layer(
    State(ctx): State<LayerCtx>,
    req: Request,
    next: Next,
) -> Response {
    let at = ctx.state.now();
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let operation = if ctx.vendor == Vendor::Dormakaba {
        crate::dormakaba::soap_operation(&bytes)
    } else {
        None
    };
    let target = match &operation {
        Some(op) => format!("{path}#{op}"),
        None => path.clone(),
    };
    let decision = crate::state::lock(&ctx.state.inner.faults).decide(ctx.vendor, &method, &target);
    let mut rec = CallRecord {
        vendor: ctx.vendor,
        method,
        path,
        operation: operation.clone(),
        status: 0,
        at,
        body_summary: summary(&bytes),
        response_summary: String::new(),
        injected_fault: decision.action.is_some(),
        committed_status: None,
    };
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let kill = parts.extensions.get::<ConnKill>().cloned();
    let response = match decision.action {
        Some(FaultKind::Hang) => {
            ctx.state.record_call(rec);
            return hang_forever().await;
        }
        Some(FaultKind::DropConnection) => {
            ctx.state.record_call(rec);
            return drop_connection(kill).await;
        }
        Some(FaultKind::Status429 { retry_after_secs }) => {
            let mut r = vendor_error(
                ctx.vendor,
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded",
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Some(FaultKind::Status500) => vendor_error(
            ctx.vendor,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error (injected)",
        ),
        Some(FaultKind::Status503) => vendor_error(
            ctx.vendor,
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable (injected)",
        ),
        Some(FaultKind::SoapFault(reason)) => match (&operation, ctx.vendor) {
            (Some(op), Vendor::Dormakaba) => {
                crate::dormakaba::injected_fault_response(&ctx.state, parts.uri.path(), op, &reason)
            }
            _ => vendor_error(
                ctx.vendor,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("injected SOAP fault {reason} on a non-SOAP call"),
            ),
        },
        Some(kind) if kind.after_commit() => {
            // The vendor does the work; only its answer is lost on the way back.
            let req = Request::from_parts(parts, Body::from(bytes));
            let applied = next.run(req).await;
            rec.committed_status = Some(applied.status().as_u16());
            match kind {
                FaultKind::TimeoutAfterCommit => {
                    ctx.state.record_call(rec);
                    return hang_forever().await;
                }
                FaultKind::ResetAfterCommit => {
                    ctx.state.record_call(rec);
                    return drop_connection(kill).await;
                }
                FaultKind::Status503AfterCommit => vendor_error(
                    ctx.vendor,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service unavailable (injected after the call was applied)",
                ),
                _ => vendor_error(
                    ctx.vendor,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error (injected after the call was applied)",
                ),
            }
        }
        Some(_) | None => {
            let req = Request::from_parts(parts, Body::from(bytes));
            next.run(req).await
        }
    };
    let (rparts, rbody) = response.into_parts();
    let rbytes: Bytes = axum::body::to_bytes(rbody, usize::MAX)
        .await
        .unwrap_or_default();
    rec.status = rparts.status.as_u16();
    rec.response_summary = summary(&rbytes);
    ctx.state.record_call(rec);
    Response::from_parts(rparts, Body::from(rbytes))
}

/// Never answers: the client's own timeout has to fire.
async fn hang_forever() -> Response {
    std::future::pending::<()>().await;
    StatusCode::GATEWAY_TIMEOUT.into_response()
}

/// Closes the request's TCP connection without writing an answer.
async fn drop_connection(kill: Option<ConnKill>) -> Response {
    if let Some(kill) = kill {
        kill.0.notify_one();
    }
    hang_forever().await
}

/// An error response in the vendor's own error format (used for injected HTTP faults).
pub(crate) fn vendor_error(vendor: Vendor, status: StatusCode, message: &str) -> Response {
    match vendor {
        Vendor::CloudPass => crate::cloudpass::error(status, code_for(status), message),
        Vendor::Tapkey => crate::tapkey::error(status, code_for(status), message),
        Vendor::IPassan => crate::ipassan::error(status, message),
        Vendor::Dormakaba => (status, message.to_owned()).into_response(),
    }
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "rate_limited",
        503 => "service_unavailable",
        _ => "internal_error",
    }
}
