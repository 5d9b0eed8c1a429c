//! The worker-runtime [`Handler`] for reservations and key requests.
//!
//! Reservations: the runtime hands us the reservation's binding (what we did before) under
//! its advisory lock; we plan, call the lock system and return the new record.
//!
//! Key requests act on the *reservation's* lock-system booking, so they take the same
//! advisory lock the runtime takes for the reservation's binding, read and update that
//! binding's record themselves, and report the outcome in `key_requests` and on
//! `results.keyreq.<tenant>.<id>`.

use std::sync::Arc;

use accesshub_bus::Bus;
use accesshub_config::CommonConfig;
use accesshub_connections::{DormakabaSettings, Vendor, VendorSettings};
use accesshub_domain::{
    Classify, ErrorClass, Event, EventBody, EventKind, KeyAction, KeyRequest, KeyResult,
    KeyResultStatus, Reservation, sync::RemoveCommand,
};
use accesshub_store::StoreError;
use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::OnceCell;
use vendor_http::RateLimiter;
use worker_runtime::{ApplyContext, ApplyOutcome, Binding, ClientCache, Handler, HandlerError};

use crate::apply::{ExecReport, Throttle, execute};
use crate::client::{SoapClient, SoapConfig, SoapError};
use crate::desired::{self, LockRecord, Op};
use crate::keyreq::{self, StoredStatus};

/// Worker and durable consumer name.
pub const WORKER: &str = "dormakaba-worker";

const KINDS: [EventKind; 2] = [EventKind::Reservation, EventKind::KeyRequest];

/// The dormakaba handler. Cheap to share: clients are cached per connection version.
pub struct DormakabaHandler {
    pool: PgPool,
    common: CommonConfig,
    bus: OnceCell<Bus>,
    clients: ClientCache<SoapClient>,
}

impl std::fmt::Debug for DormakabaHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DormakabaHandler").finish_non_exhaustive()
    }
}

/// The handler could not be built.
#[derive(Debug, thiserror::Error)]
#[error("dormakaba handler: {0}")]
pub struct SetupError(String);

impl Classify for SetupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl DormakabaHandler {
    /// A handler with its own (lazy) pool; NATS for key results is connected on first use.
    pub fn new(common: &CommonConfig) -> Result<Self, SetupError> {
        let pool = accesshub_store::connect_lazy(&common.database_url, 8)
            .map_err(|e| SetupError(e.to_string()))?;
        Ok(DormakabaHandler {
            pool,
            common: common.clone(),
            bus: OnceCell::new(),
            clients: ClientCache::new(),
        })
    }

    /// A handler with an existing pool and bus (tests).
    pub fn with(pool: PgPool, bus: Bus, common: &CommonConfig) -> Self {
        DormakabaHandler {
            pool,
            common: common.clone(),
            bus: OnceCell::new_with(Some(bus)),
            clients: ClientCache::new(),
        }
    }

    /// The pool (for [`keyreq::key_request_status`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn bus(&self) -> Result<&Bus, HandlerError> {
        self.bus
            .get_or_try_init(|| accesshub_bus::connect(&self.common))
            .await
            .map_err(HandlerError::from)
    }

    async fn client<'c>(
        &self,
        ctx: &'c ApplyContext,
    ) -> Result<(Arc<SoapClient>, &'c DormakabaSettings), HandlerError> {
        let VendorSettings::Dormakaba(s) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "the connection is not a dormakaba connection",
            ));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                SoapClient::new(SoapConfig::from_settings(s))
            })
            .await?;
        Ok((client, s))
    }

    async fn apply_reservation(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        r: &Reservation,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        let (client, s) = self.client(ctx).await?;
        let d = desired::desired(&event.tenant, &event.booking_key, r, s)?;
        let mut rec = binding
            .map(|b| LockRecord::from_json(&b.vendor_ids))
            .unwrap_or_default();
        let mut ops = desired::plan_reservation(&d, &rec)?;
        // The runtime only hands over an event whose revision equals the binding's when the
        // reconciler forced it (SYNC `apply`): it found the lock system out of step although
        // our record matches. Re-assert, so a booking lost at the lock system is noticed and
        // re-created below.
        let forced = binding.is_some_and(|b| b.applied_revision == event.revision);
        if forced && ops.is_empty() && desired::access_wanted(&d, Utc::now()) && rec.live() {
            ops.push(Op::ExtendCheckOut);
        }
        if ctx.attempt > 1 {
            desired::cancel_before_resend(&mut ops);
        }
        let limiter = Limiter(&ctx.rate_limiter);
        let result = match execute(&client, &limiter, &d, &mut rec, &ops, s.key_size).await {
            // The lock system lost the booking our record says exists (removed by hand at the
            // front desk): create it again, without a card, and re-send the mobile key.
            Err(f)
                if desired::is_gone(&f.error)
                    && d.wants_access
                    && rec.booked
                    && !matches!(
                        ops.get(f.done.operations.len()),
                        Some(Op::CreateBooking { .. })
                    ) =>
            {
                tracing::warn!(error = %f.error, reservation_id = %d.reservation_id,
                    "booking gone at the lock system; re-creating it");
                rec.booked = false;
                rec.mobile_key = None;
                let again = desired::plan_recreate(&d)?;
                execute(&client, &limiter, &d, &mut rec, &again, s.key_size).await
            }
            other => other,
        };
        match result {
            Ok(report) => {
                tracing::info!(operations = ?report.operations, reservation_id = %d.reservation_id, "reservation applied");
                Ok(ApplyOutcome::new(record_status(&rec), rec.to_json()))
            }
            Err(f) => Err(HandlerError::from(f.error)),
        }
    }

    /// A reconciler removal (SYNC `remove`): our booking for a reservation that no longer
    /// wants access. Cancels the mobile key and checks the guest out; "already gone" at the
    /// lock system is success. The runtime holds the reservation's advisory lock meanwhile.
    async fn remove_reservation(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        let mut rec = binding
            .map(|b| LockRecord::from_json(&b.vendor_ids))
            .unwrap_or_default();
        if !rec.live() {
            return Ok(());
        }
        let rid = rec
            .reservation_id
            .clone()
            .unwrap_or_else(|| desired::reservation_id(&cmd.tenant, &cmd.booking_key));
        if cmd.reference != rid {
            tracing::warn!(reference = %cmd.reference, reservation_id = %rid,
                "removal names another ReservationID than the binding holds; nothing done");
            return Ok(());
        }
        let (client, s) = self.client(ctx).await?;
        // Wanted again since the run looked (re-confirmed, extended)? Then keep it.
        if let Some(r) = load_reservation(&self.pool, &cmd.tenant, &cmd.booking_key).await? {
            let d = desired::desired(&cmd.tenant, &cmd.booking_key, &r, s)?;
            if desired::access_wanted(&d, Utc::now()) {
                tracing::info!(reservation_id = %rid, "reservation wants access again; not checked out");
                return Ok(());
            }
        }
        let gone_ok = |r: Result<_, SoapError>| match r {
            Err(e) if !desired::is_gone(&e) => Err(HandlerError::from(e)),
            _ => Ok(()),
        };
        if let Some(m) = rec.mobile_key.clone() {
            ctx.rate_limiter.acquire().await;
            gone_ok(client.cancel_mobile_access(&rid, &m.room, &m.phone).await)?;
            rec.mobile_key = None;
        }
        ctx.rate_limiter.acquire().await;
        gone_ok(client.check_out_guest(&rid).await)?;
        rec.checked_out = true;
        // Not under the advisory lock here: the runtime's transaction holds it.
        let mut conn = self.pool.acquire().await.map_err(StoreError::from)?;
        save_record(&mut conn, &cmd.tenant, &cmd.booking_key, &rec)
            .await
            .map_err(StoreError::from)?;
        tracing::info!(reservation_id = %rid, run = cmd.run_id, "stale lock-system booking checked out");
        Ok(())
    }

    async fn apply_key_request(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        req: &KeyRequest,
    ) -> Result<ApplyOutcome, HandlerError> {
        let tenant = event.tenant.as_str();
        let previous = keyreq::key_request_status(&self.pool, req.request_id).await?;
        if let Some(p) = &previous
            && let StoredStatus::Result(status) = p.status
            && p.status.is_final()
        {
            // Done before (the ack or binding save was lost): publish again, change nothing.
            self.publish(tenant, req, status, p.message.clone()).await?;
            return Ok(keyreq_outcome(req, status));
        }
        let Some(r) = load_reservation(&self.pool, tenant, &req.reservation_key).await? else {
            let msg = format!(
                "reservation {:?} is unknown to accesshub: no key can be made",
                req.reservation_key
            );
            return Err(self
                .fail(ctx, tenant, req, HandlerError::permanent(msg))
                .await);
        };
        let (client, s) = self.client(ctx).await?;
        let d = match desired::desired_for_key_request(tenant, &req.reservation_key, &r, s) {
            Ok(d) => d,
            Err(e) => return Err(self.fail(ctx, tenant, req, e.into()).await),
        };

        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        lock_reservation_binding(&mut tx, tenant, &req.reservation_key)
            .await
            .map_err(StoreError::from)?;
        let mut rec = load_record(&mut tx, tenant, &req.reservation_key)
            .await
            .map_err(StoreError::from)?;
        let mut ops = match desired::plan_key_request(req, &d, &rec, s) {
            Ok(ops) => ops,
            Err(e) => return Err(self.fail(ctx, tenant, req, e.into()).await),
        };
        let interrupted = previous
            .as_ref()
            .is_some_and(|p| p.status == StoredStatus::InFlight);
        // CreateNewBooking is idempotent at the lock system; anything else that encodes cards
        // is not, so after a crash mid-call we must not guess: a second card is worse than
        // asking the desk to check the encoder and request again.
        if interrupted
            && ops
                .iter()
                .any(|o| o.encodes_cards() && !matches!(o, Op::CreateBooking { .. }))
        {
            let msg = "a previous attempt was interrupted during the lock-system call, so the card may already have been encoded; check the encoder and send a new request if no card came out";
            return Err(self
                .fail(ctx, tenant, req, HandlerError::permanent(msg))
                .await);
        }
        if interrupted {
            desired::cancel_before_resend(&mut ops);
        }
        keyreq::mark_in_flight(&self.pool, tenant, req).await?;
        let limiter = Limiter(&ctx.rate_limiter);
        let result = execute(&client, &limiter, &d, &mut rec, &ops, s.key_size).await;
        save_record(&mut tx, tenant, &req.reservation_key, &rec)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        match result {
            Ok(report) => {
                let (status, message) = success_message(req, &report);
                keyreq::store_outcome(&self.pool, tenant, req, status, Some(&message)).await?;
                self.publish(tenant, req, status, Some(message)).await?;
                tracing::info!(request_id = %req.request_id, operations = ?report.operations, "key request done");
                Ok(keyreq_outcome(req, status))
            }
            Err(f) => {
                let pending = f.error.class() == ErrorClass::Transient && !ctx.last_attempt;
                if pending {
                    let message = retry_message(&f.error);
                    self.report(tenant, req, KeyResultStatus::Pending, message)
                        .await;
                    Err(HandlerError::from(f.error))
                } else {
                    Err(self
                        .fail(ctx, tenant, req, HandlerError::from(f.error))
                        .await)
                }
            }
        }
    }

    /// Records and publishes `failed`, then hands the error back for the runtime's DLQ.
    async fn fail(
        &self,
        _ctx: &ApplyContext,
        tenant: &str,
        req: &KeyRequest,
        err: HandlerError,
    ) -> HandlerError {
        self.report(tenant, req, KeyResultStatus::Failed, err.message.clone())
            .await;
        err
    }

    /// Stores and publishes an outcome; failures are logged, not raised, so they never hide
    /// the lock system's own answer.
    async fn report(&self, tenant: &str, req: &KeyRequest, status: KeyResultStatus, msg: String) {
        if let Err(e) = keyreq::store_outcome(&self.pool, tenant, req, status, Some(&msg)).await {
            tracing::warn!(error = %e, "storing key request outcome failed");
        }
        if let Err(e) = self.publish(tenant, req, status, Some(msg)).await {
            tracing::warn!(error = %e, "publishing key request outcome failed");
        }
    }

    async fn publish(
        &self,
        tenant: &str,
        req: &KeyRequest,
        status: KeyResultStatus,
        message: Option<String>,
    ) -> Result<(), HandlerError> {
        let bus = self.bus().await?;
        let result = KeyResult {
            request_id: req.request_id,
            tenant: tenant.to_owned(),
            status,
            message,
            at: Utc::now(),
        };
        keyreq::publish_result(&bus.js, &bus.ns, &result).await?;
        Ok(())
    }
}

impl Handler for DormakabaHandler {
    fn name(&self) -> &'static str {
        WORKER
    }

    fn vendor(&self) -> Vendor {
        Vendor::Dormakaba
    }

    fn kinds(&self) -> &[EventKind] {
        &KINDS
    }

    async fn apply(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        match &event.body {
            EventBody::Reservation(r) => self.apply_reservation(ctx, event, r, binding).await,
            EventBody::KeyRequest(k) => self.apply_key_request(ctx, event, k).await,
            _ => Ok(ApplyOutcome::new("ignored", serde_json::json!({}))),
        }
    }

    async fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        if cmd.kind != EventKind::Reservation {
            return Err(HandlerError::permanent(format!(
                "dormakaba removals are reservation check-outs, not {}",
                cmd.kind.as_str()
            )));
        }
        self.remove_reservation(ctx, cmd, binding).await
    }
}

struct Limiter<'a>(&'a RateLimiter);

impl Throttle for Limiter<'_> {
    async fn acquire(&self) {
        self.0.acquire().await;
    }
}

fn record_status(rec: &LockRecord) -> &'static str {
    if rec.checked_out {
        "checked_out"
    } else if rec.booked {
        "booked"
    } else {
        "no_lock_booking"
    }
}

fn keyreq_outcome(req: &KeyRequest, status: KeyResultStatus) -> ApplyOutcome {
    let status = match status {
        KeyResultStatus::Pending => "pending",
        KeyResultStatus::Encoded => "encoded",
        KeyResultStatus::Sent => "sent",
        KeyResultStatus::Failed => "failed",
    };
    ApplyOutcome::new(
        status,
        serde_json::json!({
            "request_id": req.request_id,
            "reservation_key": req.reservation_key,
        }),
    )
}

fn success_message(req: &KeyRequest, report: &ExecReport) -> (KeyResultStatus, String) {
    match req.action {
        KeyAction::MobileKey => (
            KeyResultStatus::Sent,
            "mobile key sent; the app delivers it when the guest's surname and phone match"
                .to_owned(),
        ),
        KeyAction::NewKey | KeyAction::DuplicateKey => {
            let msg = if report.already_booked {
                "key ready (encoded by an earlier attempt; the lock system already had the booking)"
                    .to_owned()
            } else {
                format!(
                    "key ready: {} card(s) encoded on encoder {}",
                    report.cards,
                    report.encoder.as_deref().unwrap_or("?")
                )
            };
            (KeyResultStatus::Encoded, msg)
        }
    }
}

/// The front desk's "encoder busy, retrying".
fn retry_message(e: &SoapError) -> String {
    let what = match e.fault_code() {
        Some("EncoderBusy") => "encoder busy".to_owned(),
        Some("EncoderNotOnlineOrNotExist") => "encoder offline".to_owned(),
        Some("TimeoutWaitingKey") => "timed out waiting for a card".to_owned(),
        Some("KeyJammed") => "card jammed in the encoder".to_owned(),
        Some("RoomOFFLine") => "room offline".to_owned(),
        Some("BusyProcessingPreviousRequest") => "lock system busy".to_owned(),
        Some(other) => other.to_owned(),
        None => "lock system unreachable".to_owned(),
    };
    format!("{what}, retrying")
}

/// The reservation's desired state as booking-ingest stored it (`bookings.payload` holds the
/// whole event).
async fn load_reservation(
    pool: &PgPool,
    tenant: &str,
    key: &str,
) -> Result<Option<Reservation>, HandlerError> {
    let row: Option<(serde_json::Value,)> = sqlx::query_as(
        "SELECT payload FROM bookings WHERE tenant_id = $1 AND kind = 'reservation' AND booking_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::from)?;
    let Some((payload,)) = row else {
        return Ok(None);
    };
    if let Ok(ev) = serde_json::from_value::<Event>(payload.clone())
        && let EventBody::Reservation(r) = ev.body
    {
        return Ok(Some(r));
    }
    serde_json::from_value::<Reservation>(payload)
        .map(Some)
        .map_err(|e| {
            HandlerError::permanent(format!("stored reservation {key:?} is unreadable: {e}"))
        })
}

/// The advisory lock the runtime takes for the reservation's binding (same key format as
/// worker-runtime's `BindingKey::lock_key`), so a key request and a reservation event of the
/// same stay never change the lock-system booking at once.
async fn lock_reservation_binding(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    key: &str,
) -> Result<(), sqlx::Error> {
    let lock_key = format!("binding\x1f{tenant}\x1fdormakaba\x1freservation\x1f{key}");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(lock_key)
        .execute(conn)
        .await?;
    Ok(())
}

async fn load_record(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    key: &str,
) -> Result<LockRecord, sqlx::Error> {
    let row: Option<(serde_json::Value,)> = sqlx::query_as(
        "SELECT vendor_ids FROM bindings WHERE tenant_id = $1 AND vendor = 'dormakaba' \
         AND kind = 'reservation' AND booking_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row
        .map(|(v,)| LockRecord::from_json(&v))
        .unwrap_or_default())
}

/// Updates the record only: the reservation's applied revision stays the runtime's (0 when
/// no reservation event was applied yet, so the next one is still applied).
async fn save_record(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    key: &str,
    rec: &LockRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, vendor_ids, \
           status, updated_at) VALUES ($1, 'dormakaba', 'reservation', $2, 0, $3, $4, now()) \
         ON CONFLICT (tenant_id, vendor, kind, booking_key) DO UPDATE SET \
           vendor_ids = EXCLUDED.vendor_ids, status = EXCLUDED.status, updated_at = now()",
    )
    .bind(tenant)
    .bind(key)
    .bind(rec.to_json())
    .bind(record_status(rec))
    .execute(conn)
    .await?;
    Ok(())
}
