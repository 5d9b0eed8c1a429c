//! Nexudus coworker time passes in our legacy envelope, for integrations that push them
//! (Nexudus itself has no webhook for passes: the reconciler polls them, see
//! `accesshub_upstreams::nexudus`).
//!
//! Body (envelope ours): `{"action": "CoworkerTimePassCreate" | "CoworkerTimePassUpdate" |
//! "CoworkerTimePassDelete", "data": {...}}`, `data` a `CoworkerTimePass` plus, ours, the
//! holder's `CoworkerEmail` (required here: nothing to look it up with) and
//! `CoworkerFullName`. The mapping is the one of `accesshub_upstreams::nexudus::map_pass`.

use accesshub_domain::Event;
use accesshub_upstreams::nexudus::{Coworker, TimePass, map_pass};
use serde::Deserialize;

use super::Context;
use crate::error::Reject;

/// The webhook envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// What happened.
    pub action: Action,
    /// The pass with its holder's contact.
    pub data: PassWithHolder,
}

/// Nexudus-style actions for time passes (ours: Nexudus sends none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    /// Created.
    CoworkerTimePassCreate,
    /// Changed.
    CoworkerTimePassUpdate,
    /// Deleted: access is revoked.
    CoworkerTimePassDelete,
}

/// A `CoworkerTimePass` with the holder's contact (ours).
#[derive(Debug, Deserialize)]
pub struct PassWithHolder {
    /// The pass.
    #[serde(flatten)]
    pub pass: TimePass,
    /// Holder e-mail (ours).
    #[serde(rename = "CoworkerEmail")]
    pub coworker_email: String,
    /// Holder name (ours).
    #[serde(rename = "CoworkerFullName", default)]
    pub coworker_full_name: Option<String>,
}

/// Maps a pushed Nexudus time pass to a pass event.
pub fn map(env: Envelope, cx: Context<'_>) -> Result<Event, Reject> {
    let holder = Coworker {
        id: env.data.pass.coworker_id.clone(),
        full_name: env.data.coworker_full_name,
        email: Some(env.data.coworker_email),
        updated_on: None,
    };
    let removed = env.action == Action::CoworkerTimePassDelete;
    Ok(*map_pass(env.data.pass, &holder, removed, cx, "data")?)
}
