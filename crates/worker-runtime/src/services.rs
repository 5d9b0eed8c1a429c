//! What the runtime offers a handler besides the event, through [`ApplyContext`]: the stored
//! desired state of another booking, progress records, the lock and record of a related
//! booking, and publishing on the bus. A handler that needs more than one booking's vendor
//! state (dormakaba's key requests act on their reservation's lock-system booking) gets it
//! here — the runtime's lock, the runtime's records, the runtime's connections — instead of
//! opening a pool, a NATS connection or SQL of its own.

use accesshub_bus::Bus;
use accesshub_domain::{Event, EventBody, EventKind};
use async_nats::jetstream::message::PublishMessage;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::PgPool;

use crate::{
    bindings::BindingKey,
    handler::{ApplyContext, HandlerError, Recorded, Status},
    store::{BindingStore, Committed, LockGuard, Record},
};

/// Another connection of the context's tenant and vendor, with the runtime's client for it
/// (the same cached client its own events use).
pub struct Peer<C> {
    /// The connection.
    pub connection: std::sync::Arc<accesshub_connections::Connection>,
    /// Its vendor client.
    pub client: std::sync::Arc<C>,
}

impl<C> std::fmt::Debug for Peer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("connection", &self.connection.name)
            .finish_non_exhaustive()
    }
}

/// How a context reaches the tenant's other connections of its vendor (implemented by the
/// runner, which owns the connection source and the client cache).
pub(crate) trait Peers<C>: Send + Sync {
    /// The enabled connection serving `site` (as for an event of that site).
    fn for_site<'a>(
        &'a self,
        tenant: &'a str,
        site: &'a str,
    ) -> crate::BoxFuture<'a, Result<Option<Peer<C>>, HandlerError>>;
    /// The connection called `name`, enabled or not.
    fn by_name<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
    ) -> crate::BoxFuture<'a, Result<Option<Peer<C>>, HandlerError>>;
}

/// The worker's handles every context shares (one per worker, behind an `Arc`).
pub(crate) struct Handles {
    pub(crate) pool: PgPool,
    pub(crate) bus: Bus,
    pub(crate) store: BindingStore,
}

/// What a context carries: the shared handles (one `Arc` clone per message) and the booking's
/// recorded revision.
#[derive(Clone)]
pub(crate) struct Services {
    pub(crate) handles: std::sync::Arc<Handles>,
    /// Revision recorded for the context's own booking (0: none yet).
    pub(crate) recorded_revision: i64,
    /// The handler's `IDS_VERSION`, written with every record.
    pub(crate) ids_version: i16,
    /// Trace id of the message being handled, written with every record it makes.
    pub(crate) trace_id: Option<String>,
}

fn db(e: sqlx::Error, what: &str) -> HandlerError {
    HandlerError {
        class: accesshub_store::db_error_class(&e),
        message: format!("database ({what}): {e}"),
        retry_after: None,
    }
}

fn encode<I: Serialize>(ids: &I) -> Result<serde_json::Value, HandlerError> {
    serde_json::to_value(ids)
        .map_err(|e| HandlerError::permanent(format!("encode vendor ids: {e}")))
}

/// Writes a record without marking any revision applied: `revision` is the one the binding
/// already has (0 when there is none), so the next event is still applied.
async fn record_only(
    store: &BindingStore,
    key: BindingKey,
    revision: i64,
    (status, ids, ids_version): (Status, serde_json::Value, i16),
    trace_id: Option<String>,
) -> Result<(), HandlerError> {
    let rec = Record {
        key,
        revision,
        event_id: None,
        vendor_ids: ids,
        ids_version,
        status: status.as_str().to_owned(),
        trace_id,
    };
    match store.commit(rec).await? {
        Committed::Recorded => Ok(()),
        Committed::Superseded => Err(HandlerError::transient(
            "a newer revision was recorded meanwhile; retrying",
        )),
    }
}

/// The desired state stored for a booking: a whole [`Event`] (what booking-ingest writes),
/// a tagged body, or the bare payload of `kind`.
fn body_from_payload(kind: EventKind, text: &str) -> Result<EventBody, String> {
    if let Ok(ev) = serde_json::from_str::<Event>(text) {
        return Ok(ev.body);
    }
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if v.get("kind").is_some() && v.get("payload").is_some() {
        return serde_json::from_value(v).map_err(|e| e.to_string());
    }
    serde_json::from_value(serde_json::json!({"kind": kind.as_str(), "payload": v}))
        .map_err(|e| e.to_string())
}

impl<C> ApplyContext<C> {
    /// The desired state booking-ingest stored for a booking of this tenant (`None`: unknown
    /// to accesshub). Removals re-check it before deleting; key requests read their
    /// reservation from it. `None` too while the connection is being offboarded: it wants no
    /// access for any booking ([`ApplyContext::wants_access`]), so a removal re-check must
    /// not keep anything for it.
    pub async fn stored_body(
        &self,
        kind: EventKind,
        booking_key: &str,
    ) -> Result<Option<EventBody>, HandlerError> {
        Ok(self
            .stored_booking(kind, booking_key)
            .await?
            .map(|(_, body)| body))
    }

    /// [`stored_body`](Self::stored_body) with the booking's upstream site: which connection
    /// serves the booking now ([`connection_for_site`](Self::connection_for_site)). `None`
    /// too while the connection is being offboarded.
    pub async fn stored_booking(
        &self,
        kind: EventKind,
        booking_key: &str,
    ) -> Result<Option<(String, EventBody)>, HandlerError> {
        if !self.wants_access {
            return Ok(None);
        }
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT site, payload::text FROM bookings \
             WHERE tenant_id = $1 AND kind = $2 AND booking_key = $3",
        )
        .bind(&self.key.tenant)
        .bind(kind.as_str())
        .bind(booking_key)
        .fetch_optional(&self.services.handles.pool)
        .await
        .map_err(|e| db(e, "stored booking"))?;
        row.map(|(site, t)| {
            let body = body_from_payload(kind, &t).map_err(|e| {
                HandlerError::permanent(format!(
                    "stored {} {booking_key:?} is unreadable: {e}",
                    kind.as_str()
                ))
            })?;
            Ok((site, body))
        })
        .transpose()
    }

    /// The tenant's enabled connection of this vendor serving `site` now, with its client:
    /// a removal re-checks whether the booking is still this connection's, and objects left
    /// under the connection a booking moved away from are deleted through that connection.
    pub async fn connection_for_site(&self, site: &str) -> Result<Option<Peer<C>>, HandlerError> {
        self.peers.for_site(&self.key.tenant, site).await
    }

    /// The tenant's connection of this vendor called `name` (enabled or not), with its
    /// client: objects recorded under a connection the booking no longer uses are deleted
    /// through the connection that created them, not the current one.
    pub async fn connection_named(&self, name: &str) -> Result<Option<Peer<C>>, HandlerError> {
        self.peers.by_name(&self.key.tenant, name).await
    }

    /// Records `status` and `ids` for this booking now, durably, without marking the event
    /// applied: progress that a later attempt must see (a vendor call under way, a pending
    /// outcome). The booking's lock is the runtime's, held for the whole attempt.
    pub async fn record_progress<I: Serialize>(
        &self,
        status: Status,
        ids: &I,
    ) -> Result<(), HandlerError> {
        // Progress is recorded right before a vendor call: the fence belongs there.
        self.ensure_held().await?;
        record_only(
            &self.services.handles.store,
            self.key.clone(),
            self.services.recorded_revision,
            (status, encode(ids)?, self.services.ids_version),
            self.services.trace_id.clone(),
        )
        .await
    }

    /// Locks another booking of this vendor (the same lock the runtime takes for it, so its
    /// own events wait meanwhile, in this process and in every replica) and reads its record.
    /// No transaction is held: the lock is a session lock of the runtime's lock task.
    pub async fn lock_related<I: DeserializeOwned + Default>(
        &self,
        kind: EventKind,
        booking_key: &str,
    ) -> Result<Related<I>, HandlerError> {
        let key = BindingKey {
            tenant: self.key.tenant.clone(),
            vendor: self.key.vendor.clone(),
            kind: kind.as_str().to_owned(),
            booking_key: booking_key.to_owned(),
        };
        let held = self.services.handles.store.lock(&key, false).await?;
        let version = self.services.ids_version;
        let record = held
            .binding
            .as_ref()
            .map(|b| Recorded::from_binding(b, version));
        Ok(Related {
            guard: held.guard,
            key,
            store: self.services.handles.store.clone(),
            record,
            ids_version: version,
            trace_id: self.services.trace_id.clone(),
        })
    }

    /// The records of the tenant's **other** bookings of this vendor and kind whose vendor ids
    /// contain (JSONB `@>`) any of `fragments`, with their booking keys. A vendor whose objects
    /// carry no reference of ours (Tapkey grants) asks it before adopting or revoking an object
    /// it cannot prove is this booking's: an object another booking records is that booking's.
    /// A snapshot, not locked. Cost: one query over the tenant's bindings of this vendor and
    /// kind (a primary-key prefix, filtered row by row).
    pub async fn records_containing<I: DeserializeOwned + Default>(
        &self,
        fragments: &[serde_json::Value],
    ) -> Result<Vec<(String, Recorded<I>)>, HandlerError> {
        if fragments.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<crate::handler::Binding> = sqlx::query_as(
            "SELECT tenant_id, vendor, kind, booking_key, applied_revision, applied_event_id, \
               vendor_ids, ids_version, status, last_error, updated_at, trace_id FROM bindings \
             WHERE tenant_id = $1 AND vendor = $2 AND kind = $3 AND booking_key <> $4 \
               AND vendor_ids @> ANY($5::jsonb[]) \
             ORDER BY booking_key",
        )
        .bind(&self.key.tenant)
        .bind(&self.key.vendor)
        .bind(&self.key.kind)
        .bind(&self.key.booking_key)
        .bind(fragments)
        .fetch_all(&self.services.handles.pool)
        .await
        .map_err(|e| db(e, "records of other bookings"))?;
        let version = self.services.ids_version;
        Ok(rows
            .iter()
            .map(|b| (b.booking_key.clone(), Recorded::from_binding(b, version)))
            .collect())
    }

    /// Publishes `payload` on the namespaced `subject` and waits for the stream's PubAck;
    /// `msg_id` de-duplicates a retried publish.
    pub async fn publish(
        &self,
        subject: &str,
        payload: Vec<u8>,
        msg_id: Option<String>,
    ) -> Result<(), HandlerError> {
        let bus = &self.services.handles.bus;
        let mut msg = PublishMessage::build().payload(payload.into());
        if let Some(id) = msg_id {
            msg = msg.message_id(id);
        }
        bus.js
            .send_publish(bus.subject(subject), msg)
            .await
            .map_err(|e| HandlerError::transient(format!("publish {subject}: {e}")))?
            .await
            .map_err(|e| HandlerError::transient(format!("publish {subject}: {e}")))?;
        Ok(())
    }
}

/// Another booking's lock and record, from [`ApplyContext::lock_related`]; dropping it
/// releases the lock.
pub struct Related<I> {
    guard: LockGuard,
    key: BindingKey,
    store: BindingStore,
    record: Option<Recorded<I>>,
    ids_version: i16,
    /// The trace of the message that locked it (its records carry it).
    trace_id: Option<String>,
}

impl<I> std::fmt::Debug for Related<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Related")
            .field("booking", &self.key.booking_key)
            .field("recorded", &self.record.is_some())
            .finish_non_exhaustive()
    }
}

impl<I: Serialize> Related<I> {
    /// The booking's record, if it has one.
    pub fn record(&self) -> Option<&Recorded<I>> {
        self.record.as_ref()
    }

    /// Records the booking's vendor state now, durably, keeping the lock (its applied revision
    /// unchanged): what a vendor call about to start may create, so a crash during it leaves
    /// a trace for the booking's next event. Refused if the lock's session broke.
    pub async fn record_progress(&self, status: Status, ids: &I) -> Result<(), HandlerError> {
        self.guard.fence().ensure_held().await?;
        let revision = self.record.as_ref().map_or(0, |r| r.applied_revision);
        record_only(
            &self.store,
            self.key.clone(),
            revision,
            (status, encode(ids)?, self.ids_version),
            self.trace_id.clone(),
        )
        .await
    }

    /// Records the booking's new vendor state (its applied revision unchanged), then releases
    /// the lock. Refused if the lock's session broke meanwhile (another replica may hold it).
    pub async fn save(self, status: Status, ids: &I) -> Result<(), HandlerError> {
        if !self.guard.still_held() {
            return Err(HandlerError::transient(
                "lost the related booking's lock during the vendor call",
            ));
        }
        let revision = self.record.as_ref().map_or(0, |r| r.applied_revision);
        let result = record_only(
            &self.store,
            self.key.clone(),
            revision,
            (status, encode(ids)?, self.ids_version),
            self.trace_id.clone(),
        )
        .await;
        drop(self.guard);
        result
    }
}
