//! Nexudus coworker time passes (`CoworkerTimePass`).
//!
//! Body (envelope ours): `{"action": "CoworkerTimePassCreate" | "CoworkerTimePassUpdate" |
//! "CoworkerTimePassDelete", "data": {...}}`.
//!
//! Pass fields from Nexudus: `Id`, `UniqueId` (the booking key), `CoworkerId` (holder id),
//! `BusinessId` (the site), `TimePassId` (pass type), `TimePassName`, `ExpireDate` (required
//! here: access needs an end), `Used`, `UsedDate`, `RemainingUses`, `UpdatedOn` (the
//! revision). Fields that are ours: `CoworkerEmail` (required: the Tapkey contact) and
//! `CoworkerFullName`. Dates are RFC 3339, or zone-less local times of the business (site
//! timezone from the site defaults). Status: delete → `removed`, `Used=true` → `used`, else
//! `active`.

use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source};
use serde::Deserialize;

use super::{Context, Id, instant};
use crate::error::Reject;

/// The webhook envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// What happened.
    pub action: Action,
    /// The pass.
    pub data: TimePass,
}

/// Nexudus webhook actions for time passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    /// Created.
    CoworkerTimePassCreate,
    /// Changed.
    CoworkerTimePassUpdate,
    /// Deleted: access is revoked.
    CoworkerTimePassDelete,
}

/// A `CoworkerTimePass`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimePass {
    /// Numeric id.
    pub id: Id,
    /// Stable unique id: the booking key.
    pub unique_id: String,
    /// Holder id.
    pub coworker_id: Id,
    /// Business (location): the site.
    pub business_id: Id,
    /// Pass type id.
    pub time_pass_id: Id,
    /// Pass type name.
    #[serde(default)]
    pub time_pass_name: Option<String>,
    /// Expiry.
    #[serde(default)]
    pub expire_date: Option<String>,
    /// Used up.
    #[serde(default)]
    pub used: bool,
    /// When it was used.
    #[serde(default)]
    pub used_date: Option<String>,
    /// Uses left.
    #[serde(default)]
    pub remaining_uses: Option<i64>,
    /// Last change: the revision.
    pub updated_on: String,
    /// Holder e-mail (ours).
    pub coworker_email: String,
    /// Holder name (ours).
    #[serde(default)]
    pub coworker_full_name: Option<String>,
}

/// Maps a Nexudus time pass to a pass event.
pub fn map(env: Envelope, cx: Context<'_>) -> Result<Event, Reject> {
    let p = env.data;
    let site = p.business_id.to_string();
    let tz = cx.defaults(&site).timezone;
    let updated = instant("data.UpdatedOn", &p.updated_on, &tz)?;
    let expires = match &p.expire_date {
        Some(raw) => instant("data.ExpireDate", raw, &tz)?,
        None => {
            return Err(Reject::semantic(
                "data.ExpireDate",
                "is required: a pass without expiry cannot be granted",
            ));
        }
    };
    let status = if env.action == Action::CoworkerTimePassDelete {
        PassStatus::Removed
    } else if p.used {
        PassStatus::Used
    } else {
        PassStatus::Active
    };
    Ok(Event::new(
        cx.tenant,
        site,
        p.unique_id,
        updated.timestamp_millis(),
        Source::Nexudus,
        updated,
        EventBody::Pass(Pass {
            status,
            holder: PassHolder {
                id: p.coworker_id.to_string(),
                email: p.coworker_email,
                name: p.coworker_full_name,
            },
            pass_type: p.time_pass_id.to_string(),
            pass_type_name: p.time_pass_name,
            valid_from: None,
            expires_at: expires,
        }),
    ))
}
