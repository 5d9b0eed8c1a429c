//! Batched access to `bindings` for all messages a worker has in flight: booking locks with
//! the binding read, group commit of applied records, unlocks.
//!
//! Why: one Postgres transaction per event (advisory lock, select, upsert, commit = one WAL
//! flush, five round trips, a pooled connection held across the vendor call) capped a worker
//! at the database's single-row commit rate. Here the messages in flight hand their requests
//! to two tasks that each execute whatever has queued as one statement:
//!
//! - The **lock task** owns one dedicated connection. It takes *session-level* advisory locks
//!   (`pg_try_advisory_lock`, the same key as before) for a batch of bookings in one
//!   statement, then reads the locked bookings' bindings in a second statement — a snapshot
//!   taken after the locks, so a record another replica committed before releasing its lock
//!   is seen. The lock is held across the vendor call and released only after the record is
//!   committed (principle 5 across replicas, as with the transaction-scoped lock before).
//!   Session locks die with the connection, so a crashed worker releases them exactly as it
//!   released its open transactions.
//!   For handlers that ask for it, the read also records in `vendor_attempts` that a vendor
//!   call may start for each locked booking that has no binding yet (committed before the
//!   lock is answered). Unlocks of finished bookings ride along with the next lock statement. A booking whose marker this batch inserted has provably never
//!   reached the vendor: the handler may skip looking for objects of an earlier attempt. Try-locks, not blocking ones: one booking held by
//!   another replica must not stall the shared connection; its message retries with backoff.
//!   A broken connection bumps the lock *epoch*: messages holding locks of an older epoch do not
//!   record (transient failure → redelivery → revision check), as a lost transaction failed
//!   its commit before.
//! - The **committer** writes the records of a batch of messages with one
//!   `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE … WHERE applied_revision <=
//!   EXCLUDED.applied_revision`: one statement, one WAL flush for the batch. The guard keeps
//!   records monotonic even if a lock was lost unnoticed (a guarded-out row is reported, not
//!   recorded). A failing batch is retried row by row, so one bad row fails alone. Each message
//!   waits for its own row before it acks: vendor call → durable record → ack.
//!
//! Both run on a pool whose prepared statements keep their cached generic plan: with custom
//! plans, planning the batch statements cost about as much Postgres CPU as running them
//! (pgbench, 8 bookings per statement: 1,070 vs 1,770 statements/s on one backend). Their
//! plans must therefore not depend on statistics (see `binding_probe`); a test checks the
//! generic plans made on a fresh database.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use accesshub_retry::{Backoff, RetryPolicy};
use sqlx::{PgConnection, PgPool};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};
use uuid::Uuid;

use crate::{
    bindings::BindingKey,
    handler::{Binding, HandlerError},
};

/// Most requests one statement carries.
const MAX_BATCH: usize = 512;

/// A batch smaller than this waits [`BindingStore::start`]'s `linger` for company first.
const LINGER_BELOW: usize = 32;

/// Waits for the next batch: whatever is queued, and — when that is little — whatever else
/// arrives within `linger`. A statement's fixed cost (round trip, planning, a WAL flush for
/// writes) dominates small batches: lingering a millisecond trades that much latency for
/// fewer, larger statements (less CPU in Postgres and here per event). Returns 0 when every
/// sender is gone.
async fn next_batch<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    buf: &mut Vec<T>,
    linger: Duration,
) -> usize {
    let n = rx.recv_many(buf, MAX_BATCH).await;
    if n == 0 || n >= LINGER_BELOW || linger.is_zero() {
        return n;
    }
    tokio::time::sleep(linger).await;
    while buf.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(m) => buf.push(m),
            Err(_) => break,
        }
    }
    buf.len()
}

/// The lock task's answer to one request.
#[derive(Debug)]
struct Locked {
    /// Whether this session holds the booking's lock now.
    held: bool,
    /// The booking's binding (read after the lock).
    binding: Option<Binding>,
    /// The attempt marker was inserted by this request: no earlier attempt exists.
    first: bool,
    /// Lock session epoch.
    epoch: u64,
}

type LockReply = oneshot::Sender<Result<Locked, HandlerError>>;

enum LockMsg {
    /// Lock a booking (and, with `mark`, record the attempt when it has no binding).
    Lock {
        key: BindingKey,
        mark: bool,
        reply: LockReply,
    },
    Unlock(BindingKey, u64),
    /// Fence: answer whether the session of `epoch` still holds its locks, proven by a
    /// statement that succeeds on it *after* this request was received.
    Check {
        epoch: u64,
        reply: oneshot::Sender<bool>,
    },
}

/// What [`BindingStore::lock`] hands a message in flight.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) guard: LockGuard,
    pub(crate) binding: Option<Binding>,
    /// No attempt of any event of this booking has reached the vendor before: there was no
    /// binding and this lock inserted the booking's durable attempt marker (only with `mark`).
    pub(crate) first_attempt: bool,
}

/// One applied record for the committer.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) key: BindingKey,
    pub(crate) revision: i64,
    /// The event applied; `None` for a record-only write (progress, a related booking's
    /// record), which keeps the row's applied event.
    pub(crate) event_id: Option<Uuid>,
    pub(crate) vendor_ids: serde_json::Value,
    /// Shape version of `vendor_ids` (the handler's `IDS_VERSION`).
    pub(crate) ids_version: i16,
    pub(crate) status: String,
    /// Trace id of the message whose attempt wrote the record (`None`: not traced), so the
    /// console can show which trace applied what the binding holds.
    pub(crate) trace_id: Option<String>,
}

/// Result of a commit: recorded, or refused by the revision guard (a newer record exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    Recorded,
    Superseded,
}

type CommitReply = oneshot::Sender<Result<Committed, HandlerError>>;

/// Handle to the lock task and the committer (cheap to clone).
#[derive(Clone)]
pub(crate) struct BindingStore {
    locks: mpsc::UnboundedSender<LockMsg>,
    commits: mpsc::UnboundedSender<(Record, CommitReply)>,
    epoch: Arc<AtomicU64>,
}

/// Holds one booking's lock; dropping it queues the unlock (also on cancellation or panic).
#[derive(Debug)]
pub(crate) struct LockGuard {
    key: Option<BindingKey>,
    fence: Fence,
}

impl LockGuard {
    /// Whether the session that granted the lock is still the lock task's session, as far
    /// as this process knows: a connection dropped by the server is noticed only by the next
    /// statement on it. Before a vendor call, ask [`Fence::ensure_held`] instead.
    pub(crate) fn still_held(&self) -> bool {
        self.fence.still_held()
    }

    /// The lock's fence, for the handler's context.
    pub(crate) fn fence(&self) -> Fence {
        self.fence.clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.fence.tx.send(LockMsg::Unlock(key, self.fence.epoch));
        }
    }
}

/// Proves, right before a vendor call, that the locks of one lock session are still held.
///
/// Why: session advisory locks die with their connection, and a connection the server
/// dropped (`pg_terminate_backend`, a failover, an idle timeout) is noticed only by the next
/// statement on it — meanwhile another replica can take the booking and call the vendor too.
/// [`Fence::ensure_held`] asks the lock task for a statement that succeeds on the session
/// after the question was asked; it rides along with the lock task's next batch (the lock and
/// unlock statements of every message), so a busy worker pays no extra round trip, an idle one a
/// `SELECT 1`.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    epoch: u64,
    tx: mpsc::UnboundedSender<LockMsg>,
    current: Arc<AtomicU64>,
}

impl Fence {
    fn still_held(&self) -> bool {
        self.current.load(Ordering::SeqCst) == self.epoch
    }

    /// `Ok` only if the lock session was alive after this call began; otherwise a transient
    /// error (the redelivery re-checks the revision under a new lock).
    pub(crate) async fn ensure_held(&self) -> Result<(), HandlerError> {
        let lost = || HandlerError::transient("lost the booking lock before the vendor call");
        if !self.still_held() {
            return Err(lost());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(LockMsg::Check {
                epoch: self.epoch,
                reply,
            })
            .map_err(|_| gone())?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(lost()),
            Err(_) => Err(gone()),
        }
    }
}

fn db_err(e: &sqlx::Error, what: &str) -> HandlerError {
    HandlerError {
        class: accesshub_store::db_error_class(e),
        message: format!("database ({what}): {e}"),
        retry_after: None,
    }
}

fn gone() -> HandlerError {
    HandlerError::transient("binding store stopped")
}

impl BindingStore {
    /// Starts the two tasks in `tasks` (they stop when every handle is dropped, or with the
    /// set). A small batch waits up to `linger` for more requests before it is executed.
    pub(crate) fn start(pool: PgPool, linger: Duration, tasks: &mut JoinSet<()>) -> Self {
        let (locks, lock_rx) = mpsc::unbounded_channel();
        let (commits, commit_rx) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        tasks.spawn(lock_task(pool.clone(), lock_rx, epoch.clone(), linger));
        tasks.spawn(commit_task(pool, commit_rx, linger));
        BindingStore {
            locks,
            commits,
            epoch,
        }
    }

    /// Tries once to lock `key` and read its binding; `None` while another session (replica)
    /// holds it. With `mark`, a booking without a binding gets its attempt marker (see
    /// [`Held::first_attempt`]).
    pub(crate) async fn try_lock(
        &self,
        key: &BindingKey,
        mark: bool,
    ) -> Result<Option<Held>, HandlerError> {
        let (tx, rx) = oneshot::channel();
        self.locks
            .send(LockMsg::Lock {
                key: key.clone(),
                mark,
                reply: tx,
            })
            .map_err(|_| gone())?;
        let l = rx.await.map_err(|_| gone())??;
        if !l.held {
            return Ok(None);
        }
        let guard = LockGuard {
            key: Some(key.clone()),
            fence: Fence {
                epoch: l.epoch,
                tx: self.locks.clone(),
                current: self.epoch.clone(),
            },
        };
        Ok(Some(Held {
            guard,
            binding: l.binding,
            first_attempt: l.first,
        }))
    }

    /// Locks `key`, waiting (jittered backoff, 5 ms doubling to 500 ms) while another replica
    /// holds it. No limit: the holder's lock goes with its session, and the message's own
    /// progress acks keep it from being redelivered meanwhile.
    pub(crate) async fn lock(&self, key: &BindingKey, mark: bool) -> Result<Held, HandlerError> {
        let mut waits = LOCK_WAIT.attempts();
        loop {
            if let Some(held) = self.try_lock(key, mark).await? {
                return Ok(held);
            }
            let wait = waits.next_wait().unwrap_or(LOCK_WAIT.backoff.max);
            tracing::debug!(?wait, booking = %key.booking_key, "booking locked by another replica; waiting");
            tokio::time::sleep(wait).await;
        }
    }

    /// Writes `rec` with the next group commit and waits until it is durable.
    pub(crate) async fn commit(&self, rec: Record) -> Result<Committed, HandlerError> {
        let (tx, rx) = oneshot::channel();
        self.commits.send((rec, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// Waits for a booking another replica holds.
const LOCK_WAIT: RetryPolicy = RetryPolicy::forever(Backoff::new(
    Duration::from_millis(5),
    Duration::from_millis(500),
));

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended(k, 0)) \
     FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i";

/// [`TRY_LOCK`] that first releases the finished bookings' locks ($1): one round trip and one
/// statement instead of two. The uncorrelated sub-select is a one-time filter, evaluated (all
/// unlocks done) before the first lock is tried; releasing and taking the same key in one
/// batch gives the same result in either order (session locks count).
const UNLOCK_AND_TRY_LOCK: &str = "WITH u AS (SELECT pg_advisory_unlock(hashtextextended(k, 0)) \
       FROM unnest($1::text[]) AS t(k)) \
     SELECT pg_try_advisory_lock(hashtextextended(k, 0)) \
     FROM unnest($2::text[]) WITH ORDINALITY AS t(k, i) \
     WHERE (SELECT count(*) FROM u) >= 0 ORDER BY i";

const UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS t(k)";

/// The booking's binding, probed by primary key. The store's statements run on their cached
/// *generic* plan (planning them per execution cost as much as running them), so the plan
/// must not depend on statistics: `LATERAL … LIMIT 1` makes it one parameterised probe per
/// booking (a join of the unnested keys with `bindings` is planned as a hash join over a
/// sequential scan when the plan is made on a never-analysed table), and `bindings` has no
/// index but its primary key that such a probe could pick (see migration
/// `bindings_drop_vendor_status_idx`).
macro_rules! binding_probe {
    () => {
        "LEFT JOIN LATERAL (SELECT x.tenant_id, x.vendor, x.kind, x.booking_key, \
           x.applied_revision, x.applied_event_id, x.vendor_ids, x.ids_version, x.status, \
           x.last_error, x.updated_at, x.trace_id FROM bindings x \
         WHERE x.tenant_id = k.tenant_id AND x.vendor = k.vendor AND x.kind = k.kind \
           AND x.booking_key = k.booking_key LIMIT 1) b ON true"
    };
}

const LOAD_MANY: &str = concat!(
    "SELECT b.tenant_id, b.vendor, b.kind, b.booking_key, b.applied_revision, \
       b.applied_event_id, b.vendor_ids, b.ids_version, b.status, b.last_error, b.updated_at, \
       b.trace_id, false AS first \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
       AS k(tenant_id, vendor, kind, booking_key) ",
    binding_probe!(),
    " WHERE b.tenant_id IS NOT NULL"
);

/// [`LOAD_MANY`] that also inserts the attempt markers of the bookings with `mark` ($5) and
/// no binding, in the same statement (its snapshot is taken after the locks, like the read's;
/// autocommit: the markers are durable before any message's task hears back, so before its vendor
/// call). Binding rows come back with `first = false`; a marker this statement inserted comes
/// back as a placeholder row with `first = true`.
const LOAD_AND_MARK: &str = concat!(
    "WITH k AS MATERIALIZED (SELECT k.tenant_id, k.vendor, k.kind, k.booking_key, k.mark, \
       b.applied_revision, b.applied_event_id, b.vendor_ids, b.ids_version, b.status, \
       b.last_error, b.updated_at, b.trace_id, b.tenant_id IS NOT NULL AS bound \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[]) \
       AS k(tenant_id, vendor, kind, booking_key, mark) ",
    binding_probe!(),
    "), \
     ins AS (INSERT INTO vendor_attempts (tenant_id, vendor, kind, booking_key) \
       SELECT tenant_id, vendor, kind, booking_key FROM k WHERE mark AND NOT bound \
       ON CONFLICT DO NOTHING RETURNING tenant_id, vendor, kind, booking_key) \
     SELECT tenant_id, vendor, kind, booking_key, applied_revision, applied_event_id, \
       vendor_ids, ids_version, status, last_error, updated_at, trace_id, false AS first \
     FROM k WHERE bound \
     UNION ALL \
     SELECT tenant_id, vendor, kind, booking_key, 0::int8, NULL::uuid, '{}'::jsonb, 1::int2, '', \
       NULL::text, now(), NULL::text, true FROM ins"
);

/// A row of [`LOAD_MANY`] / [`LOAD_AND_MARK`].
#[derive(sqlx::FromRow)]
struct Loaded {
    #[sqlx(flatten)]
    binding: Binding,
    first: bool,
}

/// Locks and reads a batch on `conn`: per request whether it is held, its binding, and
/// whether its attempt marker was inserted now (requests with `mark` and no binding).
/// `markers` turns false for good when the table is missing (not migrated yet): nothing is
/// then "first", which only costs the lookups the markers save.
async fn lock_batch(
    conn: &mut PgConnection,
    unlocks: &[String],
    keys: &[(&BindingKey, bool)],
    markers: &mut bool,
) -> Result<Vec<(bool, Option<Binding>, bool)>, sqlx::Error> {
    if keys.is_empty() {
        if !unlocks.is_empty() {
            sqlx::query(UNLOCK)
                .bind(unlocks)
                .execute(&mut *conn)
                .await?;
        }
        return Ok(Vec::new());
    }
    let lock_keys: Vec<String> = keys.iter().map(|(k, _)| k.lock_key()).collect();
    let held: Vec<bool> = if unlocks.is_empty() {
        sqlx::query_scalar(TRY_LOCK).bind(&lock_keys)
    } else {
        sqlx::query_scalar(UNLOCK_AND_TRY_LOCK)
            .bind(unlocks)
            .bind(&lock_keys)
    }
    .fetch_all(&mut *conn)
    .await?;
    let locked: Vec<(&BindingKey, bool)> = keys
        .iter()
        .zip(&held)
        .filter(|(_, h)| **h)
        .map(|((k, m), _)| (*k, *m))
        .collect();
    let mut found: HashMap<BindingKey, Binding> = HashMap::new();
    let mut first: HashSet<BindingKey> = HashSet::new();
    if !locked.is_empty() {
        let col = |f: fn(&BindingKey) -> &String| -> Vec<&str> {
            locked.iter().map(|(k, _)| f(k).as_str()).collect()
        };
        let mark = *markers && locked.iter().any(|(_, m)| *m);
        let rows: Vec<Loaded> = if mark {
            let res = sqlx::query_as(LOAD_AND_MARK)
                .bind(col(|k| &k.tenant))
                .bind(col(|k| &k.vendor))
                .bind(col(|k| &k.kind))
                .bind(col(|k| &k.booking_key))
                .bind(locked.iter().map(|(_, m)| *m).collect::<Vec<bool>>())
                .fetch_all(&mut *conn)
                .await;
            match res {
                Ok(rows) => rows,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                    tracing::warn!(error = %e, "vendor_attempts missing (run migrations); no attempt markers");
                    *markers = false;
                    Vec::new()
                }
                Err(e) => return Err(e),
            }
        } else {
            Vec::new()
        };
        let rows = if mark && *markers {
            rows
        } else {
            sqlx::query_as(LOAD_MANY)
                .bind(col(|k| &k.tenant))
                .bind(col(|k| &k.vendor))
                .bind(col(|k| &k.kind))
                .bind(col(|k| &k.booking_key))
                .fetch_all(&mut *conn)
                .await?
        };
        for Loaded {
            binding: b,
            first: f,
        } in rows
        {
            let key = BindingKey {
                tenant: b.tenant_id.clone(),
                vendor: b.vendor.clone(),
                kind: b.kind.clone(),
                booking_key: b.booking_key.clone(),
            };
            if f {
                first.insert(key);
            } else {
                found.insert(key, b);
            }
        }
    }
    // A key asked twice in one batch (not possible from the dispatch, which processes one
    // message per booking at a time): only the first request can be the first attempt.
    Ok(keys
        .iter()
        .zip(held)
        .map(|((k, mark), h)| {
            let binding = if h { found.get(*k).cloned() } else { None };
            let is_first = h && *mark && first.remove(*k);
            (h, binding, is_first)
        })
        .collect())
}

async fn lock_task(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<LockMsg>,
    epoch: Arc<AtomicU64>,
    linger: Duration,
) {
    let mut conn: Option<PgConnection> = None;
    let mut buf = Vec::with_capacity(MAX_BATCH);
    let mut orphaned: Vec<String> = Vec::new();
    let mut markers = true;
    // Session advisory locks are re-entrant within the session, so the session alone does
    // not keep two messages of this process off one booking (a handler may lock a related
    // booking, see `ApplyContext::lock_related`): the keys this session holds are tracked
    // here, and a second request for one of them is answered "held elsewhere".
    let mut local: HashSet<BindingKey> = HashSet::new();
    while next_batch(&mut rx, &mut buf, linger).await > 0 {
        let current = epoch.load(Ordering::SeqCst);
        let mut unlocks = std::mem::take(&mut orphaned);
        let mut requests = Vec::new();
        let mut checks = Vec::new();
        for m in buf.drain(..) {
            match m {
                LockMsg::Check { epoch: e, reply } if e == current => checks.push(reply),
                // An older session's locks are gone with it.
                LockMsg::Check { reply, .. } => {
                    let _ = reply.send(false);
                }
                // A lock of a lost session is already released.
                LockMsg::Unlock(k, e) if e == current => {
                    unlocks.push(k.lock_key());
                    local.remove(&k);
                }
                LockMsg::Unlock(..) => {}
                LockMsg::Lock { key, reply, .. } if local.contains(&key) => {
                    let _ = reply.send(Ok(Locked {
                        held: false,
                        binding: None,
                        first: false,
                        epoch: current,
                    }));
                }
                LockMsg::Lock { key, mark, reply } => {
                    // Held from here on for later requests of this batch and later batches;
                    // removed again below if the session does not get it.
                    local.insert(key.clone());
                    requests.push((key, mark, reply));
                }
            }
        }
        if conn.is_none() {
            // No session: the current epoch holds nothing yet.
            for reply in checks.drain(..) {
                let _ = reply.send(false);
            }
            if requests.is_empty() {
                continue; // nothing held, nothing asked
            }
            match pool.acquire().await {
                Ok(c) => conn = Some(c.detach()),
                Err(e) => {
                    let err = db_err(&e, "lock connection");
                    for (key, _, reply) in requests {
                        local.remove(&key);
                        let _ = reply.send(Err(err.clone()));
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let keys: Vec<(&BindingKey, bool)> = requests.iter().map(|(k, m, _)| (k, *m)).collect();
        // Fence checks ride along with the batch's own statement; alone, they get a ping.
        let ping = !checks.is_empty() && keys.is_empty() && unlocks.is_empty();
        let result = if ping {
            sqlx::query("SELECT 1")
                .execute(&mut *c)
                .await
                .map(|_| Vec::new())
        } else {
            lock_batch(c, &unlocks, &keys, &mut markers).await
        };
        for reply in checks {
            let _ = reply.send(result.is_ok());
        }
        match result {
            Ok(results) => {
                for ((key, _, reply), (held, binding, first)) in requests.into_iter().zip(results) {
                    if !held {
                        local.remove(&key);
                    }
                    let answer = Locked {
                        held,
                        binding,
                        first,
                        epoch: current,
                    };
                    if reply.send(Ok(answer)).is_err() && held {
                        // The message's task is gone (cancelled): nobody will release this lock.
                        orphaned.push(key.lock_key());
                        local.remove(&key);
                    }
                }
            }
            Err(e) => {
                // Whatever this session held is released with it; lanes still holding a
                // guard of this epoch see `still_held() == false` and do not record.
                tracing::warn!(error = %e, "booking lock connection failed; reconnecting");
                conn = None;
                orphaned.clear();
                local.clear();
                epoch.fetch_add(1, Ordering::SeqCst);
                let err = db_err(&e, "booking lock");
                for (_, _, reply) in requests {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

const UPSERT_MANY: &str = "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, \
       applied_revision, applied_event_id, vendor_ids, ids_version, status, last_error, \
       updated_at, trace_id) \
     SELECT t.tenant_id, t.vendor, t.kind, t.booking_key, t.applied_revision, \
       t.applied_event_id, t.vendor_ids, t.ids_version, t.status, NULL, now(), t.trace_id \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::uuid[], \
       $7::jsonb[], $8::text[], $9::int2[], $10::text[]) AS t(tenant_id, vendor, kind, \
       booking_key, applied_revision, applied_event_id, vendor_ids, status, ids_version, \
       trace_id) \
     ON CONFLICT (tenant_id, vendor, kind, booking_key) DO UPDATE SET \
       applied_revision = EXCLUDED.applied_revision, \
       applied_event_id = COALESCE(EXCLUDED.applied_event_id, bindings.applied_event_id), \
       vendor_ids = EXCLUDED.vendor_ids, ids_version = EXCLUDED.ids_version, \
       status = EXCLUDED.status, last_error = NULL, \
       last_error_at = NULL, updated_at = now(), trace_id = EXCLUDED.trace_id \
     WHERE bindings.applied_revision <= EXCLUDED.applied_revision \
     RETURNING tenant_id, vendor, kind, booking_key";

/// One statement (autocommit: one WAL flush) for records with distinct keys; returns the
/// keys recorded (the others were refused by the revision guard).
async fn write(pool: &PgPool, recs: &[&Record]) -> Result<HashSet<BindingKey>, sqlx::Error> {
    let col = |f: fn(&Record) -> &str| -> Vec<&str> { recs.iter().map(|r| f(r)).collect() };
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(UPSERT_MANY)
        .bind(col(|r| &r.key.tenant))
        .bind(col(|r| &r.key.vendor))
        .bind(col(|r| &r.key.kind))
        .bind(col(|r| &r.key.booking_key))
        .bind(recs.iter().map(|r| r.revision).collect::<Vec<i64>>())
        .bind(
            recs.iter()
                .map(|r| r.event_id)
                .collect::<Vec<Option<Uuid>>>(),
        )
        .bind(
            recs.iter()
                .map(|r| r.vendor_ids.clone())
                .collect::<Vec<serde_json::Value>>(),
        )
        .bind(col(|r| &r.status))
        .bind(recs.iter().map(|r| r.ids_version).collect::<Vec<i16>>())
        .bind(
            recs.iter()
                .map(|r| r.trace_id.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant, vendor, kind, booking_key)| BindingKey {
            tenant,
            vendor,
            kind,
            booking_key,
        })
        .collect())
}

fn outcome(recorded: &HashSet<BindingKey>, key: &BindingKey) -> Committed {
    if recorded.contains(key) {
        Committed::Recorded
    } else {
        Committed::Superseded
    }
}

async fn commit_task(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<(Record, CommitReply)>,
    linger: Duration,
) {
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut rx, &mut buf, linger).await > 0 {
        // A lane has at most one record in flight, so keys are distinct; should one repeat
        // anyway, it goes into the next statement (one row may be upserted once per statement).
        let mut rest: Vec<(Record, CommitReply)> = std::mem::take(&mut buf);
        while !rest.is_empty() {
            let mut seen = HashSet::new();
            let (chunk, later): (Vec<_>, Vec<_>) = rest
                .into_iter()
                .partition(|(r, _)| seen.insert(r.key.clone()));
            rest = later;
            commit_chunk(&pool, chunk).await;
        }
    }
}

async fn commit_chunk(pool: &PgPool, chunk: Vec<(Record, CommitReply)>) {
    let recs: Vec<&Record> = chunk.iter().map(|(r, _)| r).collect();
    match write(pool, &recs).await {
        Ok(recorded) => {
            for (r, reply) in chunk {
                let _ = reply.send(Ok(outcome(&recorded, &r.key)));
            }
        }
        Err(e) if chunk.len() == 1 => {
            for (_, reply) in chunk {
                let _ = reply.send(Err(db_err(&e, "save binding")));
            }
        }
        Err(e) => {
            // One bad row must not fail the others: each on its own.
            tracing::warn!(error = %e, rows = chunk.len(), "group commit failed; writing rows one by one");
            for (r, reply) in chunk {
                let res = write(pool, &[&r])
                    .await
                    .map(|rec| outcome(&rec, &r.key))
                    .map_err(|e| db_err(&e, "save binding"));
                let _ = reply.send(res);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use accesshub_testkit::TestDb;

    fn key(k: &str) -> BindingKey {
        BindingKey {
            tenant: "acme".into(),
            vendor: "tapkey".into(),
            kind: "pass".into(),
            booking_key: k.into(),
        }
    }

    fn rec(k: &str, revision: i64, vendor_ids: serde_json::Value) -> Record {
        Record {
            key: key(k),
            revision,
            event_id: Some(Uuid::now_v7()),
            vendor_ids,
            ids_version: 1,
            status: "active".into(),
            trace_id: Some(format!("{:032x}", revision + 1)),
        }
    }

    async fn store(db: &TestDb) -> (BindingStore, JoinSet<()>) {
        let pool = accesshub_store::connect_lazy_generic(&db.url, 4).unwrap();
        let mut tasks = JoinSet::new();
        let s = BindingStore::start(pool, Duration::from_millis(1), &mut tasks);
        (s, tasks)
    }

    async fn revision(db: &TestDb, k: &str) -> Option<i64> {
        crate::get_binding(&db.pool, &key(k))
            .await
            .unwrap()
            .map(|b| b.applied_revision)
    }

    #[tokio::test]
    async fn a_bad_row_fails_alone_in_a_group_commit() {
        let db = TestDb::new().await;
        let pool = accesshub_store::connect_lazy_generic(&db.url, 2).unwrap();
        // jsonb refuses \u0000: that row's statement fails, which fails the whole batch.
        let mut chunk = Vec::new();
        let mut replies = Vec::new();
        for (k, ids) in [
            ("good1", serde_json::json!({"g": 1})),
            ("bad", serde_json::json!({"g": "nul\u{0}"})),
            ("good2", serde_json::json!({"g": 2})),
        ] {
            let (tx, rx) = oneshot::channel();
            chunk.push((rec(k, 1, ids), tx));
            replies.push((k, rx));
        }
        commit_chunk(&pool, chunk).await;
        for (k, rx) in replies {
            let r = rx.await.unwrap();
            if k == "bad" {
                let e = r.unwrap_err();
                assert_eq!(e.class, accesshub_domain::ErrorClass::Permanent, "{e}");
                assert_eq!(revision(&db, k).await, None);
            } else {
                assert_eq!(r.unwrap(), Committed::Recorded);
                assert_eq!(revision(&db, k).await, Some(1));
            }
        }
        db.drop_db().await;
    }

    #[tokio::test]
    async fn many_lanes_commit_together_and_the_guard_keeps_records_monotonic() {
        let db = TestDb::new().await;
        let (s, tasks) = store(&db).await;
        let mut joins = JoinSet::new();
        for i in 0..200 {
            let s = s.clone();
            joins.spawn(async move {
                let k = format!("b{i}");
                let Held { guard, binding, .. } = s.lock(&key(&k), false).await.unwrap();
                assert!(binding.is_none());
                let r = s.commit(rec(&k, 2, serde_json::json!({"i": i}))).await;
                drop(guard);
                r.unwrap()
            });
        }
        while let Some(r) = joins.join_next().await {
            assert_eq!(r.unwrap(), Committed::Recorded);
        }
        for i in 0..200 {
            assert_eq!(revision(&db, &format!("b{i}")).await, Some(2));
        }
        // An older revision is refused, an equal one (a forced re-apply) recorded.
        assert_eq!(
            s.commit(rec("b0", 1, serde_json::json!({}))).await.unwrap(),
            Committed::Superseded
        );
        assert_eq!(
            s.commit(rec("b0", 2, serde_json::json!({"again": true})))
                .await
                .unwrap(),
            Committed::Recorded
        );
        let b = s.lock(&key("b0"), false).await.unwrap().binding;
        assert_eq!(b.unwrap().vendor_ids, serde_json::json!({"again": true}));
        drop(tasks);
        db.drop_db().await;
    }

    #[tokio::test]
    async fn a_booking_lock_excludes_other_replicas_until_released_or_crashed() {
        let db = TestDb::new().await;
        let (a, a_tasks) = store(&db).await;
        let (b, _b_tasks) = store(&db).await;
        let guard = a.lock(&key("k"), false).await.unwrap().guard;
        assert!(guard.still_held());
        assert!(
            b.try_lock(&key("k"), false).await.unwrap().is_none(),
            "B got A's booking"
        );
        // Another booking is not blocked.
        assert!(b.try_lock(&key("other"), false).await.unwrap().is_some());
        // A records, releases; B then sees A's record.
        a.commit(rec("k", 3, serde_json::json!({"by": "a"})))
            .await
            .unwrap();
        drop(guard);
        let Held {
            guard: g2,
            binding: seen,
            ..
        } = b.lock(&key("k"), false).await.unwrap();
        assert_eq!(seen.unwrap().applied_revision, 3);
        drop(g2);
        // A crashes while holding the lock (tasks die, guard never dropped): its session ends
        // and B gets the booking.
        let held = a.lock(&key("k"), false).await.unwrap();
        assert!(b.try_lock(&key("k"), false).await.unwrap().is_none());
        drop(a_tasks);
        std::mem::forget(held);
        let got = tokio::time::timeout(Duration::from_secs(10), b.lock(&key("k"), false)).await;
        assert!(got.unwrap().is_ok());
        db.drop_db().await;
    }

    /// M8: session locks die with their connection, but the lock task learns of a dropped
    /// connection only from its next statement, so the remembered epoch still says "held"
    /// while another replica already holds the booking. The fence asks the session.
    #[tokio::test]
    async fn the_fence_refuses_a_lock_whose_session_the_server_killed() {
        let db = TestDb::new().await;
        let (a, _a_tasks) = store(&db).await;
        let (b, _b_tasks) = store(&db).await;
        let held = a.lock(&key("k"), false).await.unwrap();
        let fence = held.guard.fence();
        fence.ensure_held().await.unwrap();
        let pid: i32 = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&db.pool)
            .await
            .unwrap();
        let taken = tokio::time::timeout(Duration::from_secs(10), b.lock(&key("k"), false)).await;
        let taken = taken.unwrap().unwrap();
        assert!(held.guard.still_held(), "nothing ran on A's session yet");
        assert!(
            fence.ensure_held().await.is_err(),
            "A's fence let it through"
        );
        assert!(!held.guard.still_held());
        drop(held);
        // A carries on with a new session; B's lock is untouched by A's late unlock.
        let other = a.lock(&key("other"), false).await.unwrap();
        other.guard.fence().ensure_held().await.unwrap();
        assert!(a.try_lock(&key("k"), false).await.unwrap().is_none());
        taken.guard.fence().ensure_held().await.unwrap();
        db.drop_db().await;
    }

    async fn marked(db: &TestDb, k: &str) -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM vendor_attempts WHERE booking_key = $1)")
            .bind(k)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    }

    /// Session advisory locks are re-entrant: without the lock task's own bookkeeping a
    /// second lane of this process (a handler locking a related booking) would be granted a
    /// booking another lane holds.
    #[tokio::test]
    async fn a_booking_held_by_one_lane_is_refused_to_another_lane_of_the_same_process() {
        let db = TestDb::new().await;
        let (s, tasks) = store(&db).await;
        let first = s.lock(&key("r"), false).await.unwrap();
        assert!(
            s.try_lock(&key("r"), false).await.unwrap().is_none(),
            "a second lane got a held booking"
        );
        // Two requests for one free booking in the same batch: only one gets it.
        let q = key("q");
        let (a, b) = tokio::join!(s.try_lock(&q, false), s.try_lock(&q, false));
        let granted = [a.unwrap(), b.unwrap()].into_iter().flatten().count();
        assert_eq!(granted, 1);
        drop(first);
        let again = eventually_locked(&s, "r").await;
        assert!(again.guard.still_held());
        drop(again);
        drop(tasks);
        db.drop_db().await;
    }

    async fn eventually_locked(s: &BindingStore, k: &str) -> Held {
        for _ in 0..200 {
            if let Some(h) = s.try_lock(&key(k), false).await.unwrap() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{k} was never released");
    }

    /// Progress and a related booking's record are written without an event: the applied
    /// revision and event stay, so the booking's next event is still applied.
    #[tokio::test]
    async fn a_record_only_write_keeps_the_applied_revision_and_event() {
        let db = TestDb::new().await;
        let (s, tasks) = store(&db).await;
        let applied = rec("k", 3, serde_json::json!({"v": 1}));
        let event = applied.event_id;
        assert_eq!(s.commit(applied).await.unwrap(), Committed::Recorded);
        let progress = Record {
            event_id: None,
            status: "in_flight".into(),
            ..rec("k", 3, serde_json::json!({"v": 2}))
        };
        assert_eq!(s.commit(progress).await.unwrap(), Committed::Recorded);
        let b = crate::get_binding(&db.pool, &key("k"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.applied_revision, 3);
        assert_eq!(b.applied_event_id, event);
        assert_eq!(b.status, "in_flight");
        assert_eq!(b.vendor_ids, serde_json::json!({"v": 2}));
        assert_eq!(b.ids_version, 1);
        // The record's shape version is stored with it.
        let newer = Record {
            ids_version: 2,
            ..rec("k", 3, serde_json::json!({"v": 3}))
        };
        assert_eq!(s.commit(newer).await.unwrap(), Committed::Recorded);
        let b = crate::get_binding(&db.pool, &key("k"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.ids_version, 2);
        // A booking without a binding gets a row at revision 0: nothing counts as applied.
        let first = Record {
            event_id: None,
            ..rec("new", 0, serde_json::json!({}))
        };
        assert_eq!(s.commit(first).await.unwrap(), Committed::Recorded);
        assert_eq!(revision(&db, "new").await, Some(0));
        drop(tasks);
        db.drop_db().await;
    }

    /// Issue 22: the console shows per binding the trace of the attempt that last wrote it.
    /// A group commit stores each row's own trace; a later write (a record-only one too)
    /// replaces it, and the lock's read hands it back.
    #[tokio::test]
    async fn each_record_keeps_the_trace_of_the_attempt_that_wrote_it() {
        let db = TestDb::new().await;
        let (s, tasks) = store(&db).await;
        let trace = |k: &str| {
            let key = key(k);
            let pool = db.pool.clone();
            async move {
                crate::get_binding(&pool, &key)
                    .await
                    .unwrap()
                    .and_then(|b| b.trace_id)
            }
        };
        let (a, b) = tokio::join!(
            s.commit(Record {
                trace_id: Some("a".repeat(32)),
                ..rec("ta", 1, serde_json::json!({}))
            }),
            s.commit(Record {
                trace_id: Some("b".repeat(32)),
                ..rec("tb", 1, serde_json::json!({}))
            }),
        );
        assert_eq!(
            (a.unwrap(), b.unwrap()),
            (Committed::Recorded, Committed::Recorded)
        );
        assert_eq!(trace("ta").await, Some("a".repeat(32)));
        assert_eq!(trace("tb").await, Some("b".repeat(32)));
        let progress = Record {
            event_id: None,
            trace_id: Some("c".repeat(32)),
            ..rec("ta", 1, serde_json::json!({"step": 2}))
        };
        s.commit(progress).await.unwrap();
        assert_eq!(trace("ta").await, Some("c".repeat(32)));
        let held = s.lock(&key("ta"), false).await.unwrap();
        assert_eq!(
            held.binding.as_ref().and_then(|b| b.trace_id.clone()),
            Some("c".repeat(32))
        );
        drop(held);
        // An untraced write leaves no trace of another attempt behind.
        let untraced = Record {
            trace_id: None,
            ..rec("ta", 2, serde_json::json!({}))
        };
        s.commit(untraced).await.unwrap();
        assert_eq!(trace("ta").await, None);
        drop(tasks);
        db.drop_db().await;
    }

    #[tokio::test]
    async fn only_the_first_attempt_of_an_unbound_booking_is_first() {
        let db = TestDb::new().await;
        let (s, tasks) = store(&db).await;
        // A new booking: the marker is written by this lock, so nothing reached the vendor.
        let h = s.lock(&key("n"), true).await.unwrap();
        assert!(h.first_attempt && h.binding.is_none());
        // The attempt "crashes" (no record): every later attempt must look for its objects.
        drop(h);
        let h = s.lock(&key("n"), true).await.unwrap();
        assert!(!h.first_attempt, "a second attempt is never first");
        drop(h);
        let (a, _a_tasks) = store(&db).await;
        assert!(
            !a.lock(&key("n"), true).await.unwrap().first_attempt,
            "nor on another replica"
        );
        // Without asking, nothing is marked and nothing is first.
        let h = s.lock(&key("quiet"), false).await.unwrap();
        assert!(!h.first_attempt);
        drop(h);
        assert!(!marked(&db, "quiet").await);
        // A booking with a binding is not first, and gets no marker.
        s.commit(rec("bound", 1, serde_json::json!({})))
            .await
            .unwrap();
        let h = s.lock(&key("bound"), true).await.unwrap();
        assert!(!h.first_attempt && h.binding.is_some());
        drop(h);
        assert!(!marked(&db, "bound").await);
        // Many new bookings at once: each is first exactly once.
        let mut joins = JoinSet::new();
        for i in 0..100 {
            let s = s.clone();
            joins.spawn(async move {
                s.lock(&key(&format!("m{i}")), true)
                    .await
                    .unwrap()
                    .first_attempt
            });
        }
        while let Some(r) = joins.join_next().await {
            assert!(r.unwrap());
        }
        drop(tasks);
        db.drop_db().await;
    }

    #[tokio::test]
    async fn without_the_markers_table_locks_still_work_and_nothing_is_first() {
        let db = TestDb::new().await;
        sqlx::query("DROP TABLE vendor_attempts")
            .execute(&db.pool)
            .await
            .unwrap();
        let (s, tasks) = store(&db).await;
        s.commit(rec("bound", 4, serde_json::json!({"g": 1})))
            .await
            .unwrap();
        for _ in 0..2 {
            let new = s.lock(&key("new"), true).await.unwrap();
            let bound = s.lock(&key("bound"), true).await.unwrap();
            assert!(!new.first_attempt && new.binding.is_none());
            assert!(!bound.first_attempt);
            assert_eq!(bound.binding.unwrap().applied_revision, 4);
        }
        drop(tasks);
        db.drop_db().await;
    }

    /// The generic plans, made while `bindings` has never been analysed (a new deployment),
    /// probe the primary key with every key column: no sequential scan, no hash join.
    #[tokio::test]
    async fn store_statements_probe_primary_keys_on_generic_plans() {
        let db = TestDb::new().await;
        let pool = accesshub_store::connect_lazy_generic(&db.url, 1).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        for (name, sql, args) in [
            ("load_many", LOAD_MANY, 4),
            ("load_and_mark", LOAD_AND_MARK, 5),
            ("upsert_many", UPSERT_MANY, 10),
            ("try_lock", TRY_LOCK, 1),
            ("unlock_and_try_lock", UNLOCK_AND_TRY_LOCK, 2),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {sql}")))
                .execute(&mut *conn)
                .await
                .unwrap();
            let nulls = vec!["NULL"; args].join(", ");
            let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN (COSTS OFF) EXECUTE {name}({nulls})"
            )))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            let text = plan
                .into_iter()
                .map(|(l,)| l)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!text.contains("Seq Scan"), "{name}: {text}");
            assert!(!text.contains("Hash"), "{name}: {text}");
            if name.starts_with("load") {
                assert!(
                    text.contains("Index Scan using bindings_pkey"),
                    "{name}: {text}"
                );
                assert!(text.contains("(booking_key = "), "{name}: {text}");
            }
        }
        let (mode,): (String,) = sqlx::query_as("SHOW plan_cache_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "force_generic_plan");
    }
}
