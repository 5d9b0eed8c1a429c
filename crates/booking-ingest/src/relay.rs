//! Outbox relay: publishes pending outbox rows in id order to JetStream with `Nats-Msg-Id` =
//! event id and the event's headers, pipelining the publishes and awaiting every PubAck, then
//! deletes the rows (a delete is the cheapest write Postgres has: no new row version and no
//! index entries, where marking them published copied every payload; the booking's desired
//! state, which the reconciler repairs from, stays in `bookings`). Woken at once by this
//! process's committers (a [`Notify`]); a poll picks up rows a replica wrote and did not
//! relay (it died in between). No NOTIFY: Postgres serialises the commits of notifying
//! transactions behind one lock, which would undo group commit. Replicas claim rows with
//! `FOR UPDATE SKIP LOCKED`; a crash after publish and before the mark re-publishes, which
//! JetStream's de-duplication absorbs. With NATS down rows wait and the relay backs off.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_bus::Bus;
use accesshub_domain::headers;
use accesshub_retry::{Backoff, RetryPolicy};
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::IngestMetrics;

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed per pass.
    pub batch: i64,
    /// Poll when no wake-up arrives: how soon rows left by a replica that died between its
    /// commit and its relay pass are published by another.
    pub poll: Duration,
    /// Longest backoff while NATS or Postgres is failing.
    pub max_backoff: Duration,
    /// How long to wait for a PubAck.
    pub ack_timeout: Duration,
    /// Least time between two passes started by wake-ups: under load one pass carries the
    /// rows of many commits instead of one pass (four statements) per commit.
    pub linger: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 1000,
            poll: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(2),
        }
    }
}

/// Why a relay pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The NATS client is not connected.
    #[error("NATS is not connected")]
    NatsDown,
    /// Some publishes were not acknowledged.
    #[error("{failed} of {total} publishes failed: {first}")]
    Publish {
        /// How many failed.
        failed: usize,
        /// How many were attempted.
        total: usize,
        /// The first error.
        first: String,
    },
    /// Database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl accesshub_domain::Classify for RelayError {
    fn class(&self) -> accesshub_domain::ErrorClass {
        match self {
            RelayError::Db(e) => accesshub_store::db_error_class(e),
            _ => accesshub_domain::ErrorClass::Transient,
        }
    }
}

/// The fields of the event the headers need (parsed from the stored payload).
#[derive(Deserialize)]
struct HeaderFields<'a> {
    #[serde(borrow)]
    tenant: std::borrow::Cow<'a, str>,
    kind: std::borrow::Cow<'a, str>,
    revision: i64,
    schema_version: u32,
}

/// The relay task state.
pub struct Relay {
    pool: PgPool,
    bus: Bus,
    js: jetstream::Context,
    cfg: RelayConfig,
    metrics: IngestMetrics,
    last_gauge: Option<Instant>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("cfg", &self.cfg).finish()
    }
}

type Row = (i64, Uuid, String, Vec<u8>, Option<String>);

impl Relay {
    /// A relay over `pool`'s outbox publishing through `bus`.
    pub fn new(pool: PgPool, bus: Bus, cfg: RelayConfig, metrics: IngestMetrics) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(cfg.ack_timeout)
            .build(bus.client.clone());
        Relay {
            pool,
            bus,
            js,
            cfg,
            metrics,
            last_gauge: None,
        }
    }

    /// Runs until `stop`, then makes a final pass (bounded) so accepted events leave promptly.
    pub async fn run(mut self, wake: Arc<Notify>, stop: CancellationToken) {
        // Retried until `stop`: accepted events wait in the outbox, never dropped.
        let mut failures = RetryPolicy::forever(Backoff::new(
            Duration::from_millis(100),
            self.cfg.max_backoff,
        ))
        .attempts();
        let mut last_pass: Option<Instant> = None;
        loop {
            if let Some(since) = last_pass.map(|t| t.elapsed())
                && since < self.cfg.linger
            {
                tokio::time::sleep(self.cfg.linger - since).await;
            }
            last_pass = Some(Instant::now());
            let mut wait = self.cfg.poll;
            match self.pass().await {
                Ok(n) if n as i64 >= self.cfg.batch => {
                    failures.reset();
                    wait = Duration::ZERO;
                }
                Ok(_) => failures.reset(),
                Err(e) => {
                    wait = failures.next_wait().unwrap_or(self.cfg.max_backoff);
                    tracing::warn!(error = %e, backoff_ms = wait.as_millis() as u64, "outbox relay pass failed");
                }
            }
            self.housekeeping().await;
            if stop.is_cancelled() {
                break;
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
            if stop.is_cancelled() {
                break;
            }
        }
        // Final passes: what the committers drained last.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.pass().await {
                Ok(n) if n as i64 >= self.cfg.batch => continue,
                _ => break,
            }
        }
    }

    /// Publishes one batch of pending rows; returns how many were published.
    pub async fn pass(&mut self) -> Result<usize, RelayError> {
        if !self.bus.is_connected() {
            return Err(RelayError::NatsDown);
        }
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, event_id, subject, payload, traceparent FROM outbox \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.cfg.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let total = rows.len();
        // Send everything first (in id order on one connection), then await the acks.
        let mut pending: Vec<(i64, Option<PublishAckFuture>, Option<String>)> =
            Vec::with_capacity(total);
        for (id, event_id, subject, payload, traceparent) in rows {
            let mut h = async_nats::HeaderMap::new();
            let eid = event_id.to_string();
            h.insert(headers::MSG_ID, eid.as_str());
            h.insert(headers::EVENT_ID, eid.as_str());
            if let Some(tp) = traceparent.as_deref() {
                h.insert(headers::TRACEPARENT, tp);
            }
            if let Ok(f) = serde_json::from_slice::<HeaderFields<'_>>(&payload) {
                h.insert(headers::TENANT, f.tenant.as_ref());
                h.insert(headers::KIND, f.kind.as_ref());
                h.insert(headers::REVISION, f.revision.to_string().as_str());
                h.insert(
                    headers::SCHEMA_VERSION,
                    f.schema_version.to_string().as_str(),
                );
            }
            let msg = PublishMessage::build()
                .headers(h)
                .payload(Bytes::from(payload));
            match self.js.send_publish(subject, msg).await {
                Ok(ack) => pending.push((id, Some(ack), None)),
                Err(e) => pending.push((id, None, Some(e.to_string()))),
            }
        }
        let results =
            futures::future::join_all(pending.into_iter().map(|(id, ack, err)| async move {
                match (ack, err) {
                    (Some(ack), _) => match ack.await {
                        Ok(_) => (id, None),
                        Err(e) => (id, Some(e.to_string())),
                    },
                    (None, err) => (id, err),
                }
            }))
            .await;
        let ok: Vec<i64> = results
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(id, _)| *id)
            .collect();
        let failed: Vec<(i64, String)> = results
            .into_iter()
            .filter_map(|(id, e)| e.map(|e| (id, e)))
            .collect();
        if !ok.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
                .bind(&ok)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((_, first)) = failed.first() {
            let ids: Vec<i64> = failed.iter().map(|(id, _)| *id).collect();
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            )
            .bind(&ids)
            .bind(first)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.metrics.outbox_published.inc_by(ok.len() as u64);
        self.metrics.relay_batch.observe(total as f64);
        if let Some((_, first)) = failed.first() {
            return Err(RelayError::Publish {
                failed: failed.len(),
                total,
                first: first.clone(),
            });
        }
        Ok(ok.len())
    }

    async fn housekeeping(&mut self) {
        if self
            .last_gauge
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            self.last_gauge = Some(Instant::now());
            if let Ok((n,)) = sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM outbox")
                .fetch_one(&self.pool)
                .await
            {
                self.metrics.outbox_pending.set(n);
            }
        }
    }
}
