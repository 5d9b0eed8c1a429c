//! Group commit: request handlers hand their normalized event to a committer task over a
//! channel and wait on a oneshot; the committer takes everything queued (up to the batch
//! limit), writes bookings, outbox rows and receipts for the whole batch in ONE statement
//! (one round trip, its own transaction) over `UNNEST`ed column arrays, and answers every
//! waiter after the commit. One fsync serves the whole batch, and with no NOTIFY in the
//! transaction the committers' commits share WAL flushes too.
//!
//! Events are sharded over the committers by booking, so one booking is never in two
//! concurrent transactions of this process (no deadlocks between our own committers), and the
//! same delivery (same body → same booking) always meets its twin in the same committer.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use accesshub_domain::{Classify as _, ErrorClass, Event, EventBody};
use accesshub_retry::{Backoff, RetryPolicy};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::{error::Reject, metrics::IngestMetrics};

/// How a delivery was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// Stored with an outbox row: a new event.
    Accepted,
    /// Older than (or equal to) the stored revision: nothing published.
    Superseded,
    /// Seen before: the earlier answer, unchanged.
    Duplicate,
    /// Deliberately not stored (see [`crate::scope`]): answered 2xx so the sender stops.
    Ignored,
}

/// The answer to one delivery (HTTP 202 body / NATS reply).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// What happened.
    pub kind: AnswerKind,
    /// JSON body: `{"event_id", "status": "accepted"}` or
    /// `{"status": "superseded", "current_revision"}`.
    pub body: Value,
}

/// One normalized delivery on its way to the database. Debug leaves out the serialized
/// payload (it holds the guest's data; the event's own Debug masks it).
pub struct Job {
    /// The event.
    pub event: Event,
    /// Source wire name (receipt key).
    pub source: String,
    /// Idempotency key of the delivery.
    pub delivery_key: String,
    /// Namespaced subject the relay publishes on.
    pub subject: String,
    /// Serialized event (outbox payload and booking state).
    pub payload: String,
    /// W3C traceparent of the request's span.
    pub traceparent: Option<String>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Answer, Reject>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("event", &self.event)
            .field("source", &self.source)
            .field("delivery_key", &self.delivery_key)
            .field("subject", &self.subject)
            .field("payload_bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl Job {
    fn delivery(&self) -> (&str, &str, &str) {
        (&self.event.tenant, &self.source, &self.delivery_key)
    }

    fn window(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        window(&self.event)
    }
}

/// When a booking's access starts and ends (`bookings.starts_at` / `ends_at`; also the end
/// an ignored event is pruned after, see [`crate::scope`]).
pub fn window(event: &Event) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    match &event.body {
        EventBody::Reservation(r) => (r.check_in().ok(), r.check_out().ok()),
        EventBody::Facility(f) => (Some(f.start), Some(f.end)),
        EventBody::Pass(p) => (
            Some(p.valid_from.unwrap_or(event.occurred_at)),
            Some(p.expires_at),
        ),
        EventBody::KeyRequest(_) => (None, None),
    }
}

/// Handle to the committer tasks; cloned into every request handler.
#[derive(Clone, Debug)]
pub struct Committers {
    shards: Arc<Vec<mpsc::Sender<Job>>>,
}

impl Committers {
    /// Starts `n` committer tasks; each notifies `wake` (this process's relay) after a commit
    /// that wrote outbox rows.
    pub fn start(
        pool: PgPool,
        n: usize,
        batch_max: usize,
        wake: Arc<Notify>,
        metrics: IngestMetrics,
    ) -> (Committers, Vec<tokio::task::JoinHandle<()>>) {
        let mut shards = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(batch_max.max(1) * 8);
            shards.push(tx);
            tasks.push(tokio::spawn(run(
                pool.clone(),
                rx,
                batch_max.max(1),
                wake.clone(),
                metrics.clone(),
            )));
        }
        (
            Committers {
                shards: Arc::new(shards),
            },
            tasks,
        )
    }

    /// Queues a job and waits for its answer (after the commit).
    pub async fn submit(
        &self,
        normalized: crate::upstream::Normalized,
        source: &str,
        delivery_key: String,
        subject: String,
        traceparent: Option<String>,
    ) -> Result<Answer, Reject> {
        let crate::upstream::Normalized {
            event,
            json: payload,
        } = normalized;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&event.tenant, event.kind().as_str(), &event.booking_key).hash(&mut h);
        let shard = (h.finish() % self.shards.len() as u64) as usize;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            event,
            source: source.to_owned(),
            delivery_key,
            subject,
            payload,
            traceparent,
            reply,
        };
        self.shards[shard]
            .send(job)
            .await
            .map_err(|_| Reject::Unavailable)?;
        rx.await.map_err(|_| Reject::Unavailable)?
    }
}

async fn run(
    pool: PgPool,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    wake: Arc<Notify>,
    metrics: IngestMetrics,
) {
    let mut buf = Vec::with_capacity(batch_max);
    loop {
        if rx.recv_many(&mut buf, batch_max).await == 0 {
            break; // every sender dropped: drained
        }
        let batch = std::mem::take(&mut buf);
        metrics.commit_batch.observe(batch.len() as f64);
        process(&pool, batch, &wake, &metrics).await;
    }
}

/// A failed group commit: three quick retries (20 ms doubling to 80 ms, jittered) on transient
/// errors, since the webhook senders are waiting for the answer; then 503 and they retry.
const COMMIT_RETRY: RetryPolicy = RetryPolicy::limited(
    Backoff::new(Duration::from_millis(20), Duration::from_millis(80)),
    3,
);

async fn process(pool: &PgPool, batch: Vec<Job>, wake: &Notify, metrics: &IngestMetrics) {
    let mut retries = COMMIT_RETRY.attempts();
    loop {
        let started = std::time::Instant::now();
        match write_batch(pool, &batch).await {
            Ok((answers, any)) => {
                metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                tracing::debug!(
                    n = batch.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "batch committed"
                );
                if any {
                    wake.notify_one();
                }
                for (job, a) in batch.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(a));
                }
                return;
            }
            Err(e) => {
                let err = accesshub_store::StoreError::Db(e);
                let class = err.class();
                if let Some(wait) = retries.next_wait_after(&err) {
                    tracing::warn!(attempt = retries.retries(), ?wait, error = %err, "batch commit failed, retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                if batch.len() > 1 && class == ErrorClass::Permanent {
                    // One bad row must not fail its neighbours: commit one by one.
                    tracing::warn!(n = batch.len(), "batch commit refused, committing singly");
                    for job in batch {
                        Box::pin(process(pool, vec![job], wake, metrics)).await;
                    }
                    return;
                }
                tracing::error!(?class, "commit failed; answering 503");
                for job in batch {
                    let _ = job.reply.send(Err(Reject::Unavailable));
                }
                return;
            }
        }
    }
}

/// The whole batch in one statement, so one round trip and one implicit transaction:
/// receipts of deliveries answered before (→ duplicate), the highest revision of each booking
/// among the rest upserted (→ accepted where newer, with its outbox row), the others answered
/// with the revision now current (→ superseded), and a receipt for every new delivery.
///
/// "Newer" is `accesshub_domain::supersedes`: a higher revision, or the same revision ending
/// access where the stored state did not (`ends_access`).
///
/// The upsert writes a candidate that is not newer back unchanged, so that `RETURNING` yields
/// every booking's current revision without a second lookup (a rare case: reordered or
/// repeated revisions). That matters for the plan: the statement runs on a generic plan
/// (planning it per execution cost more than running it), and a lookup by booking cached
/// while `bookings` was never analysed took `bookings_starts_idx` and filtered on the key, a
/// scan of the tenant's every booking. The receipt probe is a `LATERAL … LIMIT 1` on the
/// primary key, the only index of its table. `ORDER BY t, k, b` keeps one lock order across
/// transactions.
pub const WRITE_BATCH: &str = "\
WITH input AS MATERIALIZED (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::int8[], $8::text[], $9::uuid[], $10::bytea[], $11::timestamptz[],
                         $12::timestamptz[], $13::text[], $14::text[], $15::bool[])
        WITH ORDINALITY AS u(t, src, d, k, b, site, rev, esrc, id, p, st, en, subj, tp, ea, i)
), seen AS MATERIALIZED (
    SELECT u.i, r.response FROM input u
    CROSS JOIN LATERAL (SELECT response FROM ingest_receipts r
        WHERE r.tenant_id = u.t AND r.source = u.src AND r.delivery_key = u.d
        ORDER BY r.tenant_id, r.source, r.delivery_key LIMIT 1) r
), todo AS MATERIALIZED (
    SELECT u.* FROM input u WHERE NOT EXISTS (SELECT 1 FROM seen WHERE seen.i = u.i)
), cand AS MATERIALIZED (
    SELECT DISTINCT ON (t, k, b) * FROM todo ORDER BY t, k, b, rev DESC, ea DESC, i
), up AS (
    INSERT INTO bookings AS bk (tenant_id, kind, booking_key, site, revision, source, event_id,
                                payload, starts_at, ends_at, ends_access)
    SELECT t, k, b, site, rev, esrc, id, convert_from(p, 'UTF8')::json, st, en, ea
    FROM cand ORDER BY t, k, b
    ON CONFLICT (tenant_id, kind, booking_key) DO UPDATE SET
        (site, revision, source, event_id, payload, starts_at, ends_at, ends_access,
         updated_at) =
        (SELECT n.* FROM (SELECT EXCLUDED.site, EXCLUDED.revision, EXCLUDED.source,
                EXCLUDED.event_id, EXCLUDED.payload, EXCLUDED.starts_at, EXCLUDED.ends_at,
                EXCLUDED.ends_access, now()
            WHERE bk.revision < EXCLUDED.revision
               OR (bk.revision = EXCLUDED.revision AND EXCLUDED.ends_access
                   AND NOT bk.ends_access)
            UNION ALL
            SELECT bk.site, bk.revision, bk.source, bk.event_id, bk.payload, bk.starts_at,
                bk.ends_at, bk.ends_access, bk.updated_at
            WHERE NOT (bk.revision < EXCLUDED.revision
               OR (bk.revision = EXCLUDED.revision AND EXCLUDED.ends_access
                   AND NOT bk.ends_access))) n)
    RETURNING bk.tenant_id, bk.kind, bk.booking_key, bk.revision, bk.event_id
), ob AS (
    INSERT INTO outbox (event_id, subject, payload, traceparent)
    SELECT c.id, c.subj, c.p, c.tp FROM cand c JOIN up ON up.event_id = c.id ORDER BY c.i
), ans AS MATERIALIZED (
    SELECT u.i, u.t, u.src, u.d, u.id, (w.event_id IS NOT DISTINCT FROM u.id) AS accepted,
        CASE WHEN w.event_id IS NOT DISTINCT FROM u.id
             THEN jsonb_build_object('event_id', u.id, 'status', 'accepted')
             ELSE jsonb_build_object('status', 'superseded',
                                     'current_revision', COALESCE(w.revision, u.rev))
        END AS body
    FROM todo u
    LEFT JOIN up w ON w.tenant_id = u.t AND w.kind = u.k AND w.booking_key = u.b
), rc AS (
    INSERT INTO ingest_receipts (tenant_id, source, delivery_key, event_id, status_code, response)
    SELECT t, src, d, id, 202, body FROM ans
    ON CONFLICT DO NOTHING
)
SELECT i, CASE WHEN accepted THEN 0 ELSE 1 END::int2, body FROM ans
UNION ALL
SELECT i, 2::int2, response FROM seen";

/// Writes one batch in one statement ([`WRITE_BATCH`]). Returns the answers (aligned with
/// `jobs`) and whether any outbox row was written.
async fn write_batch(pool: &PgPool, jobs: &[Job]) -> Result<(Vec<Answer>, bool), sqlx::Error> {
    let n = jobs.len();

    // Same delivery twice in the batch: the later ones follow the first.
    let mut first_of: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut follower: Vec<Option<usize>> = vec![None; n];
    for (i, j) in jobs.iter().enumerate() {
        match first_of.get(&j.delivery()) {
            Some(&f) => follower[i] = Some(f),
            None => {
                first_of.insert(j.delivery(), i);
            }
        }
    }
    let leaders: Vec<usize> = (0..n).filter(|i| follower[*i].is_none()).collect();

    let m = leaders.len();
    let mut c = BatchColumns::with_capacity(m);
    for &i in &leaders {
        c.push(&jobs[i]);
    }
    let rows: Vec<(i64, i16, Value)> = sqlx::query_as(WRITE_BATCH)
        .bind(&c.tenant)
        .bind(&c.source)
        .bind(&c.delivery)
        .bind(&c.kind)
        .bind(&c.booking)
        .bind(&c.site)
        .bind(&c.revision)
        .bind(&c.event_source)
        .bind(&c.id)
        .bind(&c.payload)
        .bind(&c.starts)
        .bind(&c.ends)
        .bind(&c.subject)
        .bind(&c.traceparent)
        .bind(&c.ends_access)
        .fetch_all(pool)
        .await?;

    let mut answers: Vec<Option<Answer>> = vec![None; n];
    let mut any_accepted = false;
    for (ord, kind, body) in rows {
        // WITH ORDINALITY counts from 1 over the leaders.
        let Some(&i) = usize::try_from(ord - 1).ok().and_then(|o| leaders.get(o)) else {
            continue;
        };
        let kind = match kind {
            0 => {
                any_accepted = true;
                AnswerKind::Accepted
            }
            1 => AnswerKind::Superseded,
            _ => AnswerKind::Duplicate,
        };
        answers[i] = Some(Answer { kind, body });
    }

    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = match follower[i] {
            Some(f) => answers[f].clone().map(|a| Answer {
                kind: AnswerKind::Duplicate,
                ..a
            }),
            None => answers[i].clone(),
        };
        out.push(a.unwrap_or(Answer {
            kind: AnswerKind::Duplicate,
            body: json!({"status": "unknown"}),
        }));
    }
    Ok((out, any_accepted))
}

/// The leaders of a batch as the statement's column arrays.
struct BatchColumns<'a> {
    tenant: Vec<&'a str>,
    source: Vec<&'a str>,
    delivery: Vec<&'a str>,
    kind: Vec<&'a str>,
    booking: Vec<&'a str>,
    site: Vec<&'a str>,
    revision: Vec<i64>,
    event_source: Vec<&'a str>,
    id: Vec<Uuid>,
    payload: Vec<&'a [u8]>,
    starts: Vec<Option<DateTime<Utc>>>,
    ends: Vec<Option<DateTime<Utc>>>,
    subject: Vec<&'a str>,
    traceparent: Vec<Option<&'a str>>,
    ends_access: Vec<bool>,
}

impl<'a> BatchColumns<'a> {
    fn with_capacity(m: usize) -> Self {
        BatchColumns {
            tenant: Vec::with_capacity(m),
            source: Vec::with_capacity(m),
            delivery: Vec::with_capacity(m),
            kind: Vec::with_capacity(m),
            booking: Vec::with_capacity(m),
            site: Vec::with_capacity(m),
            revision: Vec::with_capacity(m),
            event_source: Vec::with_capacity(m),
            id: Vec::with_capacity(m),
            payload: Vec::with_capacity(m),
            starts: Vec::with_capacity(m),
            ends: Vec::with_capacity(m),
            subject: Vec::with_capacity(m),
            traceparent: Vec::with_capacity(m),
            ends_access: Vec::with_capacity(m),
        }
    }

    fn push(&mut self, j: &'a Job) {
        let (st, en) = j.window();
        self.tenant.push(&j.event.tenant);
        self.source.push(&j.source);
        self.delivery.push(&j.delivery_key);
        self.kind.push(j.event.kind().as_str());
        self.booking.push(&j.event.booking_key);
        self.site.push(&j.event.site);
        self.revision.push(j.event.revision);
        self.event_source.push(j.event.source.as_str());
        self.id.push(j.event.id);
        self.payload.push(j.payload.as_bytes());
        self.starts.push(st);
        self.ends.push(en);
        self.subject.push(&j.subject);
        self.traceparent.push(j.traceparent.as_deref());
        self.ends_access.push(j.event.ends_access());
    }
}
