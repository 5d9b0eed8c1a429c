//! Booking Experts (BEX PMS) App webhooks: the envelope and the mapping live in
//! [`accesshub_upstreams::bex`] (shared with the reconciler's pull); this module only hands
//! the parsed envelope over.

use super::{Context, Mapped};
use crate::error::Reject;

pub use accesshub_upstreams::bex::Envelope;

/// Maps a BEX webhook to a reservation event, or an ignored outcome.
pub fn map(env: Envelope, cx: Context<'_>) -> Result<Mapped, Reject> {
    Ok(accesshub_upstreams::bex::map_webhook(env, cx)?)
}
