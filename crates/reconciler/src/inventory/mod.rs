//! What a vendor actually holds: every object that carries our reference, listed through the
//! vendor's paginated list APIs and reduced to what the comparison needs.

pub mod cloudpass;
pub mod dormakaba;
pub mod index;
pub mod ipassan;
pub mod tapkey;

use std::{hash::Hasher as _, time::Duration};

use accesshub_connections::Connection;
use accesshub_domain::{Classify, ErrorClass};
use futures::stream::BoxStream;

pub use index::VendorIndex;

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
    /// Network error or timeout.
    #[error("{vendor}: {message}")]
    Transport {
        /// Vendor.
        vendor: &'static str,
        /// Detail.
        message: String,
    },
    /// The vendor answered with an error status.
    #[error("{vendor}: HTTP {status}: {message}")]
    Status {
        /// Vendor.
        vendor: &'static str,
        /// HTTP status.
        status: u16,
        /// Body excerpt.
        message: String,
        /// `Retry-After`.
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

impl Classify for InventoryError {
    fn class(&self) -> ErrorClass {
        match self {
            InventoryError::Transport { .. } => ErrorClass::Transient,
            InventoryError::Status { status, .. } => {
                if *status == 429 || *status >= 500 || *status == 408 {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            InventoryError::Decode { .. } | InventoryError::Config { .. } => ErrorClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            InventoryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Retries a list call a few times on transient failures (honouring `Retry-After`), so one
/// 503 in ten thousand pages does not fail a nightly run; permanent errors return at once.
pub async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, InventoryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, InventoryError>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Err(e) if e.class() == ErrorClass::Transient && attempt < 4 => {
                let backoff = Duration::from_millis(250u64 << attempt);
                let wait = e
                    .retry_after()
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(30));
                tracing::warn!(error = %e, ?wait, "vendor list call failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A vendor's view for the reconciler: list our objects, and say what a booking should look
/// like there. Implementations must use the same reference and field normalization as the
/// vendor's worker (ideally by calling the worker crate's own pure function).
pub trait Inventory: Send + Sync {
    /// Vendor wire name.
    fn vendor(&self) -> &'static str;

    /// Every object at the vendor carrying our reference for this connection's tenant.
    /// Objects without our reference are never returned (and so never touched).
    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>>;

    /// Best guess of the number of objects, to size the index (0 if unknown).
    fn size_hint<'a>(
        &'a self,
        _conn: &'a Connection,
    ) -> futures::future::BoxFuture<'a, Result<usize, InventoryError>> {
        Box::pin(async { Ok(0) })
    }

    /// The objects `event` should have at this vendor (empty: none should exist). An error
    /// means the booking cannot be judged (counted as failed, never repaired blindly).
    fn desired(
        &self,
        conn: &Connection,
        event: &accesshub_domain::Event,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<DesiredObject>, String>;

    /// Which event kind this vendor serves (the bookings streamed for it).
    fn kinds(&self) -> &'static [accesshub_domain::EventKind];

    /// For vendors that cannot list what they hold (dormakaba): the whole comparison is the
    /// vendor's own ([`Prober`]); `list_ours` and `desired` are then not used.
    fn prober(&self) -> Option<&dyn Prober> {
        None
    }
}

/// A sync that cannot list the vendor's objects and asks the vendor per booking instead
/// (see [`dormakaba`]). Counts land in the same run record as a listing sync's.
pub trait Prober: Send + Sync {
    /// Compares and repairs one connection for `run`.
    fn sync<'a>(
        &'a self,
        pool: &'a sqlx::PgPool,
        bus: &'a accesshub_bus::Bus,
        conn: &'a Connection,
        run: &'a crate::model::SyncRun,
        now: chrono::DateTime<chrono::Utc>,
    ) -> futures::future::BoxFuture<'a, Result<crate::engine::Outcome, crate::ReconcileError>>;
}
