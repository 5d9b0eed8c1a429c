//! The worker-runtime [`Handler`]: everything else (consuming, ordering, revision check,
//! retries, DLQ, metrics) is the runtime's.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Event, EventBody, EventKind, sync::RemoveCommand};
use serde::{Deserialize, Serialize};
use vendor_http::RateLimiter;
use worker_runtime::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded};

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
pub struct CloudpassHandler;

impl CloudpassHandler {
    /// The handler (stateless: the runtime caches the clients).
    pub fn new() -> Self {
        CloudpassHandler
    }
}

impl Handler for CloudpassHandler {
    type Ids = CloudpassIds;
    type Client = CloudpassClient;

    fn name(&self) -> &'static str {
        NAME
    }

    fn vendor(&self) -> Vendor {
        Vendor::Cloudpass
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Reservation]
    }

    fn client(
        &self,
        conn: &Connection,
        limiter: Arc<RateLimiter>,
    ) -> Result<CloudpassClient, HandlerError> {
        Ok(CloudpassClient::new(conn.settings.cloudpass()?, limiter)?)
    }

    async fn apply(
        &self,
        ctx: &ApplyContext<CloudpassClient>,
        event: &Event,
        prev: Option<&Recorded<CloudpassIds>>,
    ) -> Result<ApplyOutcome<CloudpassIds>, HandlerError> {
        let EventBody::Reservation(r) = &event.body else {
            return Err(HandlerError::permanent(
                "cloudpass-worker handles reservations only",
            ));
        };
        let settings = ctx.connection.settings.cloudpass()?;
        let (site, wanted) =
            desired_bookings(settings, &event.site, &ctx.reference, r).map_err(|e| match e {
                DesiredError::Unmapped(_) => HandlerError::permanent(format!(
                    "{e} in connection {:?} (administrations)",
                    ctx.connection.name
                )),
                DesiredError::Time(_) => HandlerError::permanent(e.to_string()),
            })?;
        let wants = r.status.wants_access();
        let target = Target {
            site,
            wanted,
            plates: plates(r),
            wants,
            reference_base: &ctx.reference,
        };
        let none = CloudpassIds::default();
        let prev = prev.map_or(&none, |p| &p.ids);
        let ids = apply::apply(&ctx.client, target, prev).await?;
        Ok(ApplyOutcome::new(apply::status(wants, &ids), ids))
    }

    /// A stray found by the reconciler: `vendor_id` is `<site>/<booking id>`. Deleting a
    /// booking that is already gone succeeds.
    async fn remove(
        &self,
        ctx: &ApplyContext<CloudpassClient>,
        cmd: &RemoveCommand,
        _prev: Option<&Recorded<CloudpassIds>>,
    ) -> Result<Option<ApplyOutcome<CloudpassIds>>, HandlerError> {
        let Some((site, id)) = cmd.vendor_id.split_once('/') else {
            return Err(HandlerError::permanent(format!(
                "vendor id {:?} is not <site>/<id>",
                cmd.vendor_id
            )));
        };
        ctx.client.delete(site, id).await?;
        Ok(None)
    }
}
