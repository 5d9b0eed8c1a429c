//! The dormakaba adapter (binary `dormakaba-worker`): reservations and key requests → Saflok
//! 6000 / Ambiance lock-system bookings, key cards and mobile keys over the Messenger PMS SOAP
//! web service.
//!
//! - [`client`]: the SOAP web service (envelopes, faults, classification) and nothing else.
//! - [`desired`]: reservation → what the lock system should hold, and the pure plan of
//!   operations that gets it there from what was recorded.
//! - [`apply`]: run a plan against the lock system, recording each step.
//! - [`handler`]: the worker-runtime `Handler`; [`keyreq`]: key-request outcomes;
//!   [`inventory`]: the reconciler's per-reservation probe; [`lookup`]: encoders for operators.

pub mod apply;
pub mod client;
pub mod desired;
pub mod edge;
pub mod handler;
pub mod inventory;
pub mod keyreq;
pub mod lookup;
pub mod resume;

pub use handler::{DormakabaHandler, WORKER};
pub use keyreq::{KeyRequestStatus, StoredStatus, key_request_status};
