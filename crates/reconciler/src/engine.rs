//! One sync run: list the vendor's objects into a compact index, stream the desired bookings
//! from Postgres (never loading them all), compare per booking by reference and fingerprint,
//! and publish repair commands on the SYNC stream for the owning worker.
//!
//! Nothing is removed on the strength of a partial listing: if the vendor list fails, the run
//! fails before any command is sent.

use std::time::{Duration, Instant};

use accesshub_bus::Bus;
use accesshub_connections::Connection;
use accesshub_domain::{
    Event, EventBody, EventKind, SCHEMA_VERSION, Source, headers, subjects,
    sync::{self, RemoveCommand, SyncAction},
};
use async_nats::jetstream::{self, context::PublishAckFuture};
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::FuturesUnordered};
use sqlx::{PgPool, Row as _};

use accesshub_inventory::{Inventory, Records};

use crate::{
    error::ReconcileError,
    index::VendorIndex,
    model::{Counts, Scope, SyncRun},
    store,
};

/// How many repair publishes may await their PubAck at once.
const MAX_INFLIGHT: usize = 512;
/// How often progress is written to the run row (also the lease heartbeat).
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// Keys looked up per query when checking whether leftovers belong to out-of-scope bookings.
const LEFTOVER_CHUNK: usize = 1000;

/// How a run ended when it got to compare at all.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Counts.
    pub counts: Counts,
    /// Bookings that could not be judged (first few reasons), for the run's `error`.
    pub problems: Vec<String>,
    /// Objects listed at the vendor.
    pub vendor_objects: usize,
    /// Heap of the vendor index, for the benchmark.
    pub index_bytes: usize,
    /// Time spent listing the vendor.
    pub list_time: Duration,
    /// Time spent streaming and comparing.
    pub compare_time: Duration,
    /// What the run concluded besides its counts (offboarding: the connection's fate).
    pub note: Option<String>,
    /// What the pull phase found upstream, when the run pulled.
    pub pull: Option<crate::model::PullCounts>,
}

/// Which count a repair command lands in once the SYNC stream acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The booking's objects are missing.
    Create,
    /// Some are wrong or missing.
    Update,
    /// A stray or duplicate.
    Remove,
}

impl From<accesshub_inventory::Repair> for Repair {
    fn from(r: accesshub_inventory::Repair) -> Self {
        match r {
            accesshub_inventory::Repair::Create => Repair::Create,
            accesshub_inventory::Repair::Update => Repair::Update,
        }
    }
}

/// The bookings of a run's scope: `(full, horizon)` for the `bookings` queries (with `full`
/// every booking; otherwise those with access now or starting before the horizon).
pub(crate) fn scope_bounds(scope: Scope, now: DateTime<Utc>) -> (bool, DateTime<Utc>) {
    match scope {
        Scope::Full | Scope::Offboard => (true, now),
        Scope::Active => (false, now),
        Scope::Upcoming(d) => (false, now + chrono::Duration::days(i64::from(d))),
    }
}

/// Rebuilds the booking's event from its `bookings` row. booking-ingest stores the whole
/// serialized [`Event`] as `payload` (then the original event, with its id and `occurred_at`,
/// is what the worker gets again); an `EventBody` — tagged (`{"kind", "payload"}`) or the bare
/// payload of `kind` — is accepted too, completed from the row's columns.
pub fn event_from_row(
    tenant: &str,
    kind: &str,
    row: &sqlx::postgres::PgRow,
) -> Result<Event, String> {
    // Read as text and parsed straight into the event: no intermediate JSON tree (this is
    // the hot path of a million-booking sync).
    let text: String = row.try_get("payload").map_err(|e| e.to_string())?;
    if let Ok(ev) = serde_json::from_str::<Event>(&text) {
        return Ok(ev);
    }
    let payload: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("payload: {e}"))?;
    let body: EventBody = if payload.get("kind").is_some() && payload.get("payload").is_some() {
        serde_json::from_value(payload)
    } else {
        serde_json::from_value(serde_json::json!({"kind": kind, "payload": payload}))
    }
    .map_err(|e| format!("payload: {e}"))?;
    let source: String = row.try_get("source").map_err(|e| e.to_string())?;
    Ok(Event {
        id: row.try_get("event_id").map_err(|e| e.to_string())?,
        tenant: tenant.to_owned(),
        site: row.try_get("site").map_err(|e| e.to_string())?,
        booking_key: row.try_get("booking_key").map_err(|e| e.to_string())?,
        revision: row.try_get("revision").map_err(|e| e.to_string())?,
        source: source.parse().unwrap_or(Source::Native),
        occurred_at: row.try_get("updated_at").map_err(|e| e.to_string())?,
        schema_version: SCHEMA_VERSION,
        body,
    })
}

/// The vendor object a removal command names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoveTarget<'a> {
    pub(crate) kind: EventKind,
    pub(crate) booking_key: &'a str,
    pub(crate) reference: &'a str,
    pub(crate) vendor_id: &'a str,
}

/// One repair command to publish.
struct Command<'a> {
    repair: Repair,
    booking_key: &'a str,
    msg_suffix: &'a str,
    action: SyncAction,
    reason: &'a str,
    extra: &'a [(&'a str, String)],
    body: Vec<u8>,
}

/// Publishes repair commands on the SYNC stream with bounded in-flight PubAcks and tallies
/// them (also used by the dormakaba probe).
pub(crate) struct Publisher<'a> {
    bus: &'a Bus,
    run: &'a SyncRun,
    conn: &'a Connection,
    vendor: &'static str,
    inflight: FuturesUnordered<futures::future::BoxFuture<'static, (Repair, bool)>>,
}

impl<'a> Publisher<'a> {
    /// A publisher for one run of one connection.
    pub(crate) fn new(
        bus: &'a Bus,
        run: &'a SyncRun,
        conn: &'a Connection,
        vendor: &'static str,
    ) -> Self {
        Publisher {
            bus,
            run,
            conn,
            vendor,
            inflight: FuturesUnordered::new(),
        }
    }

    async fn send(&mut self, counts: &mut Counts, cmd: Command<'_>) {
        let Command {
            repair,
            booking_key,
            msg_suffix,
            action,
            reason,
            extra,
            body,
        } = cmd;
        while self.inflight.len() >= MAX_INFLIGHT {
            if let Some((r, ok)) = self.inflight.next().await {
                tally(counts, r, ok);
            }
        }
        let subject = self.bus.subject(&subjects::sync(
            self.vendor,
            &self.run.connection.tenant,
            booking_key,
        ));
        let mut h = async_nats::HeaderMap::new();
        h.insert(sync::HEADER_RUN, self.run.id.to_string().as_str());
        h.insert(sync::HEADER_FORCE, "true");
        h.insert(sync::HEADER_ACTION, action.as_str());
        h.insert(sync::HEADER_REASON, reason);
        h.insert(headers::TENANT, self.conn.tenant.as_str());
        for (k, v) in extra {
            h.insert(*k, v.as_str());
        }
        accesshub_telemetry::propagation::inject_nats(&mut h);
        let msg = jetstream::message::PublishMessage::build()
            .payload(body.into())
            .headers(h)
            .message_id(format!("sync-{}-{}", self.run.id, msg_suffix));
        let fut: Result<PublishAckFuture, _> = self.bus.js.send_publish(subject, msg).await;
        match fut {
            Ok(ack) => self.inflight.push(Box::pin(async move {
                match ack.await {
                    Ok(_) => (repair, true),
                    Err(e) => {
                        tracing::warn!(error = %e, "repair publish not acknowledged");
                        (repair, false)
                    }
                }
            })),
            Err(e) => {
                tracing::warn!(error = %e, "repair publish failed");
                tally(counts, repair, false);
            }
        }
    }

    /// `apply`: the worker re-applies `ev` although its binding holds that revision.
    pub(crate) async fn apply(
        &mut self,
        counts: &mut Counts,
        repair: Repair,
        ev: &Event,
        reason: &str,
    ) {
        let body = match serde_json::to_vec(ev) {
            Ok(b) => b,
            Err(_) => {
                counts.failed += 1;
                return;
            }
        };
        let extra = [
            (headers::KIND, ev.kind().as_str().to_owned()),
            (headers::REVISION, ev.revision.to_string()),
            (headers::EVENT_ID, ev.id.to_string()),
            (headers::SCHEMA_VERSION, ev.schema_version.to_string()),
        ];
        let suffix = format!("apply-{}-{}", subjects::token(&ev.booking_key), ev.revision);
        let cmd = Command {
            repair,
            booking_key: &ev.booking_key,
            msg_suffix: &suffix,
            action: SyncAction::Apply,
            reason,
            extra: &extra,
            body,
        };
        self.send(counts, cmd).await;
    }

    /// `remove`: the worker removes exactly this vendor object.
    pub(crate) async fn remove(
        &mut self,
        counts: &mut Counts,
        kind: EventKind,
        booking_key: &str,
        reference: &str,
        vendor_id: &str,
    ) {
        let suffix = format!("remove-{}", subjects::token(vendor_id));
        let target = RemoveTarget {
            kind,
            booking_key,
            reference,
            vendor_id,
        };
        self.remove_as(counts, target, "stray", &suffix).await;
    }

    /// `remove` with its own reason and message-id suffix (an offboard run sends a removal
    /// again in a later round: a new suffix, so JetStream does not drop it as a duplicate).
    pub(crate) async fn remove_as(
        &mut self,
        counts: &mut Counts,
        target: RemoveTarget<'_>,
        reason: &str,
        msg_suffix: &str,
    ) {
        let RemoveTarget {
            kind,
            booking_key,
            reference,
            vendor_id,
        } = target;
        let cmd = RemoveCommand {
            run_id: self.run.id,
            tenant: self.conn.tenant.clone(),
            vendor: self.vendor.to_owned(),
            connection: self.conn.name.clone(),
            kind,
            booking_key: booking_key.to_owned(),
            reference: reference.to_owned(),
            vendor_id: vendor_id.to_owned(),
        };
        let body = match serde_json::to_vec(&cmd) {
            Ok(b) => b,
            Err(_) => {
                counts.failed += 1;
                return;
            }
        };
        let extra = [(headers::KIND, kind.as_str().to_owned())];
        let cmd = Command {
            repair: Repair::Remove,
            booking_key,
            msg_suffix,
            action: SyncAction::Remove,
            reason,
            extra: &extra,
            body,
        };
        self.send(counts, cmd).await;
    }

    /// Waits for every outstanding PubAck.
    pub(crate) async fn drain(&mut self, counts: &mut Counts) {
        while let Some((r, ok)) = self.inflight.next().await {
            tally(counts, r, ok);
        }
    }
}

fn tally(c: &mut Counts, r: Repair, ok: bool) {
    if !ok {
        c.failed += 1;
        return;
    }
    match r {
        Repair::Create => c.created += 1,
        Repair::Update => c.updated += 1,
        Repair::Remove => c.removed += 1,
    }
}

/// Which connection serves a booking's site now.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// The connection being synced.
    This,
    /// Another of the tenant's connections to this vendor (the booking moved there).
    Other(&'a Connection),
    /// None: no enabled connection serves the site.
    Nobody,
}

/// The owner of `site` among `peers` (the tenant's connections to this vendor, `conn`
/// included), chosen as the workers choose ([`accesshub_connections::pick_for_site`]).
/// Without peers, `conn` owns what it serves.
pub fn owner<'a>(conn: &Connection, peers: &'a [Connection], site: &str) -> Owner<'a> {
    if peers.is_empty() {
        return if conn.serves_site(site) {
            Owner::This
        } else {
            Owner::Nobody
        };
    }
    match accesshub_connections::pick_for_site(peers, site) {
        Some(c) if c.name == conn.name => Owner::This,
        Some(c) => Owner::Other(c),
        None => Owner::Nobody,
    }
}

/// The pure comparison of one booking: which objects to remove (by vendor id) and whether the
/// booking must be applied again. For each desired reference one copy is kept — the first
/// listed that matches exactly, else the first listed (the vendor's order, oldest first where
/// it lists by creation); every further copy is a duplicate and removed, as is every object
/// whose reference is not desired.
pub fn judge<'a>(
    desired: &[accesshub_inventory::DesiredObject],
    actual: &[crate::index::IndexedObject<'a>],
) -> (Option<Repair>, Vec<(&'a str, &'a str)>) {
    let mut need_apply: Option<Repair> = None;
    let mut kept: Vec<usize> = Vec::new();
    for d in desired {
        let same = |a: &&crate::index::IndexedObject<'_>| a.reference == d.reference;
        let first = actual
            .iter()
            .position(|a| same(&a) && a.fingerprint == d.fingerprint)
            .or_else(|| actual.iter().position(|a| same(&a)));
        let r = match first {
            Some(i) => {
                kept.push(i);
                (actual[i].fingerprint != d.fingerprint).then_some(Repair::Update)
            }
            None => Some(Repair::Create),
        };
        need_apply = match (need_apply, r) {
            (Some(Repair::Update), _) | (_, Some(Repair::Update)) => Some(Repair::Update),
            (a, b) => a.or(b),
        };
    }
    // Partly present counts as an update of the booking, wholly absent as a creation.
    if matches!(need_apply, Some(Repair::Create)) && !actual.is_empty() {
        need_apply = Some(Repair::Update);
    }
    let extras = actual
        .iter()
        .enumerate()
        .filter(|(i, _)| !kept.contains(i))
        .map(|(_, a)| (a.reference, a.vendor_id))
        .collect();
    (need_apply, extras)
}

/// Runs the comparison for one connection and publishes the repairs. `peers` are the
/// tenant's connections to this vendor (`conn` included; empty: `conn` alone): objects listed
/// here of a booking another connection serves now are removed, unless they are exactly what
/// that connection wants (two connections reaching the same vendor account and place).
pub async fn sync_connection(
    pool: &PgPool,
    bus: &Bus,
    inv: &dyn Inventory,
    conn: &Connection,
    peers: &[Connection],
    run: &SyncRun,
    now: DateTime<Utc>,
) -> Result<Outcome, ReconcileError> {
    // Vendors without a list API are asked per booking.
    if let Some(p) = inv.prober() {
        return crate::probe::probe_connection(pool, bus, inv, p, conn, run, now).await;
    }
    let mut out = Outcome::default();
    let t0 = Instant::now();

    // 1. The vendor side, whole, into the compact index.
    let records = records_for(pool, inv, &conn.tenant).await?;
    let hint = inv.size_hint(conn).await.unwrap_or(0);
    let mut index = VendorIndex::with_capacity(hint);
    let mut objects = inv.list_ours(conn, &records);
    let mut last_beat = Instant::now();
    while let Some(o) = objects.try_next().await? {
        index
            .push(&o)
            .map_err(|m| ReconcileError::invalid("vendor object", m))?;
        if last_beat.elapsed() >= HEARTBEAT_EVERY {
            store::heartbeat(pool, run.id, &out.counts).await?;
            last_beat = Instant::now();
        }
    }
    drop(objects);
    index.finish();
    out.vendor_objects = index.len();
    out.index_bytes = index.heap_bytes();
    out.list_time = t0.elapsed();
    tracing::info!(
        run = run.id,
        objects = index.len(),
        index_bytes = out.index_bytes,
        secs = out.list_time.as_secs_f64(),
        "vendor listed"
    );

    // 2. The desired side, streamed.
    let t1 = Instant::now();
    let kinds: Vec<String> = inv.kinds().iter().map(|k| k.as_str().to_owned()).collect();
    let (full, horizon) = scope_bounds(run.scope, now);
    let mut publisher = Publisher::new(bus, run, conn, inv.vendor());
    let mut counts = Counts::default();
    {
        let mut rows = sqlx::query(
            "SELECT booking_key, kind, site, revision, source, event_id, payload::text AS payload,
                    updated_at
               FROM bookings
              WHERE tenant_id = $1 AND kind = ANY($2)
                AND ($3 OR ((ends_at IS NULL OR ends_at > $4)
                            AND (starts_at IS NULL OR starts_at <= $5)))",
        )
        .bind(&conn.tenant)
        .bind(&kinds)
        .bind(full)
        .bind(now)
        .bind(horizon)
        .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let key: String = row.try_get("booking_key")?;
            let kind: String = row.try_get("kind")?;
            let site: String = row.try_get("site")?;
            let positions: Vec<usize> = index.for_key(&key).map(|o| o.pos).collect();
            for &p in &positions {
                index.mark(p);
            }
            match owner(conn, peers, &site) {
                Owner::This => {}
                // Offboarding decides what becomes of a site no connection serves.
                Owner::Nobody => continue,
                Owner::Other(o) => {
                    let theirs = event_from_row(&conn.tenant, &kind, &row)
                        .and_then(|ev| inv.desired(o, &ev, now).map(|d| (ev.kind(), d)));
                    // Not judgeable under its owner: nothing is removed on a guess.
                    let Ok((kind, theirs)) = theirs else { continue };
                    let strays: Vec<(String, String)> = index
                        .for_key(&key)
                        .filter(|a| {
                            !theirs.iter().any(|d| {
                                d.reference == a.reference && d.fingerprint == a.fingerprint
                            })
                        })
                        .map(|a| (a.reference.to_owned(), a.vendor_id.to_owned()))
                        .collect();
                    for (reference, vendor_id) in strays {
                        publisher
                            .remove(&mut counts, kind, &key, &reference, &vendor_id)
                            .await;
                    }
                    continue;
                }
            }
            counts.checked += 1;
            let judged = event_from_row(&conn.tenant, &kind, &row)
                .and_then(|ev| inv.desired(conn, &ev, now).map(|d| (ev, d)));
            let (ev, desired) = match judged {
                Ok(x) => x,
                Err(m) => {
                    counts.failed += 1;
                    if out.problems.len() < 5 {
                        out.problems.push(format!("{key}: {m}"));
                    }
                    continue;
                }
            };
            let actual: Vec<_> = index.for_key(&key).collect();
            let (need_apply, extras) = judge(&desired, &actual);
            let extras: Vec<(String, String)> = extras
                .into_iter()
                .map(|(r, id)| (r.to_owned(), id.to_owned()))
                .collect();
            if need_apply.is_none() && extras.is_empty() {
                counts.in_sync += 1;
            }
            if let Some(r) = need_apply {
                let reason = if matches!(r, Repair::Create) {
                    "missing"
                } else {
                    "wrong"
                };
                publisher.apply(&mut counts, r, &ev, reason).await;
            }
            let kind = ev.kind();
            for (reference, vendor_id) in extras {
                publisher
                    .remove(&mut counts, kind, &key, &reference, &vendor_id)
                    .await;
            }
            if last_beat.elapsed() >= HEARTBEAT_EVERY {
                store::heartbeat(pool, run.id, &counts).await?;
                last_beat = Instant::now();
            }
        }
    }

    // 3. Leftovers: objects of bookings not streamed. With scope `full` every one is a stray;
    //    otherwise only those whose booking is unknown (out-of-scope bookings are not judged).
    let kind = inv
        .kinds()
        .first()
        .copied()
        .unwrap_or(EventKind::Reservation);
    let leftovers: Vec<(String, String, String)> = index
        .unmarked()
        .map(|o| {
            (
                o.booking_key.to_owned(),
                o.reference.to_owned(),
                o.vendor_id.to_owned(),
            )
        })
        .collect();
    for chunk in leftovers.chunks(LEFTOVER_CHUNK) {
        let known: std::collections::HashSet<String> = if full {
            Default::default()
        } else {
            let keys: Vec<&str> = chunk.iter().map(|(k, _, _)| k.as_str()).collect();
            sqlx::query_scalar(
                "SELECT booking_key FROM bookings
                  WHERE tenant_id = $1 AND kind = ANY($2) AND booking_key = ANY($3)",
            )
            .bind(&conn.tenant)
            .bind(&kinds)
            .bind(&keys)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect()
        };
        for (key, reference, vendor_id) in chunk {
            if known.contains(key) {
                continue;
            }
            publisher
                .remove(&mut counts, kind, key, reference, vendor_id)
                .await;
        }
    }
    publisher.drain(&mut counts).await;
    out.compare_time = t1.elapsed();
    out.counts = counts;
    Ok(out)
}

/// What [`Inventory::list_ours`] gets: the worker's records when the vendor needs them to
/// recognise ours, otherwise nothing.
pub(crate) async fn records_for(
    pool: &PgPool,
    inv: &dyn Inventory,
    tenant: &str,
) -> Result<Records, ReconcileError> {
    if inv.needs_records() {
        load_records(pool, inv.vendor(), tenant).await
    } else {
        Ok(Records::new())
    }
}

/// The worker's records (binding vendor ids) of every booking of `tenant` at `vendor`.
async fn load_records(
    pool: &PgPool,
    vendor: &str,
    tenant: &str,
) -> Result<Records, ReconcileError> {
    let mut rows = sqlx::query_as::<_, (String, serde_json::Value)>(
        "SELECT booking_key, vendor_ids FROM bindings WHERE tenant_id = $1 AND vendor = $2",
    )
    .bind(tenant)
    .bind(vendor)
    .fetch(pool);
    let mut records = Records::new();
    while let Some((key, ids)) = rows.try_next().await? {
        records.insert(key, ids);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexedObject;
    use accesshub_inventory::DesiredObject;

    fn obj<'a>(pos: usize, reference: &'a str, id: &'a str, fp: u64) -> IndexedObject<'a> {
        IndexedObject {
            pos,
            booking_key: "k",
            reference,
            vendor_id: id,
            fingerprint: fp,
        }
    }

    fn want(reference: &str, fp: u64) -> DesiredObject {
        DesiredObject {
            reference: reference.into(),
            fingerprint: fp,
        }
    }

    #[test]
    fn a_second_copy_of_a_desired_reference_is_a_duplicate_and_the_exact_one_is_kept() {
        let actual = [
            obj(0, "r1", "a", 9),
            obj(1, "r1", "b", 1),
            obj(2, "r1", "c", 1),
        ];
        let (apply, remove) = judge(&[want("r1", 1)], &actual);
        assert_eq!(apply, None);
        assert_eq!(remove, vec![("r1", "a"), ("r1", "c")]);
        // No exact copy: the first listed is kept and updated.
        let (apply, remove) = judge(&[want("r1", 5)], &actual);
        assert_eq!(apply, Some(Repair::Update));
        assert_eq!(remove, vec![("r1", "b"), ("r1", "c")]);
        // Not desired at all: every copy goes; missing desired: created.
        let (apply, remove) = judge(&[want("r2", 1)], &actual[..1]);
        assert_eq!(apply, Some(Repair::Update), "partly present");
        assert_eq!(remove, vec![("r1", "a")]);
        assert_eq!(judge(&[want("r2", 1)], &[]).0, Some(Repair::Create));
    }
}
