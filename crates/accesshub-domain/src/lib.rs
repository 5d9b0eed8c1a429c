//! The accesshub domain: the normalized events every service speaks, the NATS subjects and
//! headers they travel on, and the error classification every component shares.
//!
//! Events carry the whole desired state of one booking with a revision (never deltas), so
//! redelivery, duplicates and reordering converge (ARCHITECTURE.md, principle 1).

pub mod class;
pub mod dlq;
pub mod egress;
pub mod event;
pub mod headers;
pub mod pii;
pub mod subjects;
pub mod sync;
pub mod validate;

pub use class::{Classify, ErrorClass};
pub use dlq::{DeadLetter, PayloadEncoding};
pub use event::*;
pub use validate::{FieldError, Validate};
