//! The worker-runtime [`Handler`]: everything else (consuming, ordering, revision check,
//! retries, DLQ, metrics) is the runtime's.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Event, EventBody, EventKind, sync::RemoveCommand};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vendor_http::RateLimiter;
use worker_runtime::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, Status};

use crate::{
    TapkeyClient,
    apply::{self, Target},
    desired::{self, StrayVerdict, desired_grants},
};

/// Worker name (consumer, metrics, DLQ subject).
pub const NAME: &str = "tapkey-worker";

/// What the binding remembers about a pass at Tapkey.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TapkeyIds {
    /// The holder's contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// Start of the grants (kept stable across revisions when upstream gives none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// End of the grants (the pass's expiry): with the contact, how the reconciler ties a
    /// grant it finds by our contact marker to this pass when no record holds its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<DateTime<Utc>>,
    /// Lock id → grant id of the active grants.
    #[serde(default)]
    pub grants: BTreeMap<String, String>,
    /// Contacts of earlier holders whose grants may still be active: a holder change (new
    /// e-mail) under way, recorded before the new holder's first grant so that a crash
    /// cannot make us forget the old holder's access. Empty once they are revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub former_contacts: Vec<String>,
    /// Grants of an interrupted attempt that this pass found by the shape its record named
    /// ([`crate::desired::has_recorded_shape`]), kept by id while an attempt under a new shape
    /// (new expiry or holder) is under way, so a second crash cannot make us forget them.
    /// Empty once they are adopted or revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<String>,
}

/// The Tapkey adapter.
#[derive(Debug, Default)]
pub struct TapkeyHandler;

impl TapkeyHandler {
    /// The handler (stateless: the runtime caches the clients).
    pub fn new() -> Self {
        TapkeyHandler
    }
}

impl Handler for TapkeyHandler {
    type Ids = TapkeyIds;
    type Client = TapkeyClient;

    fn name(&self) -> &'static str {
        NAME
    }

    fn vendor(&self) -> Vendor {
        Vendor::Tapkey
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Pass]
    }

    /// Yes: a new pass's first attempt then skips the grants list (see `apply`).
    fn marks_attempts(&self) -> bool {
        true
    }

    fn client(
        &self,
        conn: &Connection,
        limiter: Arc<RateLimiter>,
    ) -> Result<TapkeyClient, HandlerError> {
        Ok(TapkeyClient::new(
            conn.settings.tapkey()?,
            &conn.tenant,
            limiter,
        )?)
    }

    async fn apply(
        &self,
        ctx: &ApplyContext<TapkeyClient>,
        event: &Event,
        prev: Option<&Recorded<TapkeyIds>>,
    ) -> Result<ApplyOutcome<TapkeyIds>, HandlerError> {
        let EventBody::Pass(pass) = &event.body else {
            return Err(HandlerError::permanent("tapkey-worker handles passes only"));
        };
        let settings = ctx.connection.settings.tapkey()?;
        let desired = desired_grants(settings, pass, Utc::now());
        let wants = desired.wants;
        let target = Target {
            pass,
            desired,
            occurred_at: event.occurred_at,
            connection: &ctx.connection.name,
            recorded: prev.is_some(),
            first_attempt: ctx.first_attempt,
        };
        let none = TapkeyIds::default();
        let ids = apply::apply(ctx, target, prev.map_or(&none, |p| &p.ids)).await?;
        Ok(ApplyOutcome::new(apply::status_of(pass.status, wants), ids))
    }

    /// A grant the reconciler reported as a stray (`vendor_id` is the grant id; the booking
    /// key is a pass's, or [`crate::inventory::stray_key`] for a grant of no known pass).
    /// The run may be older than the pass's latest event, so the grant is fetched again and
    /// judged against the pass's current desired state and record
    /// ([`crate::desired::judge_stray`]): kept while the pass wants it, revoked otherwise;
    /// already revoked or gone counts as done.
    async fn remove(
        &self,
        ctx: &ApplyContext<TapkeyClient>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<TapkeyIds>>,
    ) -> Result<Option<ApplyOutcome<TapkeyIds>>, HandlerError> {
        let settings = ctx.connection.settings.tapkey()?;
        let none = TapkeyIds::default();
        let ids = prev.map_or(&none, |p| &p.ids);
        let grant = ctx.client.grant(&cmd.vendor_id).await?;
        // A grant another pass records (or is recording) is that pass's to keep or revoke.
        let others = match grant.as_ref().filter(|g| g.active) {
            Some(g) => {
                let contacts = [g.contact_id.clone()];
                ctx.records_containing::<TapkeyIds>(&apply::claim_fragments(
                    std::slice::from_ref(g),
                    &contacts,
                ))
                .await?
            }
            None => Vec::new(),
        };
        let pass = match ctx.stored_body(EventKind::Pass, &cmd.booking_key).await? {
            Some(EventBody::Pass(p)) => Some(p),
            _ => None,
        };
        let desired = pass
            .as_ref()
            .map(|p| desired_grants(settings, p, Utc::now()));
        let verdict = desired::judge_stray(
            grant.as_ref(),
            desired::StrayContext {
                recorded: &ids.grants,
                recorded_contact: ids.contact_id.as_deref(),
                wanted: desired
                    .as_ref()
                    .zip(pass.as_ref())
                    .map(|(d, p)| (d, p.holder.email.as_str())),
                marked: grant
                    .as_ref()
                    .is_some_and(|g| desired::bears_our_mark(g, &cmd.tenant, settings)),
                claimed_by: grant
                    .as_ref()
                    .and_then(|g| desired::claimed_by(g, apply::other_passes(&others))),
            },
        );
        match verdict {
            StrayVerdict::Keep(why) => {
                tracing::info!(grant = %cmd.vendor_id, run = cmd.run_id, why, "stray grant kept");
                return Ok(None);
            }
            StrayVerdict::Gone => {}
            StrayVerdict::Revoke => ctx.client.revoke(&cmd.vendor_id).await?,
        }
        // The record no longer holds a grant that is revoked now.
        if !ids.grants.values().any(|id| id == &cmd.vendor_id) {
            return Ok(None);
        }
        let mut left = ids.clone();
        left.grants.retain(|_, id| id != &cmd.vendor_id);
        let status = match (&pass, &desired) {
            _ if !left.grants.is_empty() => Status::Active,
            (Some(p), Some(d)) => apply::status_of(p.status, d.wants),
            _ => Status::Removed,
        };
        Ok(Some(ApplyOutcome::new(status, left)))
    }
}
