//! The pull loops (one per feed) and the keyed lanes they feed: a booking always hashes to the
//! same lane, so one booking is never processed twice at once in-process while lanes run in
//! parallel.

use std::{
    collections::VecDeque,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use accesshub_retry::{Backoff, RetryPolicy, sleep_unless_cancelled};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Shared,
    consumer::{Feed, ensure_consumer},
    now_ms,
    process::process,
};
use crate::{WorkerError, handler::Handler};

/// Setting up a consumer while NATS is away: retried until shutdown, 400 ms doubling to 12.8 s.
const CONSUMER_SETUP: RetryPolicy = RetryPolicy::forever(Backoff::new(
    Duration::from_millis(400),
    Duration::from_millis(12_800),
));

/// Pauses after pull errors (a refused or deleted consumer, a broken pull), so a consumer that
/// keeps failing is not hammered: 100 ms doubling to 5 s, jittered, reset by the next message.
const PULL_ERRORS: RetryPolicy = RetryPolicy::forever(Backoff::new(
    Duration::from_millis(100),
    Duration::from_secs(5),
));

/// Sets up `feed`'s consumer and starts a pull on it (heartbeats, batch size from the config).
async fn start_pulling<H: Handler>(s: &Shared<H>, feed: Feed) -> Result<pull::Stream, String> {
    let consumer = ensure_consumer(s, feed).await?;
    if feed == Feed::Bookings {
        s.last_info_ok.store(now_ms(), Ordering::Relaxed);
    }
    consumer
        .stream()
        .max_messages_per_batch(s.cfg.batch)
        .heartbeat(s.cfg.heartbeat)
        .expires(s.cfg.heartbeat * 6)
        .messages()
        .await
        .map_err(|e| format!("cannot start pulling: {e}"))
}

/// Pulls one feed into the lanes until `shutdown`.
pub(super) async fn pull_loop<H: Handler>(
    s: Arc<Shared<H>>,
    feed: Feed,
    lanes: Vec<mpsc::UnboundedSender<jetstream::Message>>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut setup = CONSUMER_SETUP.attempts();
    let mut pull_errors = PULL_ERRORS.attempts();
    'outer: while !shutdown.is_cancelled() {
        let mut messages = match start_pulling(&s, feed).await {
            Ok(m) => m,
            Err(e) => {
                let wait = setup.next_wait().unwrap_or(CONSUMER_SETUP.backoff.max);
                tracing::warn!(error = %e, ?wait, ?feed, "cannot pull from the consumer; retrying");
                if sleep_unless_cancelled(wait, &shutdown).await {
                    continue;
                }
                break;
            }
        };
        setup.reset();
        let mut missed = 0u32;
        loop {
            // Only the BOOKINGS feed is watched by the info loop (one waiter for its Notify).
            let recreate = async {
                match feed {
                    Feed::Bookings => s.recreate.notified().await,
                    Feed::Sync => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                _ = recreate => {
                    tracing::warn!("recreating consumer");
                    continue 'outer;
                }
                n = messages.next() => n,
            };
            match next {
                Some(Ok(msg)) => {
                    missed = 0;
                    pull_errors.reset();
                    let idx = lane_index(msg.message.subject.as_str(), lanes.len());
                    // Never waits: a busy lane queues (and keeps its queue alive with
                    // progress acks) while the loop feeds the other lanes.
                    if lanes[idx].send(msg).is_err() {
                        return Err(WorkerError::Task("a lane stopped".into()));
                    }
                }
                Some(Err(e)) => {
                    use jetstream::consumer::pull::MessagesErrorKind as K;
                    match e.kind() {
                        K::MissingHeartbeat => {
                            missed += 1;
                            s.metrics.missed_heartbeat();
                            tracing::warn!(missed, ?feed, "missed pull heartbeat");
                            if missed >= 3 {
                                continue 'outer;
                            }
                        }
                        K::ConsumerDeleted | K::NoResponders | K::RequestLimitExceeded => {
                            let wait = pull_errors.next_wait().unwrap_or_default();
                            tracing::warn!(error = %e, ?feed, ?wait, "consumer gone or refused; recreating");
                            if !sleep_unless_cancelled(wait, &shutdown).await {
                                break 'outer;
                            }
                            continue 'outer;
                        }
                        _ => {
                            let wait = pull_errors.next_wait().unwrap_or_default();
                            tracing::warn!(error = %e, ?feed, ?wait, "pull error; continuing");
                            if !sleep_unless_cancelled(wait, &shutdown).await {
                                break 'outer;
                            }
                        }
                    }
                }
                None => {
                    tracing::warn!(?feed, "message stream ended; recreating");
                    continue 'outer;
                }
            }
        }
    }
    Ok(())
}

/// The lane of a message: the booking's `<tenant>.<key>` (the last two tokens of both
/// `bookings.<kind>.<tenant>.<key>` and `sync.<vendor>.<tenant>.<key>`), so an event and a
/// repair command of one booking share a lane.
fn lane_index(subject: &str, lanes: usize) -> usize {
    let mut parts = subject.rsplitn(3, '.');
    let key = parts.next().unwrap_or_default();
    let tenant = parts.next().unwrap_or_default();
    let mut h = DefaultHasher::new();
    tenant.hash(&mut h);
    key.hash(&mut h);
    usize::try_from(h.finish() % lanes.max(1) as u64).unwrap_or(0)
}

pub(super) async fn lane<H: Handler>(
    s: Arc<Shared<H>>,
    mut rx: mpsc::UnboundedReceiver<jetstream::Message>,
) {
    let mut queue: VecDeque<jetstream::Message> = VecDeque::new();
    let mut open = true;
    loop {
        let msg = match queue.pop_front() {
            Some(m) => m,
            None if open => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
            None => return,
        };
        if s.stopping.is_cancelled() {
            // Not started: give it back now rather than after ack_wait.
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            continue;
        }
        s.metrics.in_flight(1);
        let work = process(&s, msg);
        tokio::pin!(work);
        // While this message is processed, later ones of the lane wait in `queue`: they are
        // taken in, and told to the server as in progress, so a slow booking ahead of them
        // does not let their ack_wait pass (a redelivery to another replica meanwhile).
        let every = s.cfg.progress_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = &mut work => break,
                m = rx.recv(), if open => match m {
                    Some(m) => queue.push_back(m),
                    None => open = false,
                },
                _ = tick.tick() => {
                    for q in &queue {
                        if let Err(e) = q.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "progress ack of a queued message");
                        }
                    }
                }
            }
        }
        s.metrics.in_flight(-1);
    }
}
