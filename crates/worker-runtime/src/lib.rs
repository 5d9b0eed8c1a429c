//! The runtime every vendor worker uses. A worker is a [`Handler`] (apply one event's desired
//! state at the vendor); the runtime does the rest, once, for all vendors:
//!
//! - a durable pull consumer on the namespaced BOOKINGS stream (one filter subject, explicit
//!   `ack_wait`, `max_deliver`, `max_ack_pending`), recreated when deleted;
//! - keyed dispatch (`concurrency` messages at once, one booking never twice at once
//!   in-process, a free slot to whichever booking waited longest) plus a Postgres advisory
//!   lock on the booking's binding (never twice across replicas), and a per-connection token
//!   bucket for vendor calls;
//! - the revision check against `bindings` (stale/equal → ack + skip), binding update and
//!   double ack only after the vendor call succeeded, progress acks during long calls; locks,
//!   binding reads and binding writes are batched across messages in flight (group commit,
//!   `store`);
//! - one error policy ([`policy`]): transient → NAK with exponential full-jitter delay or the
//!   vendor's `Retry-After`; permanent or last attempt → full [`DeadLetter`] on
//!   `dlq.<worker>.<subject>` (PubAck awaited), `last_error` recorded, then Term;
//! - a circuit breaker per connection ([`breaker`]): after `breaker_threshold` transient
//!   vendor failures in a row, the connection's messages are parked in Postgres and
//!   acknowledged (no delivery burned, nothing dead-lettered for a transient reason) until a
//!   probe after a backoff interval succeeds; then they apply again, oldest first;
//! - tracing (a span per message, child of the publisher's `traceparent`) and the
//!   `accesshub_worker_*` metrics; readiness; graceful shutdown.
//!
//! Modelled on kube-rs's reconcile loop with an error policy and Vector's `RetryLogic`.
//!
//! [`DeadLetter`]: accesshub_domain::DeadLetter

mod bindings;
pub mod breaker;
mod cache;
mod config;
mod dlq;
mod handler;
pub mod lookups;
mod metrics;
mod parking;
pub mod policy;
mod runner;
mod serve;
mod services;
mod source;
mod store;
mod wrap;

use accesshub_domain::{Classify, ErrorClass};
use tokio_util::sync::CancellationToken;

pub use bindings::{BindingKey, get_binding};
pub use cache::ClientCache;
pub use config::WorkerConfig;
pub use handler::{
    ApplyContext, ApplyOutcome, Binding, Handler, HandlerError, Recorded, Status, reference,
};
pub use metrics::Outcome;
pub use runner::{WorkerHandle, start};
pub use serve::{install_crypto_provider, serve_main, shutdown_signal, with_retries};
pub use services::{Peer, Related};
pub use source::{BoxFuture, ConnectionSource, SourceError, StaticConnections};
pub use wrap::AfterApply;

/// The worker could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] accesshub_config::ConfigError),
    /// NATS.
    #[error(transparent)]
    Bus(#[from] accesshub_bus::BusError),
    /// Postgres.
    #[error(transparent)]
    Store(#[from] accesshub_store::StoreError),
    /// Connections could not be loaded.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Telemetry could not start.
    #[error(transparent)]
    Telemetry(#[from] accesshub_telemetry::TelemetryError),
    /// The HTTP listener.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The handler could not be built.
    #[error("handler: {0}")]
    Handler(String),
    /// A runtime task failed.
    #[error("worker task: {0}")]
    Task(String),
}

impl Classify for WorkerError {
    fn class(&self) -> ErrorClass {
        match self {
            WorkerError::Bus(e) => e.class(),
            WorkerError::Store(e) => e.class(),
            WorkerError::Source(e) => e.class(),
            WorkerError::Io(_) | WorkerError::Task(_) => ErrorClass::Transient,
            WorkerError::Config(_) | WorkerError::Telemetry(_) | WorkerError::Handler(_) => {
                ErrorClass::Permanent
            }
        }
    }
}

/// Runs a worker until `shutdown` is cancelled, then drains in-flight work.
pub async fn run_worker<H: Handler>(
    cfg: WorkerConfig,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let handle = start(cfg, handler).await?;
    shutdown.cancelled().await;
    handle.shutdown().await
}
