//! The seam between the reconciler's generic compare/repair engine and each vendor adapter:
//! what a vendor actually holds (every object that carries our reference, listed through the
//! vendor's paginated list APIs and reduced to what the comparison needs) and what a booking
//! should look like there.
//!
//! Each vendor crate implements [`Inventory`] next to its worker, with the same client and
//! the same pure desired-state function its worker applies, so the comparison can never
//! drift from what the worker does. The engine (listing into an index, streaming the desired
//! side from Postgres, publishing repairs) lives in the reconciler and knows no vendor.

use std::{collections::HashMap, hash::Hasher as _, time::Duration};

use accesshub_connections::Connection;
use accesshub_domain::{Classify, ErrorClass, Event, EventKind};
use accesshub_retry::{Backoff, RetryPolicy};
use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, stream::BoxStream};

/// One vendor object carrying our reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorObject {
    /// Our reference on the object (the idempotency key the worker set).
    pub reference: String,
    /// The booking the reference points to.
    pub booking_key: String,
    /// The vendor's id, enough for the worker to remove exactly this object.
    pub vendor_id: String,
    /// Hash of the fields the worker controls (see [`Fingerprint`]).
    pub fingerprint: u64,
}

/// What one booking should look like at the vendor: one entry per vendor object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredObject {
    /// Reference the worker puts on the object.
    pub reference: String,
    /// Hash of the fields the worker sets, computed exactly like the vendor side's.
    pub fingerprint: u64,
}

/// Builds a fingerprint from the relevant fields, in a fixed order. Both sides feed the same
/// normalized strings, so equal fingerprints mean equal objects.
#[derive(Debug, Default)]
pub struct Fingerprint(std::collections::hash_map::DefaultHasher);

impl Fingerprint {
    /// Starts an empty fingerprint.
    pub fn new() -> Self {
        Fingerprint::default()
    }
    /// Adds one field (length-prefixed, so `("ab","c")` ≠ `("a","bc")`).
    pub fn field(mut self, v: &str) -> Self {
        self.0.write_usize(v.len());
        self.0.write(v.as_bytes());
        self
    }
    /// The hash.
    pub fn finish(self) -> u64 {
        self.0.finish()
    }
}

/// Listing the vendor's objects failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A vendor call failed; classified by the vendor client that made it (one
    /// classification of HTTP statuses and vendor faults, in the client's crate).
    #[error("{vendor}: {message}")]
    Call {
        /// Vendor.
        vendor: &'static str,
        /// The client's error.
        message: String,
        /// Its class.
        class: ErrorClass,
        /// `Retry-After`, if the vendor sent one.
        retry_after: Option<Duration>,
    },
    /// The answer did not parse.
    #[error("{vendor}: unexpected response: {message}")]
    Decode {
        /// Vendor.
        vendor: &'static str,
        /// Detail.
        message: String,
    },
    /// The connection is not usable for listing (wrong vendor, missing mapping).
    #[error("{vendor}: {message}")]
    Config {
        /// Vendor.
        vendor: &'static str,
        /// Detail.
        message: String,
    },
}

impl InventoryError {
    /// A failed vendor call, keeping the client's classification.
    pub fn call<E: Classify + std::fmt::Display>(vendor: &'static str, e: &E) -> Self {
        InventoryError::Call {
            vendor,
            message: e.to_string(),
            class: e.class(),
            retry_after: e.retry_after(),
        }
    }
}

/// A connection of another vendor handed to this vendor's inventory.
impl From<accesshub_connections::WrongVendor> for InventoryError {
    fn from(e: accesshub_connections::WrongVendor) -> Self {
        InventoryError::Config {
            vendor: e.expected.as_str(),
            message: e.to_string(),
        }
    }
}

impl Classify for InventoryError {
    fn class(&self) -> ErrorClass {
        match self {
            InventoryError::Call { class, .. } => *class,
            InventoryError::Decode { .. } | InventoryError::Config { .. } => ErrorClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            InventoryError::Call { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The list calls' retries: up to 4, jittered from at most 250 ms doubling to 2 s, a vendor's
/// `Retry-After` honoured up to 30 s — enough to ride out a blip without stalling a run.
const LIST_RETRY: RetryPolicy = RetryPolicy::limited(
    Backoff::new(Duration::from_millis(250), Duration::from_secs(2)),
    4,
)
.with_retry_after_max(Duration::from_secs(30));

/// Retries a list call a few times on transient failures (honouring `Retry-After`), so one
/// 503 in ten thousand pages does not fail a nightly run; permanent errors return at once.
pub async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, InventoryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, InventoryError>>,
{
    // The policy's own count rather than `retry_transient_notify`: that takes an `AsyncFnMut`,
    // whose future rustc cannot prove `Send` for every lifetime, and list streams are boxed
    // `Send` (cloudpass' inventory did not compile).
    let mut attempts = LIST_RETRY.attempts();
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(wait) = attempts.next_wait_after(&e) else {
            return Err(e);
        };
        tracing::warn!(error = %e, ?wait, "vendor list call failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// What the worker recorded per booking at this vendor: booking key → the binding's vendor
/// ids. Handed to [`Inventory::list_ours`] only when [`Inventory::needs_records`] says so.
pub type Records = HashMap<String, serde_json::Value>;

/// A vendor's view for the reconciler: list our objects, and say what a booking should look
/// like there. Implementations use the same reference, client and pure desired-state function
/// as the vendor's worker (they live in the same crate).
pub trait Inventory: Send + Sync {
    /// Vendor wire name.
    fn vendor(&self) -> &'static str;

    /// Whether [`Inventory::list_ours`] needs the worker's [`Records`] to tell our objects
    /// from others (vendors whose objects cannot carry our reference). The engine then loads
    /// them; otherwise it passes an empty map.
    fn needs_records(&self) -> bool {
        false
    }

    /// Every object at the vendor carrying our reference for this connection's tenant.
    /// Objects without our reference are never returned (and so never touched).
    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
        records: &'a Records,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>>;

    /// Best guess of the number of objects, to size the index (0 if unknown).
    fn size_hint<'a>(
        &'a self,
        _conn: &'a Connection,
    ) -> BoxFuture<'a, Result<usize, InventoryError>> {
        Box::pin(async { Ok(0) })
    }

    /// The objects `event` should have at this vendor (empty: none should exist). An error
    /// means the booking cannot be judged (counted as failed, never repaired blindly).
    fn desired(
        &self,
        conn: &Connection,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Vec<DesiredObject>, String>;

    /// Which event kind this vendor serves (the bookings streamed for it).
    fn kinds(&self) -> &'static [EventKind];

    /// For vendors that cannot list what they hold (dormakaba): the engine asks the vendor per
    /// booking through the [`Prober`]; `list_ours` and `desired` are then not used.
    fn prober(&self) -> Option<&dyn Prober> {
        None
    }
}

/// How a booking is repaired through its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Nothing of the booking is at the vendor: the worker applies it again.
    Create,
    /// Something is, but not what the booking wants: the worker applies it again.
    Update,
}

/// What a probe concluded about one booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The vendor holds what the booking wants.
    InSync,
    /// Cannot be judged or repaired; the reason lands in the run's problems.
    Failed(String),
    /// The worker applies the booking's desired state again (SYNC `apply`).
    Apply(Repair),
    /// The worker removes this vendor object (SYNC `remove`).
    Remove {
        /// Our reference on the object.
        reference: String,
        /// The vendor's id of the object.
        vendor_id: String,
    },
}

/// A verdict, and whether the vendor was asked to reach it (counted as the run's vendor
/// objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The verdict.
    pub verdict: Verdict,
    /// Whether a vendor call was made.
    pub probed: bool,
}

impl Judged {
    /// Decided without asking the vendor.
    pub fn decided(verdict: Verdict) -> Self {
        Judged {
            verdict,
            probed: false,
        }
    }

    /// Decided by a vendor call.
    pub fn probed(verdict: Verdict) -> Self {
        Judged {
            verdict,
            probed: true,
        }
    }
}

/// A vendor that cannot list what it holds (dormakaba's lock-system interfaces) and is asked
/// per booking instead. The engine streams the bookings in scope — plus any whose record says
/// access is still live at the vendor, whatever the scope — and publishes the repairs; the
/// prober only judges, with the worker's own rules and client.
pub trait Prober: Send + Sync {
    /// Probes in flight at once per run.
    fn concurrency(&self) -> usize {
        4
    }

    /// Whether the worker's record (the binding's vendor ids) says access is live at the
    /// vendor: such a booking is judged even outside the run's scope, so stale access is
    /// found.
    fn record_is_live(&self, record: &serde_json::Value) -> bool;

    /// Judges one booking of `conn` (its site is served by the connection): its desired state
    /// and the worker's record, asking the vendor where the record cannot tell.
    fn judge<'a>(
        &'a self,
        conn: &'a Connection,
        event: &'a Event,
        record: Option<&'a serde_json::Value>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Judged>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(class: ErrorClass, retry_after: Option<Duration>) -> InventoryError {
        InventoryError::Call {
            vendor: "test",
            message: "list failed".into(),
            class,
            retry_after,
        }
    }

    /// Calls `with_retry` with a call that fails with `err` every time; the calls made and
    /// the (paused) time it took.
    async fn always_failing(err: fn() -> InventoryError) -> (u32, Duration) {
        let start = tokio::time::Instant::now();
        let mut calls = 0u32;
        let r: Result<(), _> = with_retry(|| {
            calls += 1;
            std::future::ready(Err(err()))
        })
        .await;
        assert!(r.is_err());
        (calls, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_four_times_with_capped_backoff() {
        let (calls, took) = always_failing(|| failure(ErrorClass::Transient, None)).await;
        assert_eq!(calls, 5, "one try and four retries");
        // Jittered waits of at most 250 ms, 500 ms, 1 s, 2 s; at least a tenth of each.
        assert!(took <= Duration::from_millis(3750), "{took:?}");
        assert!(took >= Duration::from_millis(375), "{took:?}");
    }

    /// Listing streams are boxed `Send` and hold borrowed settings across the retry.
    #[test]
    fn a_retried_call_over_borrowed_state_is_send() {
        fn send<T: Send>(_: &T) {}
        fn list<'a>(
            conn: &'a String,
        ) -> futures::stream::BoxStream<'a, Result<usize, InventoryError>> {
            use futures::{StreamExt as _, TryStreamExt as _};
            futures::stream::once(async move { Ok::<_, InventoryError>(conn) })
                .map_ok(move |c| {
                    futures::stream::iter([1usize, 2])
                        .then(move |page| with_retry(move || async move { Ok(c.len() + page) }))
                })
                .try_flatten()
                .boxed()
        }
        let conn = String::from("c");
        send(&list(&conn));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_return_at_once() {
        let (calls, took) = always_failing(|| failure(ErrorClass::Permanent, None)).await;
        assert_eq!((calls, took), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_up_to_thirty_seconds() {
        let (calls, took) =
            always_failing(|| failure(ErrorClass::Transient, Some(Duration::from_secs(3600))))
                .await;
        assert_eq!(calls, 5);
        assert_eq!(took, Duration::from_secs(4 * 30));
        let mut calls = 0u32;
        let r = with_retry(|| {
            calls += 1;
            std::future::ready(if calls < 3 {
                Err(failure(ErrorClass::Transient, Some(Duration::from_secs(7))))
            } else {
                Ok(calls)
            })
        })
        .await;
        assert_eq!(r.ok(), Some(3));
    }
}
