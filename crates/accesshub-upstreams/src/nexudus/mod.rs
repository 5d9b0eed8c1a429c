//! Nexudus: coworker time passes (`CoworkerTimePass`) and coworkers, as the REST API serves
//! them, and the one mapping of a pass to a [`Pass`] event, used by the reconciler's polls and
//! Sync Now and by booking-ingest's legacy envelope alike.
//!
//! **Documented by Nexudus** (VENDORS.md "Upstream APIs"; docs/upstreams.md): pass fields
//! `Id`, `UniqueId`, `CoworkerId`, `BusinessId`, `TimePassId`, `TimePassName`, `ExpireDate`,
//! `Used`, `UsedDate`, `RemainingUses`, `CreatedOn`, `UpdatedOn`; coworkers `Id`, `FullName`,
//! `Email`. Search endpoints answer `{Records, CurrentPage, CurrentPageSize, TotalItems,
//! TotalPages, HasNextPage, HasPreviousPage}`. Webhooks post a bare JSON array holding the
//! entity (`[dto]`), signed `X-Nexudus-Hook-Signature` (uppercase hex HMAC-SHA256 of the
//! body); **there is no webhook for time passes**: they are polled.
//!
//! **Ours**: booking key = `UniqueId`; site = `BusinessId`; pass type = `TimePassId`; the
//! holder's e-mail and name come from the coworker (`GET /api/spaces/coworkers/{id}`), never
//! from the pass. Dates are RFC 3339 or zone-less local times of the business (site
//! timezone from the site defaults). Status: deleted (absent from a full listing) →
//! `removed`, `Used` → `used`, else `active`. Revision = the later of the pass's and the
//! holder's `UpdatedOn`, in epoch milliseconds (a changed e-mail is a new state of the pass).

pub mod client;

use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source};
use serde::{Deserialize, Serialize};

use crate::{Context, Id, MapError, instant};

pub use client::NexudusClient;

/// A `CoworkerTimePass`.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Created.
    #[serde(default)]
    pub created_on: Option<String>,
    /// Last change: the revision.
    pub updated_on: String,
}

/// A coworker (the pass holder) as `GET /api/spaces/coworkers/{id}` serves it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coworker {
    /// Id.
    pub id: Id,
    /// Display name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// E-mail: the Tapkey contact.
    #[serde(default)]
    pub email: Option<String>,
    /// Last change of the coworker (a new e-mail is a new revision of their passes).
    #[serde(default)]
    pub updated_on: Option<String>,
}

/// A Nexudus search page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchPage<T> {
    /// The page's records.
    pub records: Vec<T>,
    /// Page number (1-based).
    #[serde(default)]
    pub current_page: i64,
    /// Whether another page follows.
    pub has_next_page: bool,
}

/// THE mapping of a pass. `removed` when the upstream no longer has it; `path` prefixes the
/// field names of errors (`data` for the legacy envelope, `pass` for pulls).
pub fn map_pass(
    p: TimePass,
    holder: &Coworker,
    removed: bool,
    cx: Context<'_>,
    path: &str,
) -> Result<Box<Event>, MapError> {
    let site = p.business_id.to_string();
    let tz = cx.defaults(&site).timezone;
    let pass_updated = instant(&format!("{path}.UpdatedOn"), &p.updated_on, &tz)?;
    // The holder is part of the pass's state: a coworker changed later (a new e-mail) makes
    // a newer revision, else the revision rule would keep the old contact.
    let holder_updated = holder
        .updated_on
        .as_deref()
        .and_then(|raw| instant("coworker.UpdatedOn", raw, &tz).ok());
    let updated = holder_updated.map_or(pass_updated, |h| h.max(pass_updated));
    let expires = match &p.expire_date {
        Some(raw) => instant(&format!("{path}.ExpireDate"), raw, &tz)?,
        None => {
            return Err(MapError::semantic(
                format!("{path}.ExpireDate"),
                "is required: a pass without expiry cannot be granted",
            ));
        }
    };
    let email = holder
        .email
        .clone()
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| {
            MapError::semantic(
                format!("coworker {}.Email", holder.id),
                "is required: the pass holder's e-mail is the lock contact",
            )
        })?;
    let status = if removed {
        PassStatus::Removed
    } else if p.used {
        PassStatus::Used
    } else {
        PassStatus::Active
    };
    Ok(Box::new(Event::new(
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
                email,
                name: holder.full_name.clone(),
            },
            pass_type: p.time_pass_id.to_string(),
            pass_type_name: p.time_pass_name,
            valid_from: None,
            expires_at: expires,
        }),
    )))
}

/// What a Nexudus webhook body (a bare `[dto]` array) is about, as far as accesshub cares:
/// coworkers (a changed e-mail means their passes' contact changed).
pub fn coworker_ids(body: &serde_json::Value) -> Vec<String> {
    body.as_array()
        .map(|items| {
            items
                .iter()
                .filter(|dto| dto.get("Email").is_some() || dto.get("FullName").is_some())
                .filter_map(|dto| dto.get("Id"))
                .map(|id| match id {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}
