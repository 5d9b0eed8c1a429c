//! The Tapkey adapter (binary `tapkey-worker`): Nexudus time passes → Tapkey grants.
//!
//! An active pass gives its holder (a Tapkey contact, by e-mail) one grant on every lock
//! mapped to the pass type, valid until the pass expires. Used, removed or expired → the
//! pass's grants are revoked. Expiry changed → new grants first, then the old ones revoked
//! (no gap in access); holder e-mail changed → the new holder's grants, then the old holder's
//! revoked. Tapkey grants carry no reference field, so ownership rests on the contact: every
//! contact we PUT carries `accesshub:<tenant>` in its comment, and a grant of such a contact
//! on a mapped lock, bounded and unrestricted, is ours even when no record holds it
//! ([`desired::bears_our_mark`], docs/sync.md "What is ours"). The binding records the
//! contact and the grants' window before the first grant PUT, so a crashed attempt's grants
//! are adopted or revoked by any later revision (principle 3); the grants list is skipped only
//! when the runtime proves that no attempt for the booking has reached Tapkey before
//! ([`worker_runtime::ApplyContext::first_attempt`], a durable marker written before the first
//! call).

//!
//! - [`client`]: the Tapkey API (paths, fields, OAuth, classification) and nothing else.
//! - [`desired`]: pass → the grants Tapkey should hold, and which grants are ours (pure).
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
