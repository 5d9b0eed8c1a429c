//! Clock PMS+ booking notifications: the envelope and the mapping live in
//! [`accesshub_upstreams::clock`] (shared with the reconciler's pull); this module only hands
//! the parsed envelope over.

use accesshub_domain::Event;

use super::Context;
use crate::error::Reject;

pub use accesshub_upstreams::clock::{Booking, ClockEvent, Envelope, Status};

/// Maps a Clock PMS+ booking notification to a reservation event.
pub fn map(env: Envelope, cx: Context<'_>) -> Result<Event, Reject> {
    Ok(*accesshub_upstreams::clock::map_webhook(env, cx)?)
}
