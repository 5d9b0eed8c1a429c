//! The dead-letter stream, for the operator who was paged at night: find a failed event,
//! see why it failed, replay it once the cause is fixed, purge what must never run.
//!
//! Entries are workers' [`DeadLetter`](accesshub_domain::DeadLetter) copies and the server's
//! MAX_DELIVERIES advisories (ARCHITECTURE.md, principle 4). An entry's id is its DLQ stream
//! sequence: short to type, stable until the entry is purged or expires. Advisories are
//! resolved to the original message in BOOKINGS while that stream still holds it. Replays go
//! back to the original subject with a fresh `Nats-Msg-Id` (the dedupe window would swallow
//! the original one) and are recorded in Postgres (`dlq_replays`), which also bounds how often
//! one event can be replayed: a fix that did not work cannot turn into a loop.

pub mod entry;
pub mod error;
pub mod replay;
pub mod scope;
pub mod status;
pub mod store;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use accesshub_bus::Bus;
use accesshub_domain::subjects;
use async_nats::jetstream::{self, consumer::DeliverPolicy, stream::Stream};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

pub use entry::{ADVISORY_REASON, DlqEntry, EntrySource, Filter};
pub use error::DlqError;
pub use replay::{
    NoProgress, ReplayObserver, ReplayOptions, ReplayOutcome, ReplayReport, ReplayStatus,
    ReplayTarget,
};
pub use scope::{Scope, ids_by_tenant};
pub use status::{EdgeSite, ParkedConnection, Status, collect as collect_status};
pub use store::ReplayRecord;

/// How long a scan waits for the next message before concluding the stream is exhausted
/// (only reached if the server's pending count is unavailable).
const SCAN_IDLE: Duration = Duration::from_secs(5);

/// Handle on the DLQ of one namespace, with the database that records replays.
#[derive(Clone, Debug)]
pub struct Dlq {
    bus: Bus,
    pool: PgPool,
    dlq_stream: String,
    bookings_stream: String,
}

/// `show`: one entry with everything needed to decide whether to replay it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryDetail {
    /// The entry, with payload and headers.
    #[serde(flatten)]
    pub entry: DlqEntry,
    /// Earlier replays of the same event (oldest first), dry runs included and marked.
    pub earlier_replays: Vec<ReplayRecord>,
}

/// Outcome of a purge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PurgeReport {
    /// Entries removed.
    pub deleted: u64,
    /// Entries that were already gone (expired or purged concurrently).
    pub missing: u64,
}

impl Dlq {
    /// Uses the namespace of `bus` for the DLQ and BOOKINGS stream names.
    pub fn new(bus: Bus, pool: PgPool) -> Self {
        let dlq_stream = bus.stream_name(subjects::DLQ_STREAM);
        let bookings_stream = bus.stream_name(subjects::BOOKINGS_STREAM);
        Dlq {
            bus,
            pool,
            dlq_stream,
            bookings_stream,
        }
    }

    /// The bus (for callers that also need status or publishing).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Namespaced name of the DLQ stream.
    pub fn stream_name(&self) -> &str {
        &self.dlq_stream
    }

    async fn stream(&self, name: &str) -> Result<Stream, DlqError> {
        self.bus.js.get_stream(name).await.map_err(|e| {
            use async_nats::jetstream::context::GetStreamErrorKind;
            match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    DlqError::NoStream(name.to_owned())
                }
                _ => DlqError::nats("get stream", format!("{name}: {e}")),
            }
        })
    }

    /// The DLQ stream, `None` while nobody has created it (no worker has started in this
    /// namespace yet): an empty DLQ, not an outage.
    async fn dlq_stream(&self) -> Result<Option<Stream>, DlqError> {
        match self.stream(&self.dlq_stream).await {
            Ok(s) => Ok(Some(s)),
            Err(DlqError::NoStream(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entries matching `filter`, newest first, at most `limit` (None = all).
    ///
    /// Reads the stream once with an ordered consumer (cheaper than one request per message
    /// for large DLQs). An advisory whose original also has a worker's dead letter is dropped:
    /// the dead letter says more.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: Option<usize>,
    ) -> Result<Vec<DlqEntry>, DlqError> {
        self.list_where(filter, limit, |_| true).await
    }

    /// [`Dlq::list`] of the entries `keep` accepts (the limit counts those only).
    async fn list_where(
        &self,
        filter: &Filter,
        limit: Option<usize>,
        keep: impl Fn(&DlqEntry) -> bool,
    ) -> Result<Vec<DlqEntry>, DlqError> {
        let mut entries = self.scan(filter, false).await?;
        entries.retain(|e| keep(e));
        entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
        if let Some(l) = limit {
            entries.truncate(l);
        }
        self.annotate(&mut entries).await?;
        Ok(entries)
    }

    /// One pass over the stream. `keep_superseded` keeps advisories that a dead letter for the
    /// same original makes redundant (a purge removes them too; listings hide them).
    async fn scan(
        &self,
        filter: &Filter,
        keep_superseded: bool,
    ) -> Result<Vec<DlqEntry>, DlqError> {
        let Some(stream) = self.dlq_stream().await? else {
            return Ok(Vec::new());
        };
        let info = stream
            .get_info()
            .await
            .map_err(|e| DlqError::nats("stream info", e))?;
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        let last = info.state.last_sequence;
        // Named, so it can be deleted right after the pass instead of lingering (and showing
        // in `accessctl status`) until the server's inactivity timeout.
        let scan_name = format!("dlq-scan-{}", uuid::Uuid::new_v4().simple());
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                name: Some(scan_name.clone()),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| DlqError::nats("create ordered consumer", e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| DlqError::nats("read DLQ", e))?;

        let bookings = self.stream(&self.bookings_stream).await.ok();
        let mut dead_letter_originals: HashSet<(String, u64)> = HashSet::new();
        let mut out = Vec::new();
        let mut errors = 0u32;
        loop {
            let next = match tokio::time::timeout(SCAN_IDLE, messages.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(Err(e))) => {
                    // Not terminal for an ordered consumer (it recreates itself); give up only
                    // if the server keeps failing.
                    errors += 1;
                    tracing::warn!(error = %e, "reading DLQ");
                    if errors > 10 {
                        return Err(DlqError::nats("read DLQ", e));
                    }
                    continue;
                }
                Ok(Some(Ok(m))) => m,
            };
            let (seq, pending, stored_at) = match next.info() {
                Ok(i) => (i.stream_sequence, i.pending, None::<DateTime<Utc>>),
                Err(_) => continue,
            };
            let (mut e, adv) = entry::parse(
                &self.bus.ns,
                seq,
                next.subject.as_str(),
                &next.payload,
                stored_at,
            );
            if e.source == EntrySource::DeadLetter
                && let Some(s) = e.stream_sequence
            {
                dead_letter_originals.insert((e.stream.clone(), s));
            }
            if let (Some(adv), Some(b)) = (adv, bookings.as_ref()) {
                self.resolve(&mut e, b, &adv).await;
            }
            if filter.matches(&e) {
                out.push(e);
            }
            if seq >= last || pending == 0 {
                break;
            }
        }
        drop(messages);
        if let Err(e) = stream.delete_consumer(&scan_name).await {
            tracing::debug!(error = %e, "scan consumer already gone");
        }
        out.retain(|e| {
            keep_superseded
                || e.source != EntrySource::Advisory
                || e.stream_sequence
                    .is_none_or(|s| !dead_letter_originals.contains(&(e.stream.clone(), s)))
        });
        Ok(out)
    }

    async fn resolve(
        &self,
        e: &mut DlqEntry,
        bookings: &Stream,
        adv: &entry::MaxDeliveriesAdvisory,
    ) {
        if adv.stream != self.bookings_stream {
            return;
        }
        match bookings.get_raw_message(adv.stream_seq).await {
            Ok(m) => entry::resolve(
                e,
                &self.bus.ns,
                m.subject.as_str(),
                Some(&m.headers),
                &m.payload,
            ),
            Err(err) => {
                tracing::debug!(seq = adv.stream_seq, error = %err, "original no longer in BOOKINGS");
                e.reason = format!("{ADVISORY_REASON}; original no longer in {}", adv.stream);
            }
        }
    }

    async fn annotate(&self, entries: &mut [DlqEntry]) -> Result<(), DlqError> {
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let marks = store::per_entry(&self.pool, &self.dlq_stream, &seqs).await?;
        for e in entries.iter_mut() {
            if let Some((n, last)) = marks.get(&e.seq) {
                e.replays = *n;
                e.last_replayed_at = Some(*last);
            }
        }
        Ok(())
    }

    /// One entry by its id (DLQ sequence), without history.
    pub async fn get(&self, seq: u64) -> Result<DlqEntry, DlqError> {
        let stream = self.dlq_stream().await?.ok_or(DlqError::NotFound(seq))?;
        let m = stream.get_raw_message(seq).await.map_err(|e| {
            use async_nats::jetstream::stream::RawMessageErrorKind;
            match e.kind() {
                RawMessageErrorKind::NoMessageFound => DlqError::NotFound(seq),
                _ => DlqError::nats("get DLQ message", e),
            }
        })?;
        let (mut e, adv) = entry::parse(&self.bus.ns, seq, m.subject.as_str(), &m.payload, None);
        if let Some(adv) = adv
            && let Ok(b) = self.stream(&self.bookings_stream).await
        {
            self.resolve(&mut e, &b, &adv).await;
        }
        let mut one = [e];
        self.annotate(&mut one).await?;
        let [e] = one;
        Ok(e)
    }

    /// `show`: the entry plus the earlier replays of its event.
    pub async fn show(&self, seq: u64) -> Result<EntryDetail, DlqError> {
        let entry = self.get(seq).await?;
        let earlier_replays =
            store::history(&self.pool, &self.dlq_stream, seq, entry.event_id.as_deref()).await?;
        Ok(EntryDetail {
            entry,
            earlier_replays,
        })
    }

    /// Deletes entries by id. The caller previews with [`Dlq::list`] and confirms first.
    pub async fn delete(&self, seqs: &[u64]) -> Result<PurgeReport, DlqError> {
        let mut report = PurgeReport::default();
        let Some(stream) = self.dlq_stream().await? else {
            report.missing = seqs.len() as u64;
            return Ok(report);
        };
        for &seq in seqs {
            match stream.delete_message(seq).await {
                Ok(true) => report.deleted += 1,
                Ok(false) => report.missing += 1,
                Err(e) => {
                    use async_nats::jetstream::stream::DeleteMessageErrorKind;
                    // Already gone (expired, purged concurrently): not an error for a purge.
                    let gone = match e.kind() {
                        DeleteMessageErrorKind::JetStream(js) => {
                            js.error_code() == async_nats::jetstream::ErrorCode::SEQUENCE_NOT_FOUND
                        }
                        _ => false,
                    };
                    if gone {
                        report.missing += 1;
                    } else {
                        return Err(DlqError::nats("delete DLQ message", e));
                    }
                }
            }
        }
        Ok(report)
    }

    /// What a purge with `filter` would delete (listing plus the hidden advisories), so the
    /// CLI can show the count and ask before deleting.
    pub async fn purge_preview(&self, filter: &Filter) -> Result<Vec<DlqEntry>, DlqError> {
        let mut entries = self.scan(filter, true).await?;
        entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
        Ok(entries)
    }

    /// Purge: deletes every entry matching `filter` (including advisories hidden behind a dead
    /// letter for the same original) and says how many went.
    pub async fn purge(&self, filter: &Filter) -> Result<PurgeReport, DlqError> {
        let seqs: Vec<u64> = self
            .scan(filter, true)
            .await?
            .iter()
            .map(|e| e.seq)
            .collect();
        self.delete(&seqs).await
    }

    /// Entries per worker (advisories counted under their consumer), from the server's
    /// per-subject counts: cheap even for a deep DLQ.
    pub async fn depth_per_worker(&self) -> Result<HashMap<String, u64>, DlqError> {
        status::dlq_depth(&self.bus).await
    }
}
