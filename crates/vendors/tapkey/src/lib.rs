//! The Tapkey adapter (binary `tapkey-worker`): Nexudus time passes → Tapkey grants.
//!
//! An active pass gives its holder (a Tapkey contact, by e-mail) one grant on every lock
//! mapped to the pass type, valid until the pass expires. Used, removed or expired → the
//! pass's grants are revoked. Expiry changed → new grants first, then the old ones revoked
//! (no gap in access). Tapkey grants carry no reference field, so a grant is "ours" when its
//! id is in the binding or — after a crash before the binding was saved — when it is an active
//! grant of the holder on a mapped lock starting at the pass's stable start time; such a
//! grant is adopted instead of issuing a second one (principle 3). That search (the grants
//! list) is skipped only when the runtime proves that no attempt for the booking has reached
//! Tapkey before ([`worker_runtime::ApplyContext::first_attempt`], a durable marker written
//! before the first call).

//!
//! - [`client`]: the Tapkey API (paths, fields, OAuth, classification) and nothing else.
//! - [`desired`]: pass → the grants Tapkey should hold (pure).
//! - [`apply`]: make Tapkey hold exactly those (adopt, issue, revoke).
//! - [`handler`]: the worker-runtime `Handler`; [`inventory`]: the reconciler's listing;
//!   [`lookup`]: locks for operators.

pub mod apply;
pub mod client;
pub mod desired;
pub mod handler;
pub mod inventory;
pub mod lookup;

pub use client::TapkeyClient;
pub use handler::{NAME, TapkeyHandler, TapkeyIds};
