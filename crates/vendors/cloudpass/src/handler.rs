//! The worker-runtime [`Handler`]: everything else (consuming, ordering, revision check,
//! retries, DLQ, metrics) is the runtime's.

use std::collections::BTreeMap;

use accesshub_connections::{Vendor, VendorSettings};
use accesshub_domain::{Event, EventBody, EventKind, sync::RemoveCommand};
use serde::{Deserialize, Serialize};
use worker_runtime::{ApplyContext, ApplyOutcome, Binding, ClientCache, Handler, HandlerError};

use crate::{
    CloudpassClient,
    apply::{self, Target},
    desired::{DesiredError, desired_bookings, plates},
};

/// Worker name (consumer, metrics, DLQ subject).
pub const NAME: &str = "cloudpass-worker";

/// What the binding remembers: the site and the booking id per plate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudpassIds {
    /// CloudPass site the bookings live at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// Normalized plate → booking id.
    #[serde(default)]
    pub bookings: BTreeMap<String, String>,
}

/// The CloudPass adapter.
#[derive(Debug, Default)]
pub struct CloudpassHandler {
    clients: ClientCache<CloudpassClient>,
}

impl CloudpassHandler {
    /// A handler with an empty client cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Handler for CloudpassHandler {
    fn name(&self) -> &'static str {
        NAME
    }

    fn vendor(&self) -> Vendor {
        Vendor::Cloudpass
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Reservation]
    }

    async fn apply(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        let EventBody::Reservation(r) = &event.body else {
            return Err(HandlerError::permanent(
                "cloudpass-worker handles reservations only",
            ));
        };
        let VendorSettings::Cloudpass(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a CloudPass connection",
            ));
        };
        let (site, wanted) =
            desired_bookings(settings, &event.site, &ctx.reference, r).map_err(|e| match e {
                DesiredError::Unmapped(_) => HandlerError::permanent(format!(
                    "{e} in connection {:?} (administrations)",
                    ctx.connection.name
                )),
                DesiredError::Time(_) => HandlerError::permanent(e.to_string()),
            })?;
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                CloudpassClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        let prev: CloudpassIds = binding
            .and_then(|b| serde_json::from_value(b.vendor_ids.clone()).ok())
            .unwrap_or_default();
        let wants = r.status.wants_access();
        let target = Target {
            site,
            wanted,
            plates: plates(r),
            wants,
            reference_base: &ctx.reference,
        };
        let ids = apply::apply(&client, target, &prev).await?;
        let ids_json = serde_json::to_value(&ids)
            .map_err(|e| HandlerError::permanent(format!("encode vendor ids: {e}")))?;
        Ok(ApplyOutcome::new(apply::status(wants, &ids), ids_json))
    }

    /// A stray found by the reconciler: `vendor_id` is `<site>/<booking id>`. Deleting a
    /// booking that is already gone succeeds.
    async fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        _binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        let VendorSettings::Cloudpass(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a CloudPass connection",
            ));
        };
        let Some((site, id)) = cmd.vendor_id.split_once('/') else {
            return Err(HandlerError::permanent(format!(
                "vendor id {:?} is not <site>/<id>",
                cmd.vendor_id
            )));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                CloudpassClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        client.delete(site, id).await?;
        Ok(())
    }
}
