//! The worker-runtime [`Handler`]: everything else (consuming, ordering, revision check,
//! retries, DLQ, metrics) is the runtime's.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Event, EventBody, EventKind, sync::RemoveCommand};
use serde::{Deserialize, Serialize};
use vendor_http::RateLimiter;
use worker_runtime::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, Status};

use crate::{
    CloudpassClient,
    apply::{self, Clients, Target, keeper, same_account},
    client::BookingFields,
    desired::{DesiredError, desired_bookings, plates},
};

/// Worker name (consumer, metrics, DLQ subject).
pub const NAME: &str = "cloudpass-worker";

/// What the binding remembers: where the bookings live (site and connection), the booking id
/// per plate, and the plates an attempt may have created without recording their id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudpassIds {
    /// CloudPass site the bookings live at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// Name of the connection the bookings were created through: after the administration
    /// moves to another connection they are deleted through this one (`None`: records of
    /// older builds, taken as the current connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Normalized plate → booking id.
    #[serde(default)]
    pub bookings: BTreeMap<String, String>,
    /// Plates whose create may have reached CloudPass without its id being recorded: written
    /// before the calls, so an attempt after a crash looks them up by reference.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pending: BTreeSet<String>,
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
        let none = CloudpassIds::default();
        let prev = prev.map_or(&none, |p| &p.ids);
        let (site, wanted) = match desired_bookings(
            settings,
            &event.site,
            &ctx.reference,
            r,
            event.occurred_at,
        ) {
            Ok(d) => d,
            // An administration left unmapped has access control off: nothing to do
            // unless bookings of ours are recorded for the reservation.
            Err(DesiredError::Unmapped(_)) if holds_nothing(prev) => {
                return Ok(ApplyOutcome::new(Status::Ignored, CloudpassIds::default()));
            }
            Err(e @ DesiredError::Unmapped(_)) => {
                return Err(HandlerError::permanent(format!(
                    "{e} in connection {:?} (administrations), and the reservation's vehicle bookings are recorded there: map it again, or cancel them",
                    ctx.connection.name
                )));
            }
            Err(e @ DesiredError::Time(_)) => return Err(HandlerError::permanent(e.to_string())),
        };
        // A guest checked out early keeps the short grace `desired_bookings` computed.
        let grace = !r.status.wants_access() && !wanted.is_empty();
        let wants = r.status.wants_access() || grace;
        let target = Target {
            site,
            connection: &ctx.connection.name,
            wanted,
            plates: plates(r),
            listed: r
                .license_plates
                .iter()
                .map(|p| crate::normalize_plate(p))
                .collect(),
            wants,
            reference_base: &ctx.reference,
            reapply_time_restriction: settings.reapply_time_restriction,
        };
        // Bookings recorded under another connection are deleted through that one.
        let other = match prev.connection.as_deref() {
            Some(name) if name != ctx.connection.name => Some(ctx.connection_named(name).await?),
            _ => None,
        };
        let clients = Clients {
            current: &ctx.client,
            recorded: match &other {
                Some(peer) => peer.as_ref().map(|p| p.client.as_ref()),
                None => Some(&ctx.client),
            },
        };
        // The grace ends by itself at CloudPass (`valid_until`): nothing lasting is held.
        let settled = move |ids: &CloudpassIds| {
            if grace {
                Status::CheckedOut
            } else {
                apply::status(wants, ids)
            }
        };
        let record = |ids: CloudpassIds| async move {
            let status = if ids.pending.is_empty() {
                settled(&ids)
            } else {
                Status::InFlight
            };
            ctx.record_progress(status, &ids).await
        };
        let ids = apply::apply(clients, target, prev, record).await?;
        Ok(ApplyOutcome::new(settled(&ids), ids))
    }

    /// A stray found by the reconciler: `vendor_id` is `<site>/<booking id>`. Re-checked here,
    /// because the reconciler's view may be stale by the time the command arrives (a newer
    /// event may have re-adopted the booking): a booking is deleted unless the reservation's
    /// current desired state wants its reference at this place, and, when it does, only a
    /// duplicate is deleted — the copy kept is [`keeper`]'s: the first exact one (the one the
    /// reconciler keeps), else the one the binding records, else the oldest (whichever copy
    /// the command names, the others go, so the reference ends with one).
    /// Deleting one that is already gone, or no longer carries our reference, does nothing.
    async fn remove(
        &self,
        ctx: &ApplyContext<CloudpassClient>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<CloudpassIds>>,
    ) -> Result<Option<ApplyOutcome<CloudpassIds>>, HandlerError> {
        let Some((site, id)) = cmd.vendor_id.split_once('/') else {
            return Err(HandlerError::permanent(format!(
                "vendor id {:?} is not <site>/<id>",
                cmd.vendor_id
            )));
        };
        let copies = ctx.client.find_all(site, &cmd.reference).await?;
        if !copies.iter().any(|b| b.id == id) {
            return Ok(None);
        }
        let doomed: Vec<&str> = match wanted_fields(ctx, cmd, site).await? {
            None => vec![id],
            Some((fields, reapply)) => {
                let plate = &fields.license_plate;
                let recorded = prev
                    .map(|p| &p.ids)
                    .filter(|ids| {
                        ids.site_id.as_deref() == Some(site)
                            && ids
                                .connection
                                .as_deref()
                                .is_none_or(|c| c == ctx.connection.name)
                    })
                    .and_then(|ids| ids.bookings.get(plate))
                    .map(String::as_str);
                let keep = keeper(&copies, Some((&fields, reapply)), recorded);
                copies
                    .iter()
                    .map(|b| b.id.as_str())
                    .filter(|b| Some(*b) != keep)
                    .collect()
            }
        };
        for doomed in doomed {
            ctx.client.delete(site, doomed).await?;
        }
        Ok(None)
    }
}

/// Whether the record holds no booking of ours (nor one an attempt may have created).
fn holds_nothing(ids: &CloudpassIds) -> bool {
    ids.bookings.is_empty() && ids.pending.is_empty()
}

/// The booking the reservation's current desired state wants under `reference` at `site` of
/// this connection's account, if any, with its connection's re-apply choice (what an exact
/// copy is judged by): the stored booking, served by its current connection (another one
/// counts only if it reaches the same account), mapped to this CloudPass site.
async fn wanted_fields(
    ctx: &ApplyContext<CloudpassClient>,
    cmd: &RemoveCommand,
    site: &str,
) -> Result<Option<(BookingFields, bool)>, HandlerError> {
    // The stored state carries no change time here: judged as of now, which keeps a
    // checked-out guest's grace booking until it has ended at CloudPass anyway.
    let Some((admin, EventBody::Reservation(r))) = ctx
        .stored_booking(EventKind::Reservation, &cmd.booking_key)
        .await?
    else {
        return Ok(None);
    };
    let Some(owner) = ctx.connection_for_site(&admin).await? else {
        return Ok(None);
    };
    if !same_account(&owner.connection, &ctx.connection) {
        return Ok(None);
    }
    let settings = owner.connection.settings.cloudpass()?;
    match desired_bookings(settings, &admin, &ctx.reference, &r, chrono::Utc::now()) {
        Ok((cp_site, wanted)) if cp_site == site => Ok(wanted
            .into_iter()
            .find(|f| f.reference == cmd.reference)
            .map(|f| (f, settings.reapply_time_restriction))),
        Ok(_) | Err(DesiredError::Unmapped(_)) => Ok(None),
        Err(e @ DesiredError::Time(_)) => Err(HandlerError::permanent(format!(
            "cannot judge the stray: {e}"
        ))),
    }
}
