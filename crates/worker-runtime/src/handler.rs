//! What a vendor worker implements: apply one event's desired state at the vendor.

use std::{future::Future, sync::Arc, time::Duration};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Classify, ErrorClass, Event, EventKind, sync::RemoveCommand};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;
use vendor_http::RateLimiter;

/// A vendor adapter. The runtime does everything else (consuming, ordering, revision check,
/// retries, DLQ, tracing, metrics, one vendor client per connection); the handler only makes
/// the vendor match the event.
///
/// `apply` must be idempotent: it may run again after a crash between the vendor call and
/// the ack, so it looks up objects by our reference (or the recorded ids) before creating
/// them (principle 3).
pub trait Handler: Send + Sync + 'static {
    /// What the booking's binding records of the vendor's objects (stored as JSON). Decoded
    /// by the runtime; a record that does not decode (an older build's shape, a row written by
    /// hand) reaches the handler as `Ids::default()` with a warning — the handler then finds
    /// its objects by reference, as after a crash before the record was written.
    type Ids: Serialize + DeserializeOwned + Default + Send + Sync + 'static;

    /// Shape version of [`Handler::Ids`], stored with every record. Bump it when a change of
    /// `Ids` is not read correctly by serde's defaults alone: a record written by a newer
    /// version (after a rollback) then reaches this build as "nothing recorded" (objects are
    /// found by reference) instead of being misread.
    const IDS_VERSION: i16 = 1;

    /// The vendor client of one connection (HTTP pool, OAuth token, rate limit). The runtime
    /// builds it once per connection version ([`Handler::client`]) and hands it over in the
    /// context, so adapters never cache clients themselves.
    type Client: Send + Sync + 'static;

    /// Worker (and durable consumer) name, e.g. `tapkey-worker`.
    fn name(&self) -> &'static str;
    /// The vendor, for connections, bindings and metrics.
    fn vendor(&self) -> Vendor;
    /// Event kinds handled; other kinds on the consumer's subjects are acked and skipped.
    fn kinds(&self) -> &[EventKind];

    /// Builds the client for `conn`; every call it makes takes a token from `limiter`, the
    /// connection's rate limit. A connection that does not fit this vendor is permanent.
    fn client(
        &self,
        conn: &Connection,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self::Client, HandlerError>;

    /// Makes the vendor match `event`. `prev` is what was recorded before.
    fn apply(
        &self,
        ctx: &ApplyContext<Self::Client>,
        event: &Event,
        prev: Option<&Recorded<Self::Ids>>,
    ) -> impl Future<Output = Result<ApplyOutcome<Self::Ids>, HandlerError>> + Send;

    /// Opt in to [`ApplyContext::first_attempt`]: before the vendor call of a booking that has
    /// no binding yet, the runtime then records durably (one small row per new booking,
    /// `vendor_attempts`) that an attempt may reach the vendor, so every later attempt knows
    /// it must look for what an earlier one created. Off by default (no extra write).
    fn marks_attempts(&self) -> bool {
        false
    }

    /// Removes one vendor object the reconciler found carrying our reference although no
    /// booking wants it (a "stray", from the SYNC stream). Must treat "already gone" as
    /// success. Returns the booking's new record when the removal changed what it holds
    /// (recorded without touching the applied revision), `None` otherwise. The default
    /// refuses (permanent → DLQ), so a worker that has not implemented removal never deletes
    /// anything by accident.
    fn remove(
        &self,
        ctx: &ApplyContext<Self::Client>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<Self::Ids>>,
    ) -> impl Future<Output = Result<Option<ApplyOutcome<Self::Ids>>, HandlerError>> + Send {
        let _ = (cmd, prev);
        let worker = ctx.worker;
        async move {
            Err(HandlerError::permanent(format!(
                "{worker} does not implement removal of stray vendor objects"
            )))
        }
    }
}

/// The short status a binding records: what the vendor holds for the booking now. Stored as
/// text (`bindings.status`); [`Status::as_str`] gives the column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Access exists at the vendor (CloudPass bookings, Tapkey grants).
    Active,
    /// A booking exists at the vendor (iPassan asset booking, lock-system booking).
    Booked,
    /// Access is wanted but there is nothing to hold (a reservation without plates).
    NoPlates,
    /// No lock-system booking yet (a stay registers nothing until a key is cut).
    NoLockBooking,
    /// The booking was cancelled: nothing is held.
    Cancelled,
    /// The guest was checked out at the lock system.
    CheckedOut,
    /// The pass expired: its grants are revoked.
    Expired,
    /// The pass was used: its grants are revoked.
    Used,
    /// The pass was removed: its grants are revoked.
    Removed,
    /// A key request waits for a retry (encoder busy, lock system unreachable).
    Pending,
    /// A key request's vendor call is under way (or was interrupted by a crash).
    InFlight,
    /// Key cards were encoded.
    Encoded,
    /// A mobile key was sent.
    Sent,
    /// The request failed for good.
    Failed,
    /// The event needs nothing at this vendor.
    Ignored,
    /// The runtime dead-lettered the booking's last event.
    DeadLettered,
}

impl Status {
    /// Every status, for parsing.
    pub const ALL: [Status; 16] = [
        Status::Active,
        Status::Booked,
        Status::NoPlates,
        Status::NoLockBooking,
        Status::Cancelled,
        Status::CheckedOut,
        Status::Expired,
        Status::Used,
        Status::Removed,
        Status::Pending,
        Status::InFlight,
        Status::Encoded,
        Status::Sent,
        Status::Failed,
        Status::Ignored,
        Status::DeadLettered,
    ];

    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Booked => "booked",
            Status::NoPlates => "no_plates",
            Status::NoLockBooking => "no_lock_booking",
            Status::Cancelled => "cancelled",
            Status::CheckedOut => "checked_out",
            Status::Expired => "expired",
            Status::Used => "used",
            Status::Removed => "removed",
            Status::Pending => "pending",
            Status::InFlight => "in_flight",
            Status::Encoded => "encoded",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Ignored => "ignored",
            Status::DeadLettered => "dead_lettered",
        }
    }

    /// Whether the vendor holds nothing for the booking in this state (access ended, or none
    /// needed): an event that ends access at the same revision has nothing to do then.
    /// One list ([`accesshub_connections::offboard::HOLDS_NOTHING`]) shared with offboarding,
    /// which counts the bookings that still hold access.
    pub fn holds_nothing(self) -> bool {
        accesshub_connections::offboard::HOLDS_NOTHING.contains(&self.as_str())
    }

    /// From the column value; `None` for one this build does not know.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the handler did, stored in the booking's binding.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOutcome<I> {
    /// What the vendor holds now.
    pub status: Status,
    /// Vendor object ids (the next event's handler reads them back).
    pub ids: I,
}

impl<I> ApplyOutcome<I> {
    /// Convenience constructor.
    pub fn new(status: Status, ids: I) -> Self {
        ApplyOutcome { status, ids }
    }
}

/// A booking's record at this vendor, as the handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<I> {
    /// Shape version the ids were written with (at most the handler's own; a newer one is
    /// not decoded).
    pub ids_version: i16,
    /// Last revision applied (0: only progress or an error recorded so far).
    pub applied_revision: i64,
    /// The recorded status (`None`: one this build does not know).
    pub status: Option<Status>,
    /// The recorded vendor ids (default when none or unreadable).
    pub ids: I,
}

impl<I: DeserializeOwned + Default> Recorded<I> {
    /// Decodes a binding row's record for a handler whose ids are at `version`: ids written by
    /// a newer version, or unreadable ones, become the default, with a warning.
    pub fn from_binding(b: &Binding, version: i16) -> Self {
        let ids = match &b.vendor_ids {
            serde_json::Value::Null => I::default(),
            _ if b.ids_version > version => {
                tracing::warn!(booking = %b.booking_key, recorded = b.ids_version, ours = version,
                    "vendor ids recorded by a newer build; treated as none (objects are found by reference)");
                I::default()
            }
            // Decoded from the borrowed tree: no copy of the record per message.
            v => I::deserialize(v).unwrap_or_else(|e| {
                tracing::warn!(booking = %b.booking_key, error = %e,
                    "recorded vendor ids unreadable; treated as none (objects are found by reference)");
                I::default()
            }),
        };
        Recorded {
            ids_version: b.ids_version,
            applied_revision: b.applied_revision,
            status: Status::parse(&b.status),
            ids,
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
    /// Shape version of `vendor_ids` ([`Handler::IDS_VERSION`] of the build that wrote it).
    pub ids_version: i16,
    /// Handler status, or `dead_lettered`.
    pub status: String,
    /// Last failure.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Trace id (32 hex digits, as in `traceparent`) of the attempt that last wrote the row:
    /// the one that applied what it records, or that failed with `last_error`. `None` for
    /// rows written untraced or before the column existed.
    pub trace_id: Option<String>,
}

/// Everything a handler needs besides the event.
pub struct ApplyContext<C> {
    /// Worker name.
    pub worker: &'static str,
    /// The tenant's connection serving the event's site.
    pub connection: Arc<Connection>,
    /// The connection's vendor client (built by [`Handler::client`], cached per version).
    pub client: Arc<C>,
    /// Our stable reference for this booking, `ah:<tenant>:<kind>:<key>`: put on every
    /// vendor object so a retry finds it instead of creating a second one.
    pub reference: String,
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
    /// Whether the connection wants access at all: false while it is being offboarded.
    pub(crate) wants_access: bool,
    /// The runtime's own services (records, locks, desired state, publishing).
    pub(crate) services: crate::services::Services,
    /// This booking's binding key.
    pub(crate) key: crate::bindings::BindingKey,
    /// The tenant's other connections of this vendor and their clients.
    pub(crate) peers: Arc<dyn crate::services::Peers<C>>,
    /// The booking lock's fence ([`ApplyContext::ensure_held`]).
    pub(crate) fence: crate::store::Fence,
}

impl<C> std::fmt::Debug for ApplyContext<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyContext")
            .field("worker", &self.worker)
            .field("connection", &self.connection.name)
            .field("reference", &self.reference)
            .field("attempt", &self.attempt)
            .field("last_attempt", &self.last_attempt)
            .field("first_attempt", &self.first_attempt)
            .finish_non_exhaustive()
    }
}

impl<C> ApplyContext<C> {
    /// Our reference for this booking (see [`reference`]).
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Whether the connection wants any access at the vendor. False while it is being
    /// offboarded (deleted or disabled with `--remove-access`): then no booking wants anything
    /// through it — [`ApplyContext::stored_body`] answers `None` and a removal must spare
    /// nothing, not even what the binding records as current.
    pub fn wants_access(&self) -> bool {
        self.wants_access
    }

    /// Fails (transient) unless this worker still holds the booking's lock now — checked on
    /// the lock's own database session, not just remembered. The runtime calls it right
    /// before `apply` / `remove`, and [`ApplyContext::record_progress`] before recording; a
    /// handler whose later vendor calls may follow a long wait (another vendor call, a
    /// retry) calls it before each mutation, so a replica that took the booking over after
    /// this one's session broke is never joined by a second vendor call. Costs a share of the
    /// lock task's next statement (no round trip of its own on a busy worker).
    pub async fn ensure_held(&self) -> Result<(), HandlerError> {
        self.fence.ensure_held().await
    }
}

/// `ah:<tenant>:<kind>:<booking_key>`: the vendor idempotency key of a booking.
pub fn reference(tenant: &str, kind: EventKind, booking_key: &str) -> String {
    format!("ah:{tenant}:{}:{booking_key}", kind.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
    struct Ids {
        #[serde(default)]
        grants: Vec<String>,
    }

    fn binding(ids: serde_json::Value, ids_version: i16) -> Binding {
        Binding {
            tenant_id: "t".into(),
            vendor: "tapkey".into(),
            kind: "pass".into(),
            booking_key: "k".into(),
            applied_revision: 3,
            applied_event_id: None,
            vendor_ids: ids,
            ids_version,
            status: "active".into(),
            last_error: None,
            updated_at: Utc::now(),
            trace_id: None,
        }
    }

    #[test]
    fn records_of_this_version_or_older_are_decoded() {
        let b = binding(serde_json::json!({"grants": ["g1"]}), 1);
        let r = Recorded::<Ids>::from_binding(&b, 2);
        assert_eq!(r.ids.grants, vec!["g1".to_owned()]);
        assert_eq!(r.status, Some(Status::Active));
        assert_eq!((r.applied_revision, r.ids_version), (3, 1));
    }

    /// After a rollback, a record a newer adapter wrote is not misread as this one's shape.
    #[test]
    fn records_of_a_newer_version_or_unreadable_ones_count_as_none() {
        let newer = binding(serde_json::json!({"grants": ["g1"]}), 2);
        assert_eq!(Recorded::<Ids>::from_binding(&newer, 1).ids, Ids::default());
        let unreadable = binding(serde_json::json!({"grants": "not a list"}), 1);
        assert_eq!(
            Recorded::<Ids>::from_binding(&unreadable, 1).ids,
            Ids::default()
        );
    }

    #[test]
    fn holding_nothing_is_the_shared_list() {
        let nothing: Vec<&str> = Status::ALL
            .into_iter()
            .filter(|s| s.holds_nothing())
            .map(Status::as_str)
            .collect();
        assert_eq!(nothing, accesshub_connections::offboard::HOLDS_NOTHING);
        assert!(!Status::Active.holds_nothing() && !Status::DeadLettered.holds_nothing());
    }

    #[test]
    fn statuses_round_trip_through_their_column_value() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("something_newer"), None);
    }
}
