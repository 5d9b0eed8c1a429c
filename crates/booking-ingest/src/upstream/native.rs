//! Our own event schema (proto-schemas/v1/event.schema.json), for any system that speaks it.
//! The body's `tenant` must equal the authenticated tenant (422 otherwise). Its `revision` is
//! kept; its `id` is replaced by a fresh UUIDv7 (an event id is ours to mint, and a reused id
//! would be swallowed by JetStream de-duplication) and `source` becomes `native`.

use accesshub_domain::{Event, Source};

use super::Context;
use crate::error::Reject;

/// Checks and re-stamps a native event.
pub fn map(mut e: Event, cx: Context<'_>) -> Result<Event, Reject> {
    if e.tenant != cx.tenant {
        return Err(Reject::semantic(
            "tenant",
            "does not match the tenant of the URL or subject",
        ));
    }
    e.id = uuid::Uuid::now_v7();
    e.source = Source::Native;
    Ok(e)
}
