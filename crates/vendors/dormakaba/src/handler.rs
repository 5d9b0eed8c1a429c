//! The worker-runtime [`Handler`] for reservations and key requests.
//!
//! Reservations: the runtime hands us the reservation's record (what we did before) under
//! its booking lock; we plan, call the lock system and return the new record.
//!
//! Key requests act on the *reservation's* lock-system booking, so they take the
//! reservation's lock and record through the runtime ([`ApplyContext::lock_related`]), read
//! the reservation's desired state from it ([`ApplyContext::stored_body`]), record their own
//! progress ([`ApplyContext::record_progress`]) and publish their outcome on
//! `results.keyreq.<tenant>.<id>` ([`ApplyContext::publish`]). No database, NATS connection
//! or SQL of the adapter's own, and no transaction held across a lock-system call.

use std::sync::Arc;

use accesshub_connections::{Connection, Vendor};
use accesshub_domain::{
    Classify, ErrorClass, Event, EventBody, EventKind, KeyAction, KeyRequest, KeyResult,
    KeyResultStatus, Reservation, pii::mask_phone, sync::RemoveCommand,
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use vendor_http::RateLimiter;
use worker_runtime::{ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, Status};

use crate::apply::{ExecFailure, ExecReport, execute};
use crate::client::{SoapClient, SoapConfig, SoapError};
use crate::desired::{self, LockRecord, Op};
use crate::edge::{EdgeLink, EdgeTarget};
use crate::keyreq::{self, KeyRequestRecord, StoredStatus};

/// Worker and durable consumer name.
pub const WORKER: &str = "dormakaba-worker";

/// What the desk is told when the BlueSky app matched no guest (never "sent").
pub const MOBILE_NOT_DELIVERED: &str =
    "mobile key not delivered — check the guest's surname and phone";

/// Attempts a key request gets at a transient lock-system fault (encoder busy, jammed, timed
/// out) before the desk is told: the guest is standing at the desk.
pub const KEY_REQUEST_ATTEMPTS: u64 = 3;

const KINDS: [EventKind; 2] = [EventKind::Reservation, EventKind::KeyRequest];

/// What a binding of this adapter records: a key request's outcome, or what we set at the
/// lock system for a reservation (the shape reservation bindings have always had).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DormakabaIds {
    /// A key request's binding (it has a `request_id`; a lock record never does).
    KeyRequest(KeyRequestRecord),
    /// A reservation's binding (boxed: a lock record is several times a key request's).
    Reservation(Box<LockRecord>),
}

impl Default for DormakabaIds {
    fn default() -> Self {
        DormakabaIds::reservation(LockRecord::default())
    }
}

impl DormakabaIds {
    /// A reservation's record.
    pub fn reservation(rec: LockRecord) -> Self {
        DormakabaIds::Reservation(Box::new(rec))
    }

    /// The reservation's lock record (empty for anything else).
    pub fn lock_record(&self) -> LockRecord {
        match self {
            DormakabaIds::Reservation(r) => r.as_ref().clone(),
            DormakabaIds::KeyRequest(_) => LockRecord::default(),
        }
    }
}

fn lock_record(prev: Option<&Recorded<DormakabaIds>>) -> LockRecord {
    prev.map(|p| p.ids.lock_record()).unwrap_or_default()
}

/// The dormakaba handler (stateless: the runtime caches the clients).
#[derive(Debug, Default)]
pub struct DormakabaHandler {
    /// The NATS link to hotels' edge relays (connections with an `edge_site`).
    edge: Option<Arc<EdgeLink>>,
}

impl DormakabaHandler {
    /// The handler, for lock servers reachable over HTTP only.
    pub fn new() -> Self {
        DormakabaHandler::default()
    }

    /// The handler, reaching lock servers of edge connections through `link`.
    pub fn with_edge(link: Arc<EdgeLink>) -> Self {
        DormakabaHandler { edge: Some(link) }
    }

    /// A reservation whose site is offline waits: recorded `pending` with what the lock
    /// system held unchanged, acknowledged, applied again when the site answers
    /// ([`crate::resume`]).
    fn park(
        &self,
        ctx: &ApplyContext<SoapClient>,
        rec: LockRecord,
        err: &SoapError,
    ) -> ApplyOutcome<DormakabaIds> {
        if let (Some(link), Some(t)) = (&self.edge, ctx.client.edge_target()) {
            link.park(&t.tenant, &t.site);
        }
        tracing::warn!(error = %err, "edge site offline: reservation parked until it answers");
        ApplyOutcome::new(Status::Pending, DormakabaIds::reservation(rec))
    }

    async fn apply_reservation(
        &self,
        ctx: &ApplyContext<SoapClient>,
        event: &Event,
        r: &Reservation,
        prev: Option<&Recorded<DormakabaIds>>,
    ) -> Result<ApplyOutcome<DormakabaIds>, HandlerError> {
        let s = ctx.connection.settings.dormakaba()?;
        let lock: &SoapClient = &ctx.client;
        let mut rec = lock_record(prev);
        let mut d = desired::desired(&event.tenant, &event.booking_key, r, s)?;
        desired::keep_recorded_id(&mut d, &rec);
        let d = desired::keep_desk_mobile_key(d, &rec);
        // The desk's mobile key moving with the room: its key request hears the outcome.
        let moved_desk = desired::moved_desk_key(&rec, &d).map(|(m, request)| (m.clone(), request));
        let mut ops = desired::plan_reservation(&d, &rec)?;
        // The runtime only hands over an event whose revision equals the binding's when the
        // reconciler forced it (SYNC `apply`): it found the lock system out of step although
        // our record matches. Re-assert, so a booking lost at the lock system is noticed and
        // re-created below.
        let forced = prev.is_some_and(|b| b.applied_revision == event.revision);
        if forced && ops.is_empty() && desired::access_wanted(&d, Utc::now()) && rec.live() {
            ops.push(Op::ExtendCheckOut);
        }
        if ctx.attempt > 1 {
            desired::cancel_before_resend(&mut ops);
        }
        note_in_doubt(ctx, &mut rec, &ops).await?;
        let result = match execute_in_steps(ctx, lock, &d, &mut rec, &ops, s.key_size).await? {
            // The lock system lost the booking our record says exists (removed by hand at the
            // front desk): create it again, without a card, and re-send the mobile key.
            Err(f)
                if desired::is_gone(&f.error)
                    && d.wants_access
                    && rec.booked
                    && !matches!(
                        f.op,
                        Op::CreateBooking { .. } | Op::CreateUnlessExists { .. }
                    ) =>
            {
                tracing::warn!(error = %f.error, reservation_id = %d.reservation_id,
                    "booking gone at the lock system; re-creating it");
                rec.booked = false;
                rec.mobile_key = None;
                let again = desired::plan_recreate(&d)?;
                note_in_doubt(ctx, &mut rec, &again).await?;
                execute_in_steps(ctx, lock, &d, &mut rec, &again, s.key_size).await?
            }
            other => other,
        };
        if result.is_err() {
            // What succeeded before the failure, so the retry does not repeat it. Best effort:
            // the lock system's error is the one to report (and classify), and a retry that
            // lacks this record probes before it creates anything again.
            if let Err(e) = ctx
                .record_progress(record_status(&rec), &DormakabaIds::reservation(rec.clone()))
                .await
            {
                tracing::warn!(error = %e.message, "recording progress before a retry failed");
            }
        }
        match result {
            Err(f) if matches!(f.error, SoapError::SiteOffline { .. }) => {
                Ok(self.park(ctx, rec, &f.error))
            }
            Ok(report) => {
                tracing::info!(operations = ?report.operations, reservation_id = %d.reservation_id, "reservation applied");
                if let Some((m, request)) = moved_desk.filter(|_| report.mobile_sent) {
                    report_moved_desk_key(ctx, &event.tenant, request, &m, &report).await;
                }
                Ok(ApplyOutcome::new(
                    record_status(&rec),
                    DormakabaIds::reservation(rec),
                ))
            }
            Err(f) => Err(HandlerError::from(f.error)),
        }
    }

    /// A reconciler removal (SYNC `remove`): our booking for a reservation that no longer
    /// wants access. Cancels the mobile key and checks the guest out; "already gone" at the
    /// lock system is success. The runtime holds the reservation's lock meanwhile and records
    /// the returned record.
    async fn remove_reservation(
        &self,
        ctx: &ApplyContext<SoapClient>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<DormakabaIds>>,
    ) -> Result<Option<ApplyOutcome<DormakabaIds>>, HandlerError> {
        let mut rec = lock_record(prev);
        if !rec.maybe_live() {
            return Ok(None);
        }
        let rid = rec
            .reservation_id
            .clone()
            .unwrap_or_else(|| desired::reservation_id(&cmd.tenant, &cmd.booking_key));
        if cmd.reference != rid {
            tracing::warn!(reference = %cmd.reference, reservation_id = %rid,
                "removal names another ReservationID than the binding holds; nothing done");
            return Ok(None);
        }
        let s = ctx.connection.settings.dormakaba()?;
        // Wanted again since the run looked (re-confirmed, extended)? Then keep it.
        if let Some(EventBody::Reservation(r)) = ctx
            .stored_body(EventKind::Reservation, &cmd.booking_key)
            .await?
        {
            let d = desired::desired(&cmd.tenant, &cmd.booking_key, &r, s)?;
            if desired::access_wanted(&d, Utc::now()) {
                tracing::info!(reservation_id = %rid, "reservation wants access again; not checked out");
                return Ok(None);
            }
        }
        let lock: &SoapClient = &ctx.client;
        let gone_ok = |r: Result<_, SoapError>| match r {
            Err(e) if !desired::is_gone(&e) => Err(HandlerError::from(e)),
            _ => Ok(()),
        };
        for op in desired::ending_ops(&rec) {
            match &op {
                Op::CancelMobileKey(m) => {
                    match lock.cancel_mobile_access(&rid, &m.room, &m.phone).await {
                        Err(e) if desired::cancel_refused_is_done(&rec, m, &e) => {}
                        other => gone_ok(other)?,
                    }
                }
                Op::CheckOut => match lock.check_out_guest(&rid).await {
                    // Nothing under the id: nothing to record as spent.
                    Err(e) if desired::is_not_found(&e) => {
                        desired::record_not_found(&mut rec);
                        continue;
                    }
                    other => gone_ok(other)?,
                },
                // An ending is only cancellations and the check-out.
                _ => continue,
            }
            desired::record_ending(&mut rec, &op);
        }
        tracing::info!(reservation_id = %rid, run = cmd.run_id, "stale lock-system booking checked out");
        Ok(Some(ApplyOutcome::new(
            record_status(&rec),
            DormakabaIds::reservation(rec),
        )))
    }

    async fn apply_key_request(
        &self,
        ctx: &ApplyContext<SoapClient>,
        event: &Event,
        req: &KeyRequest,
        prev: Option<&Recorded<DormakabaIds>>,
    ) -> Result<ApplyOutcome<DormakabaIds>, HandlerError> {
        let tenant = event.tenant.as_str();
        let previous = prev
            .and_then(|p| p.status)
            .and_then(StoredStatus::from_status);
        if let Some(StoredStatus::Result(status)) = previous
            && previous.is_some_and(StoredStatus::is_final)
        {
            // Done before (only a forced re-delivery gets here): publish again, change nothing.
            let message = prev.and_then(|p| match &p.ids {
                DormakabaIds::KeyRequest(k) => k.message.clone(),
                DormakabaIds::Reservation(_) => None,
            });
            publish(ctx, tenant, req, status, message.clone()).await?;
            return Ok(keyreq_outcome(req, status, message));
        }
        let reservation = match ctx
            .stored_body(EventKind::Reservation, &req.reservation_key)
            .await?
        {
            Some(EventBody::Reservation(r)) => r,
            _ => {
                let msg = format!(
                    "reservation {:?} is unknown to accesshub: no key can be made",
                    req.reservation_key
                );
                return Err(fail(ctx, tenant, req, HandlerError::permanent(msg)).await);
            }
        };
        let s = ctx.connection.settings.dormakaba()?;
        let mut d = match desired::desired_for_key_request(tenant, req, &reservation, s) {
            Ok(d) => d,
            Err(e) => return Err(fail(ctx, tenant, req, e.into()).await),
        };
        // The reservation's lock and record: its own events wait until the keys are made.
        let related = ctx
            .lock_related::<DormakabaIds>(EventKind::Reservation, &req.reservation_key)
            .await?;
        let mut rec = related
            .record()
            .map(|r| r.ids.lock_record())
            .unwrap_or_default();
        desired::keep_recorded_id(&mut d, &rec);
        // A reservation parked while its site was offline stays parked (the watcher applies
        // its revision when the site answers), whatever the key request records on it.
        let parked = related
            .record()
            .is_some_and(|r| r.status == Some(Status::Pending));
        let reservation_status = |rec: &LockRecord| {
            if parked {
                Status::Pending
            } else {
                record_status(rec)
            }
        };
        let mut ops = match desired::plan_key_request(req, &d, &rec, s) {
            Ok(ops) => ops,
            Err(e) => return Err(fail(ctx, tenant, req, e.into()).await),
        };
        let interrupted = previous == Some(StoredStatus::InFlight);
        // A create is probed before it is repeated (its cards were encoded with the booking,
        // so a booking found means they exist); anything else that encodes cards leaves no
        // trace to probe, so after a crash mid-call we must not guess: a second card is worse
        // than asking the desk to check the encoder and request again.
        if interrupted
            && ops.iter().any(|o| {
                o.encodes_cards()
                    && !matches!(o, Op::CreateBooking { .. } | Op::CreateUnlessExists { .. })
            })
        {
            let msg = "a previous attempt was interrupted during the lock-system call, so the card may already have been encoded; check the encoder and send a new request if no card came out";
            return Err(fail(ctx, tenant, req, HandlerError::permanent(msg)).await);
        }
        if interrupted {
            desired::probe_before_create(&mut ops, true);
            desired::cancel_before_resend(&mut ops);
        }
        // Recorded before the call, so a crash during it leaves a trace for the next attempt.
        ctx.record_progress(Status::InFlight, &key_record(req, None))
            .await?;
        // And on the reservation: a cancellation arriving after a crash here must check the
        // guest out although the record never said "booked".
        if desired::note_in_doubt(&mut rec, &ops) {
            related
                .record_progress(
                    reservation_status(&rec),
                    &DormakabaIds::reservation(rec.clone()),
                )
                .await?;
        }
        let lock: &SoapClient = &ctx.client;
        let result = execute(lock, &d, &mut rec, &ops, s.key_size).await;
        // A mobile key the desk sent stays while the stay wants access (following its room),
        // whatever the reservation's own mobile-key flag says
        // ([`desired::keep_desk_mobile_key`]).
        if req.wants_mobile_key() && rec.mobile_key.is_some() && rec.mobile_key == d.mobile {
            desired::record_desk_key(&mut rec, req.request_id);
        }
        related
            .save(reservation_status(&rec), &DormakabaIds::reservation(rec))
            .await?;
        match result {
            Ok(report) => {
                let (status, message) = success_message(req, &report, d.mobile.as_ref());
                // Recorded final before it is published: if the publish fails, the retry finds
                // the outcome and publishes it again instead of touching the lock system.
                ctx.record_progress(
                    keyreq::result_status(status),
                    &key_record(req, Some(message.clone())),
                )
                .await?;
                publish(ctx, tenant, req, status, Some(message.clone())).await?;
                tracing::info!(request_id = %req.request_id, operations = ?report.operations, "key request done");
                Ok(keyreq_outcome(req, status, Some(message)))
            }
            // The desk gets its answer now, not after retries: no key while the hotel's link
            // is down (nothing dead-lettered: the request is answered, not broken).
            Err(f) if matches!(f.error, SoapError::SiteOffline { .. }) => {
                let message = format!(
                    "site offline: the hotel's lock server cannot be reached from accesshub ({}); no key was made, request again when the site is back",
                    f.error
                );
                report(ctx, tenant, req, KeyResultStatus::Failed, message.clone()).await;
                Ok(keyreq_outcome(req, KeyResultStatus::Failed, Some(message)))
            }
            // An encoder the lock system does not know: no retry can help, and the desk
            // must hear which one.
            Err(f)
                if f.error
                    .fault_code()
                    .is_some_and(|c| c.eq_ignore_ascii_case("InvalidEncoderNumber")) =>
            {
                let message = format!(
                    "encoder {} does not exist in the lock system ({})",
                    f.op.encoder().unwrap_or("?"),
                    f.error
                );
                Err(fail(ctx, tenant, req, HandlerError::permanent(message)).await)
            }
            Err(f) => {
                let transient = f.error.class() == ErrorClass::Transient;
                // The desk is waiting: busy, jammed, timed-out encoders are retried briefly,
                // then the fault is reported (the request is answered, not dead-lettered).
                if transient && ctx.attempt >= KEY_REQUEST_ATTEMPTS && !ctx.last_attempt {
                    let message = format!(
                        "{} after {} attempts: no key was made, check the encoder and request again",
                        f.error.desk_message().trim_end_matches(", retrying"),
                        ctx.attempt
                    );
                    report(ctx, tenant, req, KeyResultStatus::Failed, message.clone()).await;
                    return Ok(keyreq_outcome(req, KeyResultStatus::Failed, Some(message)));
                }
                if transient && !ctx.last_attempt {
                    let message = f.error.desk_message();
                    report(ctx, tenant, req, KeyResultStatus::Pending, message).await;
                    Err(HandlerError::from(f.error))
                } else {
                    Err(fail(ctx, tenant, req, HandlerError::from(f.error)).await)
                }
            }
        }
    }
}

fn key_record(req: &KeyRequest, message: Option<String>) -> KeyRequestRecord {
    KeyRequestRecord {
        request_id: req.request_id,
        reservation_key: req.reservation_key.clone(),
        message,
    }
}

/// Records and publishes `failed`, then hands the error back for the runtime's DLQ (which
/// records the request's binding as dead-lettered with the reason).
async fn fail(
    ctx: &ApplyContext<SoapClient>,
    tenant: &str,
    req: &KeyRequest,
    err: HandlerError,
) -> HandlerError {
    report(
        ctx,
        tenant,
        req,
        KeyResultStatus::Failed,
        err.message.clone(),
    )
    .await;
    err
}

/// Records and publishes an outcome; failures are logged, not raised, so they never hide the
/// lock system's own answer.
async fn report(
    ctx: &ApplyContext<SoapClient>,
    tenant: &str,
    req: &KeyRequest,
    status: KeyResultStatus,
    msg: String,
) {
    let rec = key_record(req, Some(msg.clone()));
    if let Err(e) = ctx
        .record_progress(keyreq::result_status(status), &rec)
        .await
    {
        tracing::warn!(error = %e, "recording key request outcome failed");
    }
    if let Err(e) = publish(ctx, tenant, req, status, Some(msg)).await {
        tracing::warn!(error = %e, "publishing key request outcome failed");
    }
}

async fn publish(
    ctx: &ApplyContext<SoapClient>,
    tenant: &str,
    req: &KeyRequest,
    status: KeyResultStatus,
    message: Option<String>,
) -> Result<(), HandlerError> {
    let result = KeyResult {
        request_id: req.request_id,
        tenant: tenant.to_owned(),
        status,
        message,
        at: Utc::now(),
    };
    let (subject, body, msg_id) = keyreq::result_message(&result)
        .map_err(|e| HandlerError::permanent(format!("encode key result: {e}")))?;
    ctx.publish(&subject, body, msg_id).await
}

/// The desk's mobile key sent again after a room move, reported like the key request's own
/// outcome: a [`KeyResult`] for the request that first sent it, on its subject (`sent`, or
/// `failed` when the app matched no guest — never "sent" then), so a PMS listening for its
/// key requests hears that the guest's phone now opens the new room. Best effort after the
/// lock system's success (a lost publish is logged; the key itself is recorded). A key
/// recorded before key requests were remembered has no request to report to: logged only.
async fn report_moved_desk_key(
    ctx: &ApplyContext<SoapClient>,
    tenant: &str,
    request: Option<uuid::Uuid>,
    m: &desired::MobileTarget,
    report: &ExecReport,
) {
    let (status, message) = if report.mobile_undelivered {
        (
            KeyResultStatus::Failed,
            format!("room moved to {}: {MOBILE_NOT_DELIVERED}", m.room),
        )
    } else {
        (
            KeyResultStatus::Sent,
            format!(
                "room moved to {}: mobile key sent again to {}",
                m.room,
                mask_phone(&m.phone)
            ),
        )
    };
    tracing::info!(request_id = ?request, room = %m.room, %message, "desk mobile key sent again after a room move");
    let Some(request_id) = request else { return };
    let result = KeyResult {
        request_id,
        tenant: tenant.to_owned(),
        status,
        message: Some(message),
        at: Utc::now(),
    };
    let published = match keyreq::result_message(&result) {
        // Its own message id: the request's first outcome was published under the plain one.
        Ok((subject, body, _)) => {
            let id = format!(
                "keyreq:{request_id}:moved:{}:{}",
                m.room,
                keyreq::result_status(status).as_str()
            );
            ctx.publish(&subject, body, Some(id)).await
        }
        Err(e) => Err(HandlerError::permanent(format!("encode key result: {e}"))),
    };
    if let Err(e) = published {
        tracing::warn!(error = %e.message, "publishing the moved desk key's outcome failed");
    }
}

impl Handler for DormakabaHandler {
    type Ids = DormakabaIds;
    type Client = SoapClient;

    fn name(&self) -> &'static str {
        WORKER
    }

    fn vendor(&self) -> Vendor {
        Vendor::Dormakaba
    }

    fn kinds(&self) -> &[EventKind] {
        &KINDS
    }

    fn client(
        &self,
        conn: &Connection,
        limiter: Arc<RateLimiter>,
    ) -> Result<SoapClient, HandlerError> {
        let s = conn.settings.dormakaba()?;
        let client = SoapClient::new(SoapConfig::from_settings(s))?.with_rate_limit(limiter);
        match (&s.edge_site, &self.edge) {
            (None, _) => Ok(client),
            (Some(site), Some(link)) => Ok(client.via_edge(
                link.clone(),
                EdgeTarget {
                    tenant: conn.tenant.clone(),
                    site: site.clone(),
                    upstream_sites: conn.sites.clone(),
                },
            )),
            (Some(site), None) => Err(HandlerError::permanent(format!(
                "connection {:?} reaches its lock server through edge site {site:?}, but this worker has no edge link",
                conn.name
            ))),
        }
    }

    async fn apply(
        &self,
        ctx: &ApplyContext<SoapClient>,
        event: &Event,
        prev: Option<&Recorded<DormakabaIds>>,
    ) -> Result<ApplyOutcome<DormakabaIds>, HandlerError> {
        match &event.body {
            EventBody::Reservation(r) => self.apply_reservation(ctx, event, r, prev).await,
            EventBody::KeyRequest(k) => self.apply_key_request(ctx, event, k, prev).await,
            _ => Ok(ApplyOutcome::new(Status::Ignored, DormakabaIds::default())),
        }
    }

    async fn remove(
        &self,
        ctx: &ApplyContext<SoapClient>,
        cmd: &RemoveCommand,
        prev: Option<&Recorded<DormakabaIds>>,
    ) -> Result<Option<ApplyOutcome<DormakabaIds>>, HandlerError> {
        if cmd.kind != EventKind::Reservation {
            return Err(HandlerError::permanent(format!(
                "dormakaba removals are reservation check-outs, not {}",
                cmd.kind.as_str()
            )));
        }
        self.remove_reservation(ctx, cmd, prev).await
    }
}

/// Runs `ops` in [`desired::steps`], recording the reservation's record after each step
/// that more steps follow. The outer error is a failure to record; the inner result is the
/// lock system's.
async fn execute_in_steps(
    ctx: &ApplyContext<SoapClient>,
    lock: &SoapClient,
    d: &desired::Desired,
    rec: &mut LockRecord,
    ops: &[Op],
    key_size: u32,
) -> Result<Result<ExecReport, ExecFailure>, HandlerError> {
    let steps = desired::steps(ops);
    let mut total = ExecReport::default();
    let last = steps.len().saturating_sub(1);
    for (i, step) in steps.into_iter().enumerate() {
        match execute(lock, d, rec, step, key_size).await {
            Ok(report) => total.absorb(report),
            Err(mut f) => {
                total.absorb(std::mem::take(&mut f.done));
                f.done = total;
                return Ok(Err(f));
            }
        }
        if i < last {
            ctx.record_progress(record_status(rec), &DormakabaIds::reservation(rec.clone()))
                .await?;
        }
    }
    Ok(Ok(total))
}

/// Stores what a reservation's `ops` may create or change at the lock system before they are
/// sent (see [`desired::note_in_doubt`] and [`desired::note_changes_in_doubt`]); nothing is
/// written when they can neither create anything new nor change recorded validity.
async fn note_in_doubt(
    ctx: &ApplyContext<SoapClient>,
    rec: &mut LockRecord,
    ops: &[Op],
) -> Result<(), HandlerError> {
    let created = desired::note_in_doubt(rec, ops);
    let changed = desired::note_changes_in_doubt(rec, ops);
    if created || changed {
        ctx.record_progress(record_status(rec), &DormakabaIds::reservation(rec.clone()))
            .await?;
    }
    Ok(())
}

/// What a reservation's record says the lock system holds. A booking in doubt is `in_flight`,
/// never a status that "holds nothing": an ending at the same revision must still be applied.
pub fn record_status(rec: &LockRecord) -> Status {
    if rec.booking_in_doubt {
        Status::InFlight
    } else if rec.checked_out {
        Status::CheckedOut
    } else if rec.booked {
        Status::Booked
    } else {
        Status::NoLockBooking
    }
}

fn keyreq_outcome(
    req: &KeyRequest,
    status: KeyResultStatus,
    message: Option<String>,
) -> ApplyOutcome<DormakabaIds> {
    ApplyOutcome::new(
        keyreq::result_status(status),
        DormakabaIds::KeyRequest(key_record(req, message)),
    )
}

fn success_message(
    req: &KeyRequest,
    report: &ExecReport,
    mobile: Option<&desired::MobileTarget>,
) -> (KeyResultStatus, String) {
    // The number as the desk can check it, never whole (personal data).
    let mobile_words = || {
        if report.mobile_undelivered {
            MOBILE_NOT_DELIVERED.to_owned()
        } else {
            let to =
                mobile.map_or_else(|| "the guest's phone".to_owned(), |m| mask_phone(&m.phone));
            format!("mobile key sent to {to}")
        }
    };
    match req.action {
        KeyAction::MobileKey if report.mobile_undelivered => {
            (KeyResultStatus::Failed, MOBILE_NOT_DELIVERED.to_owned())
        }
        KeyAction::MobileKey => (KeyResultStatus::Sent, mobile_words()),
        KeyAction::NewKey | KeyAction::DuplicateKey => {
            let mut msg = if report.already_booked {
                "key ready (encoded by an earlier attempt; the lock system already had the booking)"
                    .to_owned()
            } else {
                format!(
                    "key ready: {} card(s) encoded on encoder {}",
                    report.cards,
                    report.encoder.as_deref().unwrap_or("?")
                )
            };
            // The cards exist whatever the app did: encoded, with the mobile key's fate.
            if req.mobile_key && report.mobile_sent {
                msg = format!("{msg}; {}", mobile_words());
            }
            (KeyResultStatus::Encoded, msg)
        }
    }
}
