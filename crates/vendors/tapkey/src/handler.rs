//! The worker-runtime [`Handler`]: everything else (consuming, ordering, revision check,
//! retries, DLQ, metrics) is the runtime's.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Event, EventBody, EventKind, sync::RemoveCommand};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vendor_http::RateLimiter;
use worker_runtime::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded};

use crate::{
    TapkeyClient,
    apply::{self, Target},
    desired::desired_grants,
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
    /// Lock id → grant id of the active grants.
    #[serde(default)]
    pub grants: BTreeMap<String, String>,
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
        Ok(TapkeyClient::new(conn.settings.tapkey()?, limiter)?)
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
        let ids = apply::apply(&ctx.client, target, prev.map_or(&none, |p| &p.ids)).await?;
        Ok(ApplyOutcome::new(apply::status_of(pass.status, wants), ids))
    }

    /// A grant the reconciler found active although its pass wants no access (`vendor_id` is
    /// the grant id): revoke it; already revoked or gone counts as done.
    async fn remove(
        &self,
        ctx: &ApplyContext<TapkeyClient>,
        cmd: &RemoveCommand,
        _prev: Option<&Recorded<TapkeyIds>>,
    ) -> Result<Option<ApplyOutcome<TapkeyIds>>, HandlerError> {
        ctx.client.revoke(&cmd.vendor_id).await?;
        Ok(None)
    }
}
