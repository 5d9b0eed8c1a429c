//! The CloudPass adapter (binary `cloudpass-worker`): BEX reservations → CloudPass vehicle
//! bookings.
//!
//! A confirmed (or checked-in) reservation gives one vehicle booking per normalized license
//! plate at the CloudPass site mapped to its administration, with the connection's default
//! time restriction (or the administration's), valid from check-in minus the window to
//! check-out plus the window, computed in the site's timezone (DST-correct, via
//! `Reservation::check_in/check_out`). Plates added or removed, dates moved, cancellation:
//! the bookings follow. Each booking's `reference` (`ah:<tenant>:reservation:<key>:<PLATE>`)
//! is our idempotency key: looked up before every create (each returned row checked for
//! `reference ==`, not trusting the vendor's filter), and a 409 on create means "exists".
//! What is ours and how crashes, moves, refused plates and stray removals are handled:
//! docs/sync.md "What is ours, per vendor".
//!
//! - [`client`]: the CloudPass API (paths, fields, OAuth, classification) and nothing else.
//! - [`desired`]: reservation → the vehicle bookings CloudPass should hold (pure).
//! - [`apply`]: make CloudPass hold exactly those (find by reference, create, update, delete).
//! - [`handler`]: the worker-runtime `Handler`; [`inventory`]: the reconciler's listing;
//!   [`lookup`]: sites and time restrictions for operators.

pub mod apply;
pub mod client;
pub mod desired;
pub mod handler;
pub mod inventory;
pub mod lookup;

pub use client::CloudpassClient;
pub use desired::{DesiredError, desired_bookings, normalize_plate, plates};
pub use handler::{CloudpassHandler, CloudpassIds, NAME};
