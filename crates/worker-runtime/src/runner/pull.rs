//! The pull loops (one per feed), handing every message to the keyed dispatch ([`dispatch`]).
//!
//! [`dispatch`]: super::dispatch

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use accesshub_retry::{Backoff, RetryPolicy, sleep_unless_cancelled};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{
    Shared,
    consumer::{Feed, ensure_consumer},
    dispatch::Dispatcher,
    now_ms,
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

/// Pulls one feed into the dispatch until `shutdown`.
pub(super) async fn pull_loop<H: Handler>(
    s: Arc<Shared<H>>,
    feed: Feed,
    dispatcher: Arc<Dispatcher<H>>,
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
                    // Never waits: a busy booking keeps its next messages (alive, with
                    // progress acks) while the loop feeds the others.
                    dispatcher.dispatch(msg);
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
