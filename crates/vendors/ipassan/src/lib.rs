//! The iPassan adapter (binary `ipassan-worker`): connecX facility bookings (event kind
//! `facility`) become iPassan asset bookings on the asset the tenant's connection maps the
//! facility to.
//!
//! - [`client`]: the iPassan API, in one module (paths and field names in one place).
//! - [`desired`]: facility → asset mapping and iPassan's booking rules as plain functions.
//! - [`apply`]: find-or-create the person, then create, move or delete the asset booking.
//! - [`handler`]: the worker-runtime `Handler`; [`inventory`]: the reconciler's listing;
//!   [`lookup`]: `assets` for operators.

pub mod apply;
pub mod client;
pub mod desired;
pub mod handler;
pub mod inventory;
pub mod lookup;

pub use handler::{IpassanHandler, WORKER};
