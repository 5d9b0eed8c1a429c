//! The worker-runtime [`Handler`] for facility events: everything else (consuming, ordering,
//! revision check, retries, DLQ, metrics) is the runtime's.

use accesshub_connections::{Connection, IpassanSettings, Vendor, VendorSettings};
use accesshub_domain::{EventBody, EventKind, sync::RemoveCommand};
use vendor_http::{HttpSettings, VendorClient};
use worker_runtime::{ApplyContext, ApplyOutcome, Binding, ClientCache, Handler, HandlerError};

use crate::apply::{self, Target, VendorIds};
use crate::client::{DEFAULT_PAGE_SIZE, IpassanClient, VENDOR};

/// Worker (and durable consumer) name.
pub const WORKER: &str = "ipassan-worker";

/// Turns facility bookings into iPassan asset bookings. One client per connection is cached so
/// the OAuth token and HTTP pool survive across events.
pub struct IpassanHandler {
    clients: ClientCache<IpassanClient>,
    http: HttpSettings,
    page_size: u32,
}

impl std::fmt::Debug for IpassanHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpassanHandler")
            .field("http", &self.http)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
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
            clients: ClientCache::new(),
            http,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// The cached client of the context's connection.
    async fn client(
        &self,
        ctx: &ApplyContext,
    ) -> Result<std::sync::Arc<IpassanClient>, HandlerError> {
        let settings = settings_of(&ctx.connection)?;
        Ok(self
            .clients
            .get_or_try_init(&ctx.connection, || {
                VendorClient::new(VENDOR, self.http).map(|c| {
                    IpassanClient::new(c.with_rate_limit(ctx.rate_limiter.clone()), settings)
                        .with_page_size(self.page_size)
                })
            })
            .await?)
    }

    /// Page size of list calls (tests use small pages).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n;
        self
    }
}

/// The connection's iPassan settings, or a permanent error naming the connection.
pub fn settings_of(conn: &Connection) -> Result<&IpassanSettings, HandlerError> {
    match &conn.settings {
        VendorSettings::Ipassan(s) => Ok(s),
        other => Err(HandlerError::permanent(format!(
            "connection {}/{} is a {} connection, not iPassan",
            conn.tenant,
            conn.name,
            other.vendor()
        ))),
    }
}

impl Handler for IpassanHandler {
    fn name(&self) -> &'static str {
        WORKER
    }

    fn vendor(&self) -> Vendor {
        Vendor::Ipassan
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Facility]
    }

    async fn apply(
        &self,
        ctx: &ApplyContext,
        event: &accesshub_domain::Event,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        let EventBody::Facility(booking) = &event.body else {
            return Err(HandlerError::permanent(format!(
                "{WORKER} handles facility events, not {}",
                event.kind()
            )));
        };
        let settings = settings_of(&ctx.connection)?;
        let client = self.client(ctx).await?;
        let previous = previous_ids(binding);
        let applied = apply::apply(
            &client,
            settings,
            Target {
                tenant: &event.tenant,
                connection: &ctx.connection.name,
                reference: ctx.reference(),
            },
            booking,
            previous.as_ref(),
        )
        .await?;
        let ids = serde_json::to_value(&applied.ids)
            .map_err(|e| HandlerError::permanent(format!("encode vendor ids: {e}")))?;
        Ok(ApplyOutcome::new(applied.status, ids))
    }

    /// Removes a stray asset booking (vendor id `<asset>/<booking>`), unless it is the one
    /// the binding records or no longer carries our reference.
    async fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        let client = self.client(ctx).await?;
        let current = previous_ids(binding);
        let outcome =
            apply::remove_stray(&client, &cmd.vendor_id, &cmd.reference, current.as_ref()).await?;
        tracing::info!(vendor_id = %cmd.vendor_id, ?outcome, run = cmd.run_id, "stray handled");
        Ok(())
    }
}

/// The ids the binding recorded. A binding written by an older build or after a failure may
/// hold other JSON: then there is no previous booking to know about, and the reference lookup
/// still finds ours.
fn previous_ids(binding: Option<&Binding>) -> Option<VendorIds> {
    binding.and_then(|b| serde_json::from_value(b.vendor_ids.clone()).ok())
}
