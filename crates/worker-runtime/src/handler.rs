//! What a vendor worker implements: apply one event's desired state at the vendor.

use std::{future::Future, sync::Arc, time::Duration};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Classify, ErrorClass, Event, EventKind, sync::RemoveCommand};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vendor_http::RateLimiter;

/// A vendor adapter. The runtime does everything else (consuming, ordering, revision check,
/// retries, DLQ, tracing, metrics); the handler only makes the vendor match the event.
///
/// `apply` must be idempotent: it may run again after a crash between the vendor call and
/// the ack, so it looks up objects by our reference (or the binding's vendor ids) before
/// creating them (principle 3).
pub trait Handler: Send + Sync + 'static {
    /// Worker (and durable consumer) name, e.g. `tapkey-worker`.
    fn name(&self) -> &'static str;
    /// The vendor, for connections, bindings and metrics.
    fn vendor(&self) -> Vendor;
    /// Event kinds handled; other kinds on the consumer's subjects are acked and skipped.
    fn kinds(&self) -> &[EventKind];
    /// Makes the vendor match `event`. `binding` is what was applied before (vendor ids).
    fn apply(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        binding: Option<&Binding>,
    ) -> impl Future<Output = Result<ApplyOutcome, HandlerError>> + Send;

    /// Opt in to [`ApplyContext::first_attempt`]: before the vendor call of a booking that has
    /// no binding yet, the runtime then records durably (one small row per new booking,
    /// `vendor_attempts`) that an attempt may reach the vendor, so every later attempt knows
    /// it must look for what an earlier one created. Off by default (no extra write).
    fn marks_attempts(&self) -> bool {
        false
    }

    /// Removes one vendor object the reconciler found carrying our reference although no
    /// booking wants it (a "stray", from the SYNC stream). Must treat "already gone" as
    /// success. The default refuses (permanent → DLQ), so a worker that has not implemented
    /// removal never deletes anything by accident.
    fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        binding: Option<&Binding>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (cmd, binding);
        let worker = ctx.worker;
        async move {
            Err(HandlerError::permanent(format!(
                "{worker} does not implement removal of stray vendor objects"
            )))
        }
    }
}

/// What the handler did, stored in the booking's binding.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOutcome {
    /// Vendor object ids (the next event's handler reads them back).
    pub vendor_ids: serde_json::Value,
    /// Short status, e.g. `active`, `revoked`, `cancelled`.
    pub status: String,
}

impl ApplyOutcome {
    /// Convenience constructor.
    pub fn new(status: impl Into<String>, vendor_ids: serde_json::Value) -> Self {
        ApplyOutcome {
            vendor_ids,
            status: status.into(),
        }
    }
}

/// Why applying failed, classified so the runtime's single error policy can act on it.
/// Any [`Classify`] error converts with `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerError {
    /// Retry or dead-letter.
    pub class: ErrorClass,
    /// Human-readable reason (stored in the DLQ entry and the binding).
    pub message: String,
    /// Delay the vendor asked for.
    pub retry_after: Option<Duration>,
}

impl HandlerError {
    /// A failure retrying can fix.
    pub fn transient(message: impl Into<String>) -> Self {
        HandlerError {
            class: ErrorClass::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure retrying cannot fix (bad mapping, validation, permissions).
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Prefixes the message with context ("grant on lock X: ...").
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.class)
    }
}

/// So the shared retry policy can decide on a handler's failure like on any library error.
impl Classify for HandlerError {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl<E: Classify + std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError {
            class: e.class(),
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    }
}

/// A booking's record at one vendor: the revision applied and the vendor's object ids.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Binding {
    /// Tenant.
    pub tenant_id: String,
    /// Vendor (`tapkey`, ...).
    pub vendor: String,
    /// Event kind.
    pub kind: String,
    /// Booking key.
    pub booking_key: String,
    /// Last revision applied (0: nothing applied yet, only an error recorded).
    pub applied_revision: i64,
    /// Event that was applied.
    pub applied_event_id: Option<Uuid>,
    /// Vendor object ids, as the handler returned them.
    pub vendor_ids: serde_json::Value,
    /// Handler status, or `dead_lettered`.
    pub status: String,
    /// Last failure.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Everything a handler needs besides the event.
#[derive(Debug, Clone)]
pub struct ApplyContext {
    /// Worker name.
    pub worker: &'static str,
    /// The tenant's connection serving the event's site.
    pub connection: Arc<Connection>,
    /// Our stable reference for this booking, `ah:<tenant>:<kind>:<key>`: put on every
    /// vendor object so a retry finds it instead of creating a second one.
    pub reference: String,
    /// The connection's rate limiter; vendor clients take a token per call.
    pub rate_limiter: Arc<RateLimiter>,
    /// Delivery attempt (1 = first).
    pub attempt: u64,
    /// Whether a transient failure now goes to the DLQ (last allowed delivery).
    pub last_attempt: bool,
    /// No attempt of any event of this booking can have reached the vendor before this one:
    /// the booking has no binding, this is the message's first delivery, and this attempt
    /// wrote the booking's durable attempt marker (committed before `apply` runs). Lookups
    /// that only exist to find objects an earlier, crashed attempt created may be skipped.
    /// Always false unless the handler opts in with [`Handler::marks_attempts`].
    pub first_attempt: bool,
}

impl ApplyContext {
    /// Our reference for this booking (see [`reference`]).
    pub fn reference(&self) -> &str {
        &self.reference
    }
}

/// `ah:<tenant>:<kind>:<booking_key>`: the vendor idempotency key of a booking.
pub fn reference(tenant: &str, kind: EventKind, booking_key: &str) -> String {
    format!("ah:{tenant}:{}:{booking_key}", kind.as_str())
}
