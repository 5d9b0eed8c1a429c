//! One message: decode, revision check under the booking's lock, the handler's apply (or a
//! reconciler's removal), the binding record and double ack — or the error policy (NAK with
//! delay, or DLQ + Term).

use std::{sync::Arc, time::Instant};

use accesshub_domain::{
    ErrorClass, Event, EventKind,
    sync::{self, RemoveCommand, SyncAction},
};
use async_nats::jetstream::{self, AckKind};
use tracing::{Instrument as _, Span};

use super::{Shared, limiter, progress::with_progress};
use crate::{
    bindings::{self, BindingKey},
    breaker::Signal,
    dlq,
    handler::{ApplyContext, Binding, Handler, HandlerError, Recorded, reference},
    metrics::Outcome,
    policy::Decision,
    services::Services,
    store::{Committed, Held, Record},
};

pub(super) async fn process<H: Handler>(s: &Arc<Shared<H>>, msg: jetstream::Message) {
    let info = msg.info().ok().map(|i| {
        (
            u64::try_from(i.delivered).unwrap_or(1),
            i.stream_sequence,
            i.stream.to_owned(),
        )
    });
    let (delivered, seq, stream) = match info {
        Some((d, seq, st)) => (d.max(1), Some(seq), st),
        None => (1, None, s.stream_name.clone()),
    };
    let subject = s.bus.ns.strip(msg.message.subject.as_str()).to_owned();
    let span = tracing::info_span!(
        "worker.message",
        otel.kind = "consumer",
        worker = s.handler.name(),
        subject = %subject,
        delivered,
        event_id = tracing::field::Empty,
        revision = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if let Some(h) = &msg.message.headers {
        accesshub_telemetry::propagation::set_parent(&span, accesshub_telemetry::extract_nats(h));
    }
    let m = Msg {
        msg: &msg,
        subject: &subject,
        delivered,
        seq,
        stream,
    };
    // One progress timer for the whole message (lock wait, vendor call, record, DLQ copy):
    // a slow step must not let ack_wait expire and the message be redelivered meanwhile.
    // Boxed: the handling future embeds the handler's vendor calls (tens of KB); by value it
    // was copied whole at each wrapper and await — memcpy was ~15 % of the worker's
    // instructions (callgrind of worker-bench).
    let outcome = with_progress(&msg, s.cfg.progress_interval, Box::pin(handle(s, &m)))
        .instrument(span.clone())
        .await;
    span.record("outcome", outcome.as_str());
    s.metrics.outcome(outcome);
}

/// The booking a message is about: its binding key and vendor reference derive from it.
struct Booking<'a> {
    tenant: &'a str,
    kind: EventKind,
    key: &'a str,
}

impl<'a> Booking<'a> {
    fn of(event: &'a Event) -> Self {
        Booking {
            tenant: &event.tenant,
            kind: event.kind(),
            key: &event.booking_key,
        }
    }

    /// This worker's binding key of the booking.
    fn binding_key<H: Handler>(&self, s: &Shared<H>) -> BindingKey {
        BindingKey {
            tenant: self.tenant.to_owned(),
            vendor: s.handler.vendor().as_str().to_owned(),
            kind: self.kind.as_str().to_owned(),
            booking_key: self.key.to_owned(),
        }
    }
}

/// What the handler gets for one attempt on `booking` through `conn`: the connection's
/// client (built once per connection version) and the runtime's services.
async fn apply_context<H: Handler>(
    s: &Arc<Shared<H>>,
    m: &Msg<'_>,
    conn: Arc<accesshub_connections::Connection>,
    booking: &Booking<'_>,
    binding: Option<&Binding>,
    first_attempt: bool,
    fence: crate::store::Fence,
) -> Result<ApplyContext<H::Client>, HandlerError> {
    let wants_access = !s
        .cfg
        .connections
        .offboarding(booking.tenant, s.handler.vendor(), &conn.name)
        .await?;
    let client = s
        .clients
        .get_or_try_init(&conn, || s.handler.client(&conn, limiter(s, &conn)))
        .await?;
    Ok(ApplyContext {
        worker: s.handler.name(),
        reference: reference(booking.tenant, booking.kind, booking.key),
        client,
        connection: conn,
        attempt: m.delivered,
        last_attempt: i64::try_from(m.delivered).unwrap_or(i64::MAX) >= s.cfg.max_deliver,
        first_attempt,
        wants_access,
        services: Services {
            handles: s.handles.clone(),
            recorded_revision: binding.map_or(0, |b| b.applied_revision),
            ids_version: H::IDS_VERSION,
            trace_id: trace_id(m.msg),
        },
        key: booking.binding_key(s),
        peers: s.clone(),
        fence,
    })
}

/// A context's view of the tenant's other connections: resolved like an event's (the
/// connection source), clients from the same cache.
impl<H: Handler> crate::services::Peers<H::Client> for Shared<H> {
    fn for_site<'a>(
        &'a self,
        tenant: &'a str,
        site: &'a str,
    ) -> crate::BoxFuture<'a, Result<Option<crate::Peer<H::Client>>, HandlerError>> {
        let vendor = self.handler.vendor();
        Box::pin(self.peer(self.cfg.connections.for_site(tenant, vendor, site)))
    }

    fn by_name<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
    ) -> crate::BoxFuture<'a, Result<Option<crate::Peer<H::Client>>, HandlerError>> {
        let vendor = self.handler.vendor();
        Box::pin(self.peer(self.cfg.connections.by_name(tenant, vendor, name)))
    }
}

impl<H: Handler> Shared<H> {
    /// The connection `found` resolves to, with its cached client.
    async fn peer(
        &self,
        found: crate::BoxFuture<
            '_,
            Result<Option<accesshub_connections::Connection>, crate::SourceError>,
        >,
    ) -> Result<Option<crate::Peer<H::Client>>, HandlerError> {
        let Some(conn) = found.await? else {
            return Ok(None);
        };
        let client = self
            .clients
            .get_or_try_init(&conn, || self.handler.client(&conn, limiter(self, &conn)))
            .await?;
        Ok(Some(crate::Peer {
            connection: Arc::new(conn),
            client,
        }))
    }
}

/// The handler's view of the booking's record.
fn recorded<H: Handler>(binding: Option<&Binding>) -> Option<Recorded<H::Ids>> {
    binding.map(|b| Recorded::from_binding(b, H::IDS_VERSION))
}

/// The binding record of a handler's outcome, with the trace of the message that applied it.
fn record_of<H: Handler>(
    m: &Msg<'_>,
    key: BindingKey,
    revision: i64,
    event_id: Option<uuid::Uuid>,
    outcome: &crate::handler::ApplyOutcome<H::Ids>,
) -> Result<Record, HandlerError> {
    Ok(Record {
        key,
        revision,
        event_id,
        vendor_ids: serde_json::to_value(&outcome.ids)
            .map_err(|e| HandlerError::permanent(format!("encode vendor ids: {e}")))?,
        ids_version: H::IDS_VERSION,
        status: outcome.status.as_str().to_owned(),
        trace_id: trace_id(m.msg),
    })
}

struct Msg<'a> {
    msg: &'a jetstream::Message,
    subject: &'a str,
    delivered: u64,
    seq: Option<u64>,
    stream: String,
}

fn header<'m>(msg: &'m jetstream::Message, name: &str) -> Option<&'m str> {
    msg.message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

async fn handle<H: Handler>(s: &Arc<Shared<H>>, m: &Msg<'_>) -> Outcome {
    // Repair commands only count as such when they come from the SYNC stream.
    let from_sync = m.stream == s.sync_stream_name;
    if from_sync && header(m.msg, sync::HEADER_ACTION) == Some(SyncAction::Remove.as_str()) {
        return handle_remove(s, m).await;
    }
    // The reconciler found the vendor out of step with the revision already applied: apply
    // again even though the revision equals the binding's (never an older one).
    let force = from_sync && header(m.msg, sync::HEADER_FORCE) == Some("true");
    let event: Event = match serde_json::from_slice(&m.msg.message.payload) {
        Ok(e) => e,
        Err(e) => {
            let err = HandlerError::permanent(format!("payload is not a valid event: {e}"));
            return fail(s, m, None, err).await;
        }
    };
    let span = Span::current();
    span.record("event_id", tracing::field::display(event.id));
    span.record("revision", event.revision);
    if !s.handler.kinds().contains(&event.kind()) {
        ack(m.msg).await;
        return Outcome::Skipped;
    }
    let vendor = s.handler.vendor();
    let conn = match s
        .cfg
        .connections
        .for_site(&event.tenant, vendor, &event.site)
        .await
    {
        Ok(Some(c)) => Arc::new(c),
        Ok(None) => {
            match s.cfg.connections.uses_vendor(&event.tenant, vendor).await {
                Ok(false) => {
                    // An ending must not vanish while access it should end is recorded as
                    // held (the connection was deleted with its access kept, say).
                    if event.ends_access() {
                        let key = Booking::of(&event).binding_key(s);
                        match holds_access(s, &key).await {
                            Ok(true) => {
                                let err = HandlerError::permanent(format!(
                                    "no {vendor} connection serves site {:?} of tenant {:?}: the access recorded for booking {:?} could not be removed",
                                    event.site, event.tenant, event.booking_key
                                ));
                                return fail(s, m, Some(&event), err).await;
                            }
                            Ok(false) => {}
                            Err(err) => return fail(s, m, Some(&event), err).await,
                        }
                    }
                    tracing::debug!(tenant = %event.tenant, "tenant has no connection to this vendor; skipped");
                    ack(m.msg).await;
                    return Outcome::Skipped;
                }
                Ok(true) => {}
                Err(e) => return fail(s, m, Some(&event), e.into()).await,
            }
            // Install per administration: a site no enabled connection serves has access
            // control off. Nothing recorded as held there → a counted skip, not a dead letter.
            let key = Booking::of(&event).binding_key(s);
            match holds_access(s, &key).await {
                Ok(false) => {
                    s.metrics.ignored("site_not_served");
                    tracing::debug!(tenant = %event.tenant, site = %event.site, "no enabled connection serves the site; ignored");
                    ack(m.msg).await;
                    return Outcome::Skipped;
                }
                Ok(true) => {}
                Err(err) => return fail(s, m, Some(&event), err).await,
            }
            let err = HandlerError::permanent(format!(
                "no enabled {vendor} connection for tenant {:?} serving site {:?}, and access is recorded as held for booking {:?}: re-enable or re-activate the site, or offboard it (accessctl connections)",
                event.tenant, event.site, event.booking_key
            ));
            return fail(s, m, Some(&event), err).await;
        }
        Err(e) => return fail(s, m, Some(&event), e.into()).await,
    };
    let wants_access = match s
        .cfg
        .connections
        .offboarding(&event.tenant, vendor, &conn.name)
        .await
    {
        Ok(offboarding) => !offboarding,
        Err(e) => return fail(s, m, Some(&event), e.into()).await,
    };
    // An offboarding connection wants nothing: the event is applied as its ending.
    let event = if wants_access || event.ends_access() {
        event
    } else {
        match ending_of(&event) {
            Some(ended) => ended,
            None => {
                let err = HandlerError::permanent(format!(
                    "{vendor} connection {:?} of tenant {:?} is being offboarded: it issues no keys",
                    conn.name, event.tenant
                ));
                return fail(s, m, Some(&event), err).await;
            }
        }
    };
    let booking = Booking::of(&event);
    let conn_name = conn.name.clone();
    let parked = ParkAs {
        tenant: &event.tenant,
        connection: &conn_name,
        kind: event.kind().as_str(),
        booking_key: &event.booking_key,
        vendor_id: None,
        revision: event.revision,
        ends_access: event.ends_access(),
        action: SyncAction::Apply,
        force,
    };
    if !s.breakers.admits(&event.tenant, &conn_name, is_probe(s, m)) {
        return park(s, m, &parked, Some(&event), "circuit breaker open").await;
    }
    let key = booking.binding_key(s);
    let asked = Instant::now();
    let mark = s.handler.marks_attempts();
    let locked = s.store.lock(&key, mark).await;
    s.metrics.binding_step("lock", asked.elapsed());
    let Held {
        guard,
        binding,
        first_attempt,
    } = match locked {
        Ok(l) => l,
        Err(e) => return fail(s, m, Some(&event), e.context("binding")).await,
    };
    if let Some(b) = &binding
        && (b.applied_revision > event.revision
            || (b.applied_revision == event.revision && !force && !ends_held_access(b, &event)))
    {
        drop(guard);
        tracing::debug!(
            applied = b.applied_revision,
            "stale or duplicate revision; skipped"
        );
        ack(m.msg).await;
        return Outcome::Skipped;
    }
    // The marker proves no earlier attempt of this booking; a redelivery is never first
    // (belt and braces for attempts made before markers existed).
    let first_attempt = first_attempt && m.delivered == 1;
    let fence = guard.fence();
    let ctx =
        match apply_context(s, m, conn, &booking, binding.as_ref(), first_attempt, fence).await {
            Ok(c) => c,
            Err(e) => {
                drop(guard);
                return fail(s, m, Some(&event), e).await;
            }
        };
    // The fence: no vendor call unless the lock's session is alive now (not merely not yet
    // known to be broken).
    if let Err(e) = ctx.ensure_held().await {
        drop(guard);
        return fail(s, m, Some(&event), e).await;
    }
    let started = Instant::now();
    let prev = recorded::<H>(binding.as_ref());
    let result = s.handler.apply(&ctx, &event, prev.as_ref()).await;
    let result = breaker_outcome(s, result, &parked);
    match result {
        Ok(outcome) => {
            if !guard.still_held() {
                // The lock's session broke during the call: another replica may be on this
                // booking. Do not record; the redelivery re-checks the revision.
                drop(guard);
                let err = HandlerError::transient("lost the booking lock during the vendor call");
                return fail(s, m, Some(&event), err).await;
            }
            if outcome.status == crate::handler::Status::Ignored {
                s.metrics.ignored("unmapped");
            }
            let rec = match record_of::<H>(m, key.clone(), event.revision, Some(event.id), &outcome)
            {
                Ok(r) => r,
                Err(e) => {
                    drop(guard);
                    return fail(s, m, Some(&event), e).await;
                }
            };
            let asked = Instant::now();
            let saved = s.store.commit(rec).await;
            s.metrics.binding_step("commit", asked.elapsed());
            drop(guard);
            match saved {
                Ok(Committed::Recorded) => {}
                Ok(Committed::Superseded) => {
                    // Only possible after a lost lock: a newer revision was recorded meanwhile.
                    let err = HandlerError::transient(
                        "a newer revision was recorded by another worker during the vendor call",
                    );
                    return fail(s, m, Some(&event), err).await;
                }
                // The vendor already matches; the retry re-applies idempotently.
                Err(e) => return fail(s, m, Some(&event), e).await,
            }
            if let Err(e) = m.msg.double_ack().await {
                // Redelivery will be skipped by the revision check.
                tracing::warn!(error = %e, "ack not confirmed");
            }
            tracing::debug!(took_ms = started.elapsed().as_millis() as u64, status = %outcome.status, "applied");
            Outcome::Applied
        }
        Err(err) => {
            drop(guard);
            if err.class == ErrorClass::Transient
                && !s.breakers.admits(&event.tenant, &conn_name, false)
            {
                return park(s, m, &parked, Some(&event), &err.message).await;
            }
            fail(s, m, Some(&event), err).await
        }
    }
}

/// How a message is parked while its connection's breaker is open.
struct ParkAs<'a> {
    tenant: &'a str,
    connection: &'a str,
    kind: &'a str,
    booking_key: &'a str,
    /// Reconciler removals: the stray object (one parked row per object).
    vendor_id: Option<&'a str>,
    revision: i64,
    ends_access: bool,
    action: SyncAction,
    force: bool,
}

/// Whether the message is a half-open breaker's probe (a parked message published again on
/// this worker's repair feed).
fn is_probe<H: Handler>(s: &Shared<H>, m: &Msg<'_>) -> bool {
    m.stream == s.sync_stream_name && header(m.msg, crate::parking::HEADER_PROBE) == Some("true")
}

/// Tells the connection's breaker how the vendor call went; passes the result on.
fn breaker_outcome<H: Handler, T>(
    s: &Shared<H>,
    result: Result<T, HandlerError>,
    p: &ParkAs<'_>,
) -> Result<T, HandlerError> {
    let signal = match &result {
        Ok(_) => Signal::Success,
        Err(e) if e.class == ErrorClass::Transient => Signal::Transient,
        Err(_) => Signal::Permanent,
    };
    s.breakers.record(p.tenant, p.connection, signal);
    result
}

/// Parks the message in Postgres and acknowledges it (the breaker is open: no delivery is
/// burned). If it cannot be parked, the error policy takes it as a transient failure.
async fn park<H: Handler>(
    s: &Shared<H>,
    m: &Msg<'_>,
    p: &ParkAs<'_>,
    event: Option<&Event>,
    reason: &str,
) -> Outcome {
    let vendor = s.handler.vendor();
    let row = crate::parking::Parked {
        vendor: vendor.as_str(),
        tenant: p.tenant,
        connection: p.connection,
        park_key: match p.vendor_id {
            None => format!("{}/{}", p.kind, p.booking_key),
            Some(id) => format!("remove/{}/{}/{id}", p.kind, p.booking_key),
        },
        booking_key: p.booking_key,
        revision: p.revision,
        ends_access: p.ends_access,
        action: p.action,
        force: p.force,
        payload: &m.msg.message.payload,
        reason,
    };
    match crate::parking::park(&s.pool, &row).await {
        Ok(()) => {
            tracing::info!(
                tenant = p.tenant,
                connection = p.connection,
                reason,
                "parked: the connection's circuit breaker is open"
            );
            ack(m.msg).await;
            Outcome::Parked
        }
        Err(e) => {
            let err = HandlerError::from(e);
            fail(s, m, event, err).await
        }
    }
}

/// Deletions and cancellations win ties: an event that ends access is applied even at the
/// revision already applied (an upstream's delete need not bump its last-change time), unless
/// the record says the vendor holds nothing for the booking. A reactivation still needs a
/// strictly newer revision.
fn ends_held_access(b: &Binding, event: &Event) -> bool {
    event.ends_access() && !holds_nothing(b)
}

/// Whether the booking's binding records access held at the vendor (no binding: none).
async fn holds_access<H: Handler>(
    s: &Arc<Shared<H>>,
    key: &BindingKey,
) -> Result<bool, HandlerError> {
    match bindings::get_binding(&s.pool, key).await {
        Ok(b) => Ok(b.as_ref().is_some_and(|b| !holds_nothing(b))),
        Err(e) => Err(HandlerError {
            class: accesshub_store::db_error_class(&e),
            message: format!("database (binding): {e}"),
            retry_after: None,
        }),
    }
}

/// Whether the binding records that the vendor holds nothing for the booking (an unknown
/// status counts as holding something).
fn holds_nothing(b: &Binding) -> bool {
    crate::handler::Status::parse(&b.status).is_some_and(crate::handler::Status::holds_nothing)
}

/// The same state, ended: what a booking of an offboarding connection is applied as (it
/// wants no access). `None` for key requests, which have no ending: nothing is issued.
fn ending_of(event: &Event) -> Option<Event> {
    use accesshub_domain::{EventBody, FacilityStatus, PassStatus, ReservationStatus};
    let mut ended = event.clone();
    match &mut ended.body {
        EventBody::Reservation(r) => r.status = ReservationStatus::Cancelled,
        EventBody::Facility(f) => f.status = FacilityStatus::Cancelled,
        EventBody::Pass(p) => p.status = PassStatus::Removed,
        EventBody::KeyRequest(_) => return None,
    }
    Some(ended)
}

/// A reconciler removal command: delete one stray vendor object, under the booking's lock.
async fn handle_remove<H: Handler>(s: &Arc<Shared<H>>, m: &Msg<'_>) -> Outcome {
    let cmd: RemoveCommand = match serde_json::from_slice(&m.msg.message.payload) {
        Ok(c) => c,
        Err(e) => {
            let err = HandlerError::permanent(format!("payload is not a removal command: {e}"));
            return fail(s, m, None, err).await;
        }
    };
    let vendor = s.handler.vendor();
    if cmd.vendor != vendor.as_str() {
        ack(m.msg).await;
        return Outcome::Skipped;
    }
    let conn = match s
        .cfg
        .connections
        .by_name(&cmd.tenant, vendor, &cmd.connection)
        .await
    {
        Ok(Some(c)) => Arc::new(c),
        Ok(None) => {
            let err = HandlerError::permanent(format!(
                "no {vendor} connection {:?} for tenant {:?}",
                cmd.connection, cmd.tenant
            ));
            return fail(s, m, None, err).await;
        }
        Err(e) => return fail(s, m, None, e.into()).await,
    };
    let booking = Booking {
        tenant: &cmd.tenant,
        kind: cmd.kind,
        key: &cmd.booking_key,
    };
    let conn_name = conn.name.clone();
    let parked = ParkAs {
        tenant: &cmd.tenant,
        connection: &conn_name,
        kind: cmd.kind.as_str(),
        booking_key: &cmd.booking_key,
        vendor_id: Some(&cmd.vendor_id),
        revision: 0,
        ends_access: true,
        action: SyncAction::Remove,
        force: false,
    };
    if !s.breakers.admits(&cmd.tenant, &conn_name, is_probe(s, m)) {
        return park(s, m, &parked, None, "circuit breaker open").await;
    }
    let key = booking.binding_key(s);
    let locked = s.store.lock(&key, false).await;
    let Held { guard, binding, .. } = match locked {
        Ok(l) => l,
        Err(e) => return fail(s, m, None, e.context("binding")).await,
    };
    let ctx =
        match apply_context(s, m, conn, &booking, binding.as_ref(), false, guard.fence()).await {
            Ok(c) => c,
            Err(e) => {
                drop(guard);
                return fail(s, m, None, e).await;
            }
        };
    if let Err(e) = ctx.ensure_held().await {
        drop(guard);
        return fail(s, m, None, e).await;
    }
    let prev = recorded::<H>(binding.as_ref());
    let result = s.handler.remove(&ctx, &cmd, prev.as_ref()).await;
    let result = breaker_outcome(s, result, &parked);
    // A removal that changed what the booking holds is recorded under the same lock, its
    // applied revision unchanged (the next event of the booking is still applied).
    let result = match result {
        Ok(Some(outcome)) if !guard.still_held() => {
            let _ = outcome;
            Err(HandlerError::transient(
                "lost the booking lock during the vendor call",
            ))
        }
        Ok(Some(outcome)) => {
            let revision = binding.as_ref().map_or(0, |b| b.applied_revision);
            match record_of::<H>(m, key.clone(), revision, None, &outcome) {
                Ok(rec) => match s.store.commit(rec).await {
                    Ok(Committed::Recorded) => Ok(()),
                    Ok(Committed::Superseded) => Err(HandlerError::transient(
                        "a newer revision was recorded during the removal",
                    )),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            drop(guard);
            tracing::info!(reference = %cmd.reference, vendor_id = %cmd.vendor_id, run = cmd.run_id, "stray vendor object removed");
            ack(m.msg).await;
            Outcome::Applied
        }
        Err(err) => {
            drop(guard);
            if err.class == ErrorClass::Transient
                && !s.breakers.admits(&cmd.tenant, &conn_name, false)
            {
                return park(s, m, &parked, None, &err.message).await;
            }
            fail(s, m, None, err).await
        }
    }
}

async fn ack(msg: &jetstream::Message) {
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(error = %e, "ack not confirmed");
    }
}

/// The error policy: NAK with delay, or DLQ + Term.
async fn fail<H: Handler>(
    s: &Shared<H>,
    m: &Msg<'_>,
    event: Option<&Event>,
    err: HandlerError,
) -> Outcome {
    let key = event.map(|e| Booking::of(e).binding_key(s));
    let trace = trace_id(m.msg);
    match s.backoff.decide(&err, m.delivered, s.cfg.max_deliver) {
        Decision::Retry(delay) => {
            tracing::warn!(error = %err.message, attempt = m.delivered, ?delay, "transient failure; retrying");
            if let Some(k) = &key
                && let Err(e) =
                    bindings::record_error(&s.pool, k, &err.message, trace.as_deref(), false).await
            {
                tracing::debug!(error = %e, "record last_error");
            }
            if let Err(e) = m.msg.ack_with(AckKind::Nak(Some(delay))).await {
                tracing::warn!(error = %e, "nak failed; redelivery after ack_wait");
            }
            Outcome::Retried
        }
        Decision::DeadLetter => {
            let class = err.class;
            let reason = if class == ErrorClass::Transient {
                format!(
                    "retries exhausted after {} attempts: {}",
                    m.delivered, err.message
                )
            } else {
                err.message.clone()
            };
            let dl = dlq::build(&dlq::Failure {
                worker: s.handler.name(),
                msg: m.msg,
                original_subject: m.subject,
                event,
                reason: &reason,
                class,
                attempts: m.delivered,
                stream: m.stream.clone(),
                stream_sequence: m.seq,
                trace_id: trace.clone(),
            });
            if let Err(e) = dlq::publish(&s.bus, &dl).await {
                // Never Term without a durable copy: try again later.
                tracing::error!(error = %e, "DLQ publish failed; message kept");
                let _ = m
                    .msg
                    .ack_with(AckKind::Nak(Some(s.backoff.delay(m.delivered))))
                    .await;
                return Outcome::Retried;
            }
            if let Some(k) = &key
                && let Err(e) =
                    bindings::record_error(&s.pool, k, &reason, trace.as_deref(), true).await
            {
                tracing::warn!(error = %e, "record last_error");
            }
            tracing::error!(reason = %reason, class = %class, dlq_id = %dl.id, "dead-lettered");
            if let Err(e) = m.msg.double_ack_with(AckKind::Term).await {
                tracing::warn!(error = %e, "term not confirmed");
            }
            Outcome::DeadLettered
        }
    }
}

/// The trace this message is handled in: our span's (a child of the publisher's
/// `traceparent`), or the header's when spans are filtered out — the same trace id either
/// way. Stored with the dead letter and with the binding the attempt writes, so what an
/// operator sees in the console or `accessctl dlq show` is what the trace UI finds.
fn trace_id(msg: &jetstream::Message) -> Option<String> {
    accesshub_telemetry::current_trace_id().or_else(|| header_trace_id(msg))
}

/// Trace id of a W3C `traceparent` header (`00-<trace>-<span>-<flags>`).
fn header_trace_id(msg: &jetstream::Message) -> Option<String> {
    let tp = msg
        .message
        .headers
        .as_ref()?
        .get(accesshub_domain::headers::TRACEPARENT)?
        .as_str();
    let trace = tp.split('-').nth(1)?;
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32))
        .then(|| trace.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use accesshub_domain::{EventBody, Source};

    fn event(body: EventBody) -> Event {
        Event::new("t", "s", "k", 7, Source::Native, chrono::Utc::now(), body)
    }

    /// What an offboarding connection applies: the same booking and revision, ended.
    #[test]
    fn the_ending_of_a_booking_ends_access_and_keeps_its_revision() {
        let pass: EventBody =
            serde_json::from_value(serde_json::json!({"kind": "pass", "payload": {
            "status": "active", "holder": {"id": "h", "email": "h@example.com"},
            "pass_type": "day", "expires_at": "2031-01-01T00:00:00Z"}}))
            .unwrap_or_else(|e| panic!("{e}"));
        let ev = event(pass);
        assert!(!ev.ends_access());
        let ended = ending_of(&ev).unwrap_or_else(|| panic!("a pass has an ending"));
        assert!(ended.ends_access());
        assert_eq!((ended.revision, ended.id), (ev.revision, ev.id));
    }
}
