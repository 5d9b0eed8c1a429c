//! Booking Experts (BEX PMS) App webhooks: the envelope and the mapping live in
//! [`accesshub_upstreams::bex`] (shared with the reconciler's pull); this module only hands
//! the parsed envelope over.

use super::{Context, Mapped};
use crate::error::Reject;

pub use accesshub_upstreams::bex::Envelope;

/// Maps a BEX webhook to a reservation event, or an ignored outcome: one naming another
/// organization than the tenant's `organization` is ignored before anything of it is read.
pub fn map(env: Envelope, cx: Context<'_>, organization: Option<&str>) -> Result<Mapped, Reject> {
    if let Err(ignored) = accesshub_upstreams::bex::check_organization(&env, organization) {
        return Ok(Mapped::Ignored(ignored));
    }
    Ok(accesshub_upstreams::bex::map_webhook(env, cx)?)
}
