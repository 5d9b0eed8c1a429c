//! [`AfterApply`]: one forwarding [`Handler`] for wrappers that add behaviour after an
//! adapter's `apply` — a test that "crashes" right after the vendor call, a benchmark that
//! timestamps applies — instead of a hand-written forwarding impl per wrapper.

use std::{future::Future, sync::Arc};

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{Event, EventKind, sync::RemoveCommand};
use vendor_http::RateLimiter;

use crate::handler::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded};

/// `inner` with `hook` run after each successful apply, before the runtime records it; all
/// else (name, kinds, client, markers, removals) is `inner`'s.
#[derive(Debug)]
pub struct AfterApply<H, F> {
    inner: H,
    hook: F,
}

impl<H, F> AfterApply<H, F> {
    /// Wraps `inner`.
    pub fn new(inner: H, hook: F) -> Self {
        AfterApply { inner, hook }
    }
}

impl<H, F, Fut> Handler for AfterApply<H, F>
where
    H: Handler,
    F: Fn(&Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    type Ids = H::Ids;
    type Client = H::Client;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn vendor(&self) -> Vendor {
        self.inner.vendor()
    }

    fn kinds(&self) -> &[EventKind] {
        self.inner.kinds()
    }

    fn client(
        &self,
        conn: &Connection,
        limiter: Arc<RateLimiter>,
    ) -> Result<H::Client, HandlerError> {
        self.inner.client(conn, limiter)
    }

    fn marks_attempts(&self) -> bool {
        self.inner.marks_attempts()
    }

    async fn apply(
        &self,
        ctx: &ApplyContext<H::Client>,
        event: &Event,
        prev: Option<&Recorded<H::Ids>>,
    ) -> Result<ApplyOutcome<H::Ids>, HandlerError> {
        let out = self.inner.apply(ctx, event, prev).await?;
        (self.hook)(event).await;
        Ok(out)
    }

    async fn remove(
        &self,
        ctx: &ApplyContext<H::Client>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<H::Ids>>,
    ) -> Result<Option<ApplyOutcome<H::Ids>>, HandlerError> {
        self.inner.remove(ctx, cmd, prev).await
    }
}
