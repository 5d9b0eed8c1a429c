//! The worker-runtime [`Handler`]: everything else (consuming, ordering, revision check,
//! retries, DLQ, metrics) is the runtime's.

use std::collections::BTreeMap;

use accesshub_connections::{Vendor, VendorSettings};
use accesshub_domain::{Event, EventBody, EventKind, sync::RemoveCommand};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use worker_runtime::{ApplyContext, ApplyOutcome, Binding, ClientCache, Handler, HandlerError};

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
pub struct TapkeyHandler {
    clients: ClientCache<TapkeyClient>,
}

impl TapkeyHandler {
    /// A handler with an empty client cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Handler for TapkeyHandler {
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

    async fn apply(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        let EventBody::Pass(pass) = &event.body else {
            return Err(HandlerError::permanent("tapkey-worker handles passes only"));
        };
        let VendorSettings::Tapkey(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a Tapkey connection",
            ));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                TapkeyClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        let prev: TapkeyIds = binding
            .and_then(|b| serde_json::from_value(b.vendor_ids.clone()).ok())
            .unwrap_or_default();
        let desired = desired_grants(settings, pass, Utc::now());
        let wants = desired.wants;
        let target = Target {
            pass,
            desired,
            occurred_at: event.occurred_at,
            connection: &ctx.connection.name,
            recorded: binding.is_some(),
            first_attempt: ctx.first_attempt,
        };
        let ids = apply::apply(&client, target, &prev).await?;
        let ids_json = serde_json::to_value(&ids)
            .map_err(|e| HandlerError::permanent(format!("encode vendor ids: {e}")))?;
        Ok(ApplyOutcome::new(
            apply::status_of(pass.status, wants),
            ids_json,
        ))
    }

    /// A grant the reconciler found active although its pass wants no access (`vendor_id` is
    /// the grant id): revoke it; already revoked or gone counts as done.
    async fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        _binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        let VendorSettings::Tapkey(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a Tapkey connection",
            ));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                TapkeyClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        client.revoke(&cmd.vendor_id).await?;
        Ok(())
    }
}
