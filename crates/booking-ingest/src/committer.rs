//! Group commit: request handlers hand their normalized event to a committer task over a
//! channel and wait on a oneshot; the committer takes everything queued (up to the batch
//! limit), writes bookings, outbox rows and receipts for the whole batch in ONE transaction
//! with `UNNEST` multi-row statements, commits, and answers every waiter. One fsync serves
//! hundreds of webhooks.
//!
//! Events are sharded over the committers by booking, so one booking is never in two
//! concurrent transactions of this process (no deadlocks between our own committers), and the
//! same delivery (same body → same booking) always meets its twin in the same committer.

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use accesshub_domain::{Classify as _, ErrorClass, Event, EventBody};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::{error::Reject, metrics::IngestMetrics};

/// Postgres NOTIFY channel that wakes the relays of every replica (raised by the `outbox`
/// table's statement trigger, migration `outbox_notify_trigger`).
pub const OUTBOX_CHANNEL: &str = "accesshub_outbox";

/// How a delivery was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// Stored with an outbox row: a new event.
    Accepted,
    /// Older than (or equal to) the stored revision: nothing published.
    Superseded,
    /// Seen before: the earlier answer, unchanged.
    Duplicate,
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

/// One normalized delivery on its way to the database.
#[derive(Debug)]
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

impl Job {
    fn booking(&self) -> (&str, &'static str, &str) {
        (
            &self.event.tenant,
            self.event.kind().as_str(),
            &self.event.booking_key,
        )
    }

    fn delivery(&self) -> (&str, &str, &str) {
        (&self.event.tenant, &self.source, &self.delivery_key)
    }

    fn window(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match &self.event.body {
            EventBody::Reservation(r) => (r.check_in().ok(), r.check_out().ok()),
            EventBody::Facility(f) => (Some(f.start), Some(f.end)),
            EventBody::Pass(p) => (
                Some(p.valid_from.unwrap_or(self.event.occurred_at)),
                Some(p.expires_at),
            ),
            EventBody::KeyRequest(_) => (None, None),
        }
    }
}

/// Handle to the committer tasks; cloned into every request handler.
#[derive(Clone, Debug)]
pub struct Committers {
    shards: Arc<Vec<mpsc::Sender<Job>>>,
}

impl Committers {
    /// Starts `n` committer tasks; each notifies `wake` after a commit that wrote outbox rows.
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
        event: Event,
        source: &str,
        delivery_key: String,
        subject: String,
        traceparent: Option<String>,
    ) -> Result<Answer, Reject> {
        let payload = serde_json::to_string(&event).map_err(|_| Reject::Unavailable)?;
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
        process(&pool, batch, &wake).await;
    }
}

async fn process(pool: &PgPool, batch: Vec<Job>, wake: &Notify) {
    let mut attempt = 0u32;
    loop {
        let started = std::time::Instant::now();
        match write_batch(pool, &batch).await {
            Ok((answers, any)) => {
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
                let class = accesshub_store::StoreError::Db(e).class();
                attempt += 1;
                if class == ErrorClass::Transient && attempt < 4 {
                    tracing::warn!(attempt, "batch commit failed, retrying");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    continue;
                }
                if batch.len() > 1 && class == ErrorClass::Permanent {
                    // One bad row must not fail its neighbours: commit one by one.
                    tracing::warn!(n = batch.len(), "batch commit refused, committing singly");
                    for job in batch {
                        Box::pin(process(pool, vec![job], wake)).await;
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

fn accepted_body(id: Uuid) -> Value {
    json!({"event_id": id, "status": "accepted"})
}

fn superseded_body(current: i64) -> Value {
    json!({"status": "superseded", "current_revision": current})
}

/// Writes one batch in one transaction. Returns the answers (aligned with `jobs`) and whether
/// any outbox row was written.
async fn write_batch(pool: &PgPool, jobs: &[Job]) -> Result<(Vec<Answer>, bool), sqlx::Error> {
    let n = jobs.len();
    let mut answers: Vec<Option<Answer>> = vec![None; n];

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

    let mut tx = pool.begin().await?;

    // Deliveries answered before.
    let (t, s, d): (Vec<&str>, Vec<&str>, Vec<&str>) = {
        let mut t = Vec::new();
        let mut s = Vec::new();
        let mut d = Vec::new();
        for &i in &leaders {
            let (a, b, c) = jobs[i].delivery();
            t.push(a);
            s.push(b);
            d.push(c);
        }
        (t, s, d)
    };
    let seen: Vec<(String, String, String, Value)> = sqlx::query_as(
        "SELECT r.tenant_id, r.source, r.delivery_key, r.response FROM ingest_receipts r \
         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k(t, s, d) \
           ON r.tenant_id = k.t AND r.source = k.s AND r.delivery_key = k.d",
    )
    .bind(&t)
    .bind(&s)
    .bind(&d)
    .fetch_all(&mut *tx)
    .await?;
    for (t, s, d, body) in seen {
        if let Some(&i) = first_of.get(&(t.as_str(), s.as_str(), d.as_str())) {
            answers[i] = Some(Answer {
                kind: AnswerKind::Duplicate,
                body,
            });
        }
    }
    let todo: Vec<usize> = leaders
        .iter()
        .copied()
        .filter(|&i| answers[i].is_none())
        .collect();

    // Group by booking; the highest revision of each group is the candidate.
    let mut groups: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
    for &i in &todo {
        groups.entry(jobs[i].booking()).or_default().push(i);
    }
    let mut winners: Vec<usize> = groups
        .values()
        .map(|g| {
            let mut best = g[0];
            for &i in &g[1..] {
                if jobs[i].event.revision > jobs[best].event.revision {
                    best = i;
                }
            }
            best
        })
        .collect();
    // A stable lock order across transactions.
    winners.sort_by(|&a, &b| jobs[a].booking().cmp(&jobs[b].booking()));

    let mut accepted: HashSet<usize> = HashSet::new();
    if !winners.is_empty() {
        let mut c_t = Vec::new();
        let mut c_k = Vec::new();
        let mut c_key = Vec::new();
        let mut c_site = Vec::new();
        let mut c_rev = Vec::new();
        let mut c_src = Vec::new();
        let mut c_id = Vec::new();
        let mut c_payload = Vec::new();
        let mut c_start = Vec::new();
        let mut c_end = Vec::new();
        for &i in &winners {
            let j = &jobs[i];
            let (st, en) = j.window();
            c_t.push(j.event.tenant.as_str());
            c_k.push(j.event.kind().as_str());
            c_key.push(j.event.booking_key.as_str());
            c_site.push(j.event.site.as_str());
            c_rev.push(j.event.revision);
            c_src.push(j.event.source.as_str());
            c_id.push(j.event.id);
            c_payload.push(j.payload.as_str());
            c_start.push(st);
            c_end.push(en);
        }
        let written: Vec<(Uuid,)> = sqlx::query_as(
            "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, \
                                   payload, starts_at, ends_at) \
             SELECT t, k, b, s, r, src, id, p::jsonb, st, en FROM UNNEST($1::text[], $2::text[], \
                 $3::text[], $4::text[], $5::int8[], $6::text[], $7::uuid[], $8::text[], \
                 $9::timestamptz[], $10::timestamptz[]) AS u(t, k, b, s, r, src, id, p, st, en) \
             ON CONFLICT (tenant_id, kind, booking_key) DO UPDATE SET site = EXCLUDED.site, \
                 revision = EXCLUDED.revision, source = EXCLUDED.source, \
                 event_id = EXCLUDED.event_id, payload = EXCLUDED.payload, \
                 starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, updated_at = now() \
             WHERE bookings.revision < EXCLUDED.revision \
             RETURNING event_id",
        )
        .bind(&c_t)
        .bind(&c_k)
        .bind(&c_key)
        .bind(&c_site)
        .bind(&c_rev)
        .bind(&c_src)
        .bind(&c_id)
        .bind(&c_payload)
        .bind(&c_start)
        .bind(&c_end)
        .fetch_all(&mut *tx)
        .await?;
        let ids: HashSet<Uuid> = written.into_iter().map(|(id,)| id).collect();
        for &i in &winners {
            if ids.contains(&jobs[i].event.id) {
                accepted.insert(i);
                answers[i] = Some(Answer {
                    kind: AnswerKind::Accepted,
                    body: accepted_body(jobs[i].event.id),
                });
            }
        }
    }

    // Everything else in `todo` is superseded: read the (now) current revisions.
    let losers: Vec<usize> = todo
        .iter()
        .copied()
        .filter(|i| !accepted.contains(i))
        .collect();
    if !losers.is_empty() {
        let mut keys: Vec<(&str, &str, &str)> = losers.iter().map(|&i| jobs[i].booking()).collect();
        keys.sort();
        keys.dedup();
        let q_t: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let q_k: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let q_b: Vec<&str> = keys.iter().map(|k| k.2).collect();
        let revs: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT b.tenant_id, b.kind, b.booking_key, b.revision FROM bookings b \
             JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k(t, kd, bk) \
               ON b.tenant_id = k.t AND b.kind = k.kd AND b.booking_key = k.bk",
        )
        .bind(&q_t)
        .bind(&q_k)
        .bind(&q_b)
        .fetch_all(&mut *tx)
        .await?;
        let current: HashMap<(String, String, String), i64> = revs
            .into_iter()
            .map(|(t, k, b, r)| ((t, k, b), r))
            .collect();
        for &i in &losers {
            let (t, k, b) = jobs[i].booking();
            let rev = current
                .get(&(t.to_owned(), k.to_owned(), b.to_owned()))
                .copied()
                .unwrap_or(jobs[i].event.revision);
            answers[i] = Some(Answer {
                kind: AnswerKind::Superseded,
                body: superseded_body(rev),
            });
        }
    }

    // Outbox rows, in arrival order.
    let mut outbox: Vec<usize> = accepted.iter().copied().collect();
    outbox.sort_unstable();
    if !outbox.is_empty() {
        let ids: Vec<Uuid> = outbox.iter().map(|&i| jobs[i].event.id).collect();
        let subjects: Vec<&str> = outbox.iter().map(|&i| jobs[i].subject.as_str()).collect();
        let payloads: Vec<&[u8]> = outbox.iter().map(|&i| jobs[i].payload.as_bytes()).collect();
        let tps: Vec<Option<&str>> = outbox
            .iter()
            .map(|&i| jobs[i].traceparent.as_deref())
            .collect();
        sqlx::query(
            "INSERT INTO outbox (event_id, subject, payload, traceparent) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::text[])",
        )
        .bind(&ids)
        .bind(&subjects)
        .bind(&payloads)
        .bind(&tps)
        .execute(&mut *tx)
        .await?;
    }

    // Receipts for every new delivery.
    if !todo.is_empty() {
        let mut r_t = Vec::new();
        let mut r_s = Vec::new();
        let mut r_d = Vec::new();
        let mut r_id = Vec::new();
        let mut r_body = Vec::new();
        for &i in &todo {
            let (t, s, d) = jobs[i].delivery();
            r_t.push(t);
            r_s.push(s);
            r_d.push(d);
            r_id.push(jobs[i].event.id);
            r_body.push(
                answers[i]
                    .as_ref()
                    .map(|a| a.body.to_string())
                    .unwrap_or_default(),
            );
        }
        sqlx::query(
            "INSERT INTO ingest_receipts (tenant_id, source, delivery_key, event_id, status_code, \
                                         response) \
             SELECT t, s, d, id, 202, r::jsonb FROM UNNEST($1::text[], $2::text[], $3::text[], \
                 $4::uuid[], $5::text[]) AS u(t, s, d, id, r) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&r_t)
        .bind(&r_s)
        .bind(&r_d)
        .bind(&r_id)
        .bind(&r_body)
        .execute(&mut *tx)
        .await?;
    }

    // The outbox's statement trigger NOTIFYs the other replicas' relays at commit.
    tx.commit().await?;

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
    Ok((out, !outbox.is_empty()))
}
