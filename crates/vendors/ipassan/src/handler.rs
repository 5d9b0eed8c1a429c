//! The worker-runtime [`Handler`] for facility events: everything else (consuming, ordering,
//! revision check, retries, DLQ, metrics) is the runtime's.

use std::sync::Arc;

use accesshub_connections::{Connection, IpassanSettings, Vendor};
use accesshub_domain::{EventBody, EventKind, sync::RemoveCommand};
use vendor_http::{HttpSettings, RateLimiter, VendorClient};
use worker_runtime::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, Status};

use crate::apply::{self, Known, Target, VendorIds};
use crate::client::{DEFAULT_PAGE_SIZE, IpassanClient, VENDOR};
use crate::desired::{self, Wanted};

/// Worker (and durable consumer) name.
pub const WORKER: &str = "ipassan-worker";

/// Turns facility bookings into iPassan asset bookings.
pub struct IpassanHandler {
    http: HttpSettings,
    page_size: u32,
}

impl std::fmt::Debug for IpassanHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpassanHandler")
            .field("http", &self.http)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Default for IpassanHandler {
    fn default() -> Self {
        Self::new(HttpSettings::default())
    }
}

impl IpassanHandler {
    /// A handler whose vendor calls use `http` timeouts.
    pub fn new(http: HttpSettings) -> Self {
        IpassanHandler {
            http,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Page size of list calls (tests use small pages).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n;
        self
    }
}

/// The connection's iPassan settings, or a permanent error naming the connection.
pub fn settings_of(conn: &Connection) -> Result<&IpassanSettings, HandlerError> {
    conn.settings.ipassan().map_err(|e| {
        HandlerError::permanent(format!("connection {}/{}: {e}", conn.tenant, conn.name))
    })
}

impl Handler for IpassanHandler {
    type Ids = VendorIds;
    type Client = IpassanClient;

    fn name(&self) -> &'static str {
        WORKER
    }

    fn vendor(&self) -> Vendor {
        Vendor::Ipassan
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Facility]
    }

    /// A booking's first attempt then looks for no earlier asset booking at all: one list
    /// call less per new booking for one small row (`vendor_attempts`).
    fn marks_attempts(&self) -> bool {
        true
    }

    fn client(
        &self,
        conn: &Connection,
        limiter: Arc<RateLimiter>,
    ) -> Result<IpassanClient, HandlerError> {
        let settings = settings_of(conn)?;
        let http = VendorClient::new(VENDOR, self.http)?.with_rate_limit(limiter);
        Ok(IpassanClient::new(http, settings).with_page_size(self.page_size))
    }

    async fn apply(
        &self,
        ctx: &ApplyContext<IpassanClient>,
        event: &accesshub_domain::Event,
        prev: Option<&Recorded<VendorIds>>,
    ) -> Result<ApplyOutcome<VendorIds>, HandlerError> {
        let EventBody::Facility(booking) = &event.body else {
            return Err(HandlerError::permanent(format!(
                "{WORKER} handles facility events, not {}",
                event.kind()
            )));
        };
        let settings = settings_of(&ctx.connection)?;
        // A create's asset is recorded before the create: an attempt that dies before its
        // final record leaves a trace the next one searches (instead of every mapped asset).
        let record =
            |ids: VendorIds| async move { ctx.record_progress(Status::InFlight, &ids).await };
        let applied = apply::apply(
            &ctx.client,
            settings,
            Target {
                tenant: &event.tenant,
                connection: &ctx.connection.name,
                reference: ctx.reference(),
            },
            booking,
            Known {
                previous: previous_ids(prev),
                first_attempt: ctx.first_attempt,
            },
            record,
        )
        .await?;
        Ok(ApplyOutcome::new(applied.status, applied.ids))
    }

    /// Removes a stray asset booking (vendor id `<asset>/<booking>`), judged against the
    /// booking's current desired state (stored booking, served by this connection's account):
    /// not wanted → the named copy goes; wanted → its copies are reduced to one, which the
    /// binding then records (see [`apply::remove_stray`]).
    async fn remove(
        &self,
        ctx: &ApplyContext<IpassanClient>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<VendorIds>>,
    ) -> Result<Option<ApplyOutcome<VendorIds>>, HandlerError> {
        // An offboarding connection wants nothing: `stored_booking` answers none.
        let wanted = wanted_here(ctx, cmd).await?;
        let current = previous_ids(prev);
        let removal = apply::remove_stray(
            &ctx.client,
            &cmd.vendor_id,
            &cmd.reference,
            wanted.as_ref(),
            current,
        )
        .await?;
        tracing::info!(
            vendor_id = %cmd.vendor_id,
            outcome = ?removal.outcome,
            deleted = removal.deleted,
            run = cmd.run_id,
            "stray handled"
        );
        Ok(removal
            .record(current)
            .map(|ids| ApplyOutcome::new(Status::Booked, ids)))
    }
}

/// What the booking's current desired state wants of this connection: the stored booking,
/// served by its current connection (another one counts only if it reaches the same iPassan
/// account and site), mapped to an asset. `None`: nothing here.
async fn wanted_here(
    ctx: &ApplyContext<IpassanClient>,
    cmd: &RemoveCommand,
) -> Result<Option<Wanted>, HandlerError> {
    let Some((site, EventBody::Facility(f))) = ctx
        .stored_booking(EventKind::Facility, &cmd.booking_key)
        .await?
    else {
        return Ok(None);
    };
    let Some(owner) = ctx.connection_for_site(&site).await? else {
        return Ok(None);
    };
    if !same_account(&owner.connection, &ctx.connection) {
        return Ok(None);
    }
    let settings = settings_of(&owner.connection)?;
    Ok(desired::wanted(
        settings,
        &owner.connection.tenant,
        &owner.connection.name,
        &f,
    ))
}

/// Whether two connections reach the same iPassan site through the same API client: only
/// then is a booking listed under one also the other's.
pub fn same_account(a: &Connection, b: &Connection) -> bool {
    if a.tenant == b.tenant && a.name == b.name {
        return true;
    }
    match (a.settings.ipassan(), b.settings.ipassan()) {
        (Ok(x), Ok(y)) => {
            x.base_url.trim_end_matches('/') == y.base_url.trim_end_matches('/')
                && x.client_id == y.client_id
                && x.site_guid.eq_ignore_ascii_case(&y.site_guid)
        }
        _ => false,
    }
}

/// The ids the binding recorded. A record written by an older build or after a failure may
/// hold nothing: then there is no previous booking to know about, and the reference lookup
/// (of every mapped asset, the record being untracked) still finds ours.
fn previous_ids(prev: Option<&Recorded<VendorIds>>) -> Option<&VendorIds> {
    prev.map(|p| &p.ids)
}
