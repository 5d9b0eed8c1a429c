//! Replaying dead letters: back to the original subject, with a fresh `Nats-Msg-Id`, replay
//! headers, an awaited PubAck and a record in `dlq_replays`.
//!
//! Publishes are pipelined (a window of outstanding PubAcks) so a 100,000-entry replay after
//! an outage takes seconds, and optionally paced (`rate`) so the workers and the vendor behind
//! them are not flooded by the backlog they failed on.

use std::{collections::HashMap, time::Duration};

use accesshub_domain::headers;
use async_nats::{HeaderMap, jetstream::context::PublishAckFuture};
use futures::{StreamExt as _, stream::FuturesOrdered};
use serde::{Deserialize, Serialize};

use crate::{Dlq, DlqEntry, DlqError, EntrySource, Filter, store};

/// Records are written in batches of this size during a long replay.
const RECORD_BATCH: usize = 500;

/// What to replay.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    /// One entry by id; replayed even if it was replayed before (the loop limit still applies).
    One(u64),
    /// Every matching entry (an empty filter is "all"); entries already replayed are skipped
    /// unless [`ReplayOptions::include_replayed`].
    Filter(Filter),
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Publish nothing; report (and record, marked dry run) what would be published.
    pub dry_run: bool,
    /// Messages per second (None = as fast as JetStream acknowledges).
    pub rate: Option<f64>,
    /// Delete each entry from the DLQ once its replay is acknowledged (default: keep it; the
    /// record in `dlq_replays` marks it as replayed).
    pub delete_after: bool,
    /// Who replays (recorded and sent as `Accesshub-Replayed-By`).
    pub replayed_by: String,
    /// Loop protection: an event already replayed this many times is refused.
    pub max_replays: u32,
    /// Replay even past `max_replays`.
    pub force: bool,
    /// For filter replays: also replay entries that were replayed before.
    pub include_replayed: bool,
    /// Outstanding PubAcks at most.
    pub window: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            dry_run: false,
            rate: None,
            delete_after: false,
            replayed_by: "unknown".to_owned(),
            max_replays: 5,
            force: false,
            include_replayed: false,
            window: 256,
        }
    }
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReplayStatus {
    /// Republished and acknowledged.
    Replayed {
        /// Fresh Nats-Msg-Id.
        new_msg_id: String,
        /// Sequence in the target stream.
        stream_sequence: u64,
    },
    /// Dry run: would have been republished.
    DryRun,
    /// Not replayed, on purpose.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The republish failed.
    Failed {
        /// Error.
        error: String,
    },
}

/// One entry's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayOutcome {
    /// DLQ id.
    pub seq: u64,
    /// Target subject (None when unknown).
    pub subject: Option<String>,
    /// Result.
    #[serde(flatten)]
    pub status: ReplayStatus,
}

/// Totals and per-entry outcomes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// Entries selected.
    pub selected: u64,
    /// Republished and acknowledged.
    pub replayed: u64,
    /// Dry-run entries.
    pub dry_run: u64,
    /// Skipped entries.
    pub skipped: u64,
    /// Failed republishes.
    pub failed: u64,
    /// Entries deleted from the DLQ after replay.
    pub deleted: u64,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Per entry.
    pub outcomes: Vec<ReplayOutcome>,
}

impl ReplayReport {
    /// Counts an outcome, tells the observer, keeps it.
    fn add(&mut self, o: ReplayOutcome, observer: &mut dyn ReplayObserver) {
        match o.status {
            ReplayStatus::Replayed { .. } => self.replayed += 1,
            ReplayStatus::DryRun => self.dry_run += 1,
            ReplayStatus::Skipped { .. } => self.skipped += 1,
            ReplayStatus::Failed { .. } => self.failed += 1,
        }
        observer.advanced(&o);
        self.outcomes.push(o);
    }
}

/// Progress of a long replay (the CLI draws a bar on a TTY, plain lines otherwise).
/// `Send`, so a replay can run inside an HTTP handler (the admin API) without a thread of
/// its own.
pub trait ReplayObserver: Send {
    /// Called once with the number of selected entries.
    fn started(&mut self, _total: u64) {}
    /// Called for every entry once its fate is known.
    fn advanced(&mut self, _outcome: &ReplayOutcome) {}
    /// Called at the end.
    fn finished(&mut self, _report: &ReplayReport) {}
}

/// Observer that reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;
impl ReplayObserver for NoProgress {}

struct Pending {
    entry: DlqEntry,
    subject: String,
    msg_id: String,
}

impl Dlq {
    /// Replays `target`. Errors are returned only when nothing could be attempted (NATS or the
    /// database unreachable); per-entry failures and refusals are in the report.
    pub async fn replay(
        &self,
        target: &ReplayTarget,
        opts: &ReplayOptions,
        observer: &mut dyn ReplayObserver,
    ) -> Result<ReplayReport, DlqError> {
        let started = std::time::Instant::now();
        let (entries, bulk) = match target {
            ReplayTarget::One(seq) => (vec![self.get(*seq).await?], false),
            ReplayTarget::Filter(f) => {
                let mut v = self.list(f, None).await?;
                // Oldest first: replays keep the original order of events.
                v.reverse();
                (v, true)
            }
        };
        let mut report = ReplayReport {
            selected: entries.len() as u64,
            ..Default::default()
        };
        observer.started(report.selected);

        let event_ids: Vec<String> = entries.iter().filter_map(|e| e.event_id.clone()).collect();
        let mut per_event = store::per_event(&self.pool, &event_ids).await?;
        let bookings: Vec<store::BookingRef> = entries.iter().filter_map(booking_of).collect();
        let stored = store::stored_states(&self.pool, &bookings).await?;

        let mut ticker = opts.rate.filter(|r| *r > 0.0).map(|r| {
            let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut inflight = FuturesOrdered::new();
        let mut records = Vec::new();
        let mut to_delete = Vec::new();
        let window = opts.window.max(1);

        for entry in entries {
            let subject = entry
                .original_subject
                .as_deref()
                .map(|s| self.bus.subject(self.bus.ns.strip(s)));
            let payload = entry.payload_bytes();
            let refuse = stale(&entry, &stored)
                .or_else(|| self.refusal(&entry, opts, bulk, &per_event))
                .or_else(|| {
                    subject
                        .is_none()
                        .then(|| "original subject unknown".to_owned())
                })
                .or_else(|| {
                    payload.is_none().then(|| {
                        "original payload not available (no longer in BOOKINGS)".to_owned()
                    })
                });
            let (Some(subject), Some(payload), None) = (subject.clone(), payload, refuse.clone())
            else {
                let reason = refuse.unwrap_or_default();
                if !bulk {
                    return Err(DlqError::Refused {
                        seq: entry.seq,
                        reason,
                    });
                }
                report.add(
                    ReplayOutcome {
                        seq: entry.seq,
                        subject,
                        status: ReplayStatus::Skipped { reason },
                    },
                    observer,
                );
                continue;
            };
            let bytes = match payload {
                Ok(b) => b,
                Err(message) => {
                    let error = DlqError::Decode {
                        seq: entry.seq,
                        message,
                    }
                    .to_string();
                    report.add(
                        ReplayOutcome {
                            seq: entry.seq,
                            subject: Some(subject),
                            status: ReplayStatus::Failed { error },
                        },
                        observer,
                    );
                    continue;
                }
            };
            let prior = entry.replay_count.max(
                entry
                    .event_id
                    .as_ref()
                    .and_then(|e| per_event.get(e).copied())
                    .unwrap_or(0),
            );
            if let Some(ev) = &entry.event_id {
                *per_event.entry(ev.clone()).or_default() += 1;
            }
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            let msg_id = uuid::Uuid::now_v7().to_string();
            if opts.dry_run {
                records.push(store::NewRecord {
                    dlq_seq: entry.seq,
                    event_id: entry.event_id.clone(),
                    worker: entry.worker.clone(),
                    original_subject: subject.clone(),
                    new_msg_id: None,
                });
                report.add(
                    ReplayOutcome {
                        seq: entry.seq,
                        subject: Some(subject),
                        status: ReplayStatus::DryRun,
                    },
                    observer,
                );
                continue;
            }
            let msg = async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes.into())
                .headers(replay_headers(&entry, &opts.replayed_by, prior))
                .message_id(&msg_id);
            let ack: Result<PublishAckFuture, String> = self
                .bus
                .js
                .send_publish(subject.clone(), msg)
                .await
                .map_err(|e| e.to_string());
            let pending = Pending {
                entry,
                subject,
                msg_id,
            };
            inflight.push_back(async move {
                let res = match ack {
                    Ok(fut) => fut.await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                (pending, res)
            });
            while inflight.len() >= window {
                if let Some(done) = inflight.next().await {
                    self.settle(
                        done,
                        &mut report,
                        &mut records,
                        &mut to_delete,
                        opts,
                        observer,
                    );
                }
                if records.len() >= RECORD_BATCH {
                    self.flush(&mut records, opts).await?;
                }
            }
            if records.len() >= RECORD_BATCH {
                self.flush(&mut records, opts).await?;
            }
        }
        while let Some(done) = inflight.next().await {
            self.settle(
                done,
                &mut report,
                &mut records,
                &mut to_delete,
                opts,
                observer,
            );
        }
        self.flush(&mut records, opts).await?;
        if opts.delete_after && !to_delete.is_empty() {
            report.deleted = self.delete(&to_delete).await?.deleted;
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        observer.finished(&report);
        Ok(report)
    }

    /// Why an entry must not be replayed now, if it must not.
    /// Why `entry` must not be replayed (loop limit, already replayed, unparseable).
    fn refusal(
        &self,
        entry: &DlqEntry,
        opts: &ReplayOptions,
        bulk: bool,
        per_event: &HashMap<String, u32>,
    ) -> Option<String> {
        if entry.source == EntrySource::Unparseable {
            return Some("unparseable DLQ message: inspect and purge it".to_owned());
        }
        let recorded = entry
            .event_id
            .as_ref()
            .and_then(|e| per_event.get(e).copied())
            .unwrap_or(0);
        let count = entry.replay_count.max(recorded);
        if count >= opts.max_replays && !opts.force {
            return Some(format!(
                "event already replayed {count} times (limit {}): fix the cause, or use --force",
                opts.max_replays
            ));
        }
        if bulk && entry.replays > 0 && !opts.include_replayed {
            return Some(format!(
                "entry already replayed {} time(s); use --include-replayed to replay it again",
                entry.replays
            ));
        }
        None
    }

    fn settle(
        &self,
        (p, res): (
            Pending,
            Result<async_nats::jetstream::publish::PublishAck, String>,
        ),
        report: &mut ReplayReport,
        records: &mut Vec<store::NewRecord>,
        to_delete: &mut Vec<u64>,
        opts: &ReplayOptions,
        observer: &mut dyn ReplayObserver,
    ) {
        let status = match res {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::warn!(seq = p.entry.seq, msg_id = %p.msg_id, "replay reported as duplicate");
                }
                records.push(store::NewRecord {
                    dlq_seq: p.entry.seq,
                    event_id: p.entry.event_id.clone(),
                    worker: p.entry.worker.clone(),
                    original_subject: p.subject.clone(),
                    new_msg_id: Some(p.msg_id.clone()),
                });
                if opts.delete_after {
                    to_delete.push(p.entry.seq);
                }
                ReplayStatus::Replayed {
                    new_msg_id: p.msg_id,
                    stream_sequence: ack.sequence,
                }
            }
            Err(e) => ReplayStatus::Failed {
                error: DlqError::Publish {
                    seq: p.entry.seq,
                    subject: p.subject.clone(),
                    message: e,
                }
                .to_string(),
            },
        };
        report.add(
            ReplayOutcome {
                seq: p.entry.seq,
                subject: Some(p.subject),
                status,
            },
            observer,
        );
    }

    async fn flush(
        &self,
        records: &mut Vec<store::NewRecord>,
        opts: &ReplayOptions,
    ) -> Result<(), DlqError> {
        store::insert(
            &self.pool,
            &self.dlq_stream,
            &opts.replayed_by,
            opts.dry_run,
            records,
        )
        .await?;
        records.clear();
        Ok(())
    }
}

/// Original headers minus the server's own (`Nats-*`, which would dedupe or constrain the
/// republish), plus the replay headers. `Accesshub-Event-Id` is kept (or set from the original
/// id) so the worker's revision check and the loop protection still see the same event.
/// `prior` is how often the event was replayed before (the larger of the entry's count and the
/// recorded replays).
pub fn replay_headers(entry: &DlqEntry, replayed_by: &str, prior: u32) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, values) in &entry.headers {
        if name.to_ascii_lowercase().starts_with("nats-")
            || [
                headers::REPLAY_OF,
                headers::REPLAY_COUNT,
                headers::REPLAYED_BY,
                headers::EVENT_ID,
            ]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            continue;
        }
        for v in values {
            h.append(name.as_str(), v.as_str());
        }
    }
    let replay_of = entry.id.clone().unwrap_or_else(|| entry.seq.to_string());
    h.insert(headers::REPLAY_OF, replay_of.as_str());
    h.insert(
        headers::REPLAY_COUNT,
        prior.saturating_add(1).to_string().as_str(),
    );
    h.insert(headers::REPLAYED_BY, replayed_by);
    if let Some(ev) = &entry.event_id {
        h.insert(headers::EVENT_ID, ev.as_str());
    }
    h
}

/// The booking a dead-lettered event is about (entries without one are not checked).
fn booking_of(e: &DlqEntry) -> Option<store::BookingRef> {
    Some((e.tenant.clone()?, e.kind.clone()?, e.booking_key.clone()?))
}

/// A replay never pushes a state older than the booking's stored desired state: not an older
/// revision, nor one of the same revision that would undo an ending (the cancellation won the
/// tie). Not overridable with `--force`: replay the newer event instead. Entries whose
/// payload is not an event (removal commands) are not checked.
fn stale(entry: &DlqEntry, stored: &HashMap<store::BookingRef, (i64, bool)>) -> Option<String> {
    let ev: accesshub_domain::Event = serde_json::from_slice(&entry.payload_bytes()?.ok()?).ok()?;
    let &(current, current_ends) = stored.get(&booking_of(entry)?)?;
    if accesshub_domain::supersedes((current, current_ends), (ev.revision, ev.ends_access())) {
        let ends = if current_ends {
            ", which ends access"
        } else {
            ""
        };
        return Some(format!(
            "older than the booking's stored desired state (revision {} vs {current}{ends}): replaying it would push a stale state; replay the newer event instead",
            ev.revision
        ));
    }
    None
}
