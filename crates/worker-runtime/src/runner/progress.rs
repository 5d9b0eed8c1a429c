//! Keeping a message and watching the consumer: progress acks while a slow vendor call runs,
//! and the periodic consumer info (pending gauge, readiness, recreation of a deleted consumer)
//! and DLQ depth.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use tokio_util::sync::CancellationToken;

use super::{Shared, consumer, now_ms};
use crate::handler::Handler;

/// Runs `fut`, sending progress acks so a slow vendor call does not trigger a redelivery.
pub(super) async fn with_progress<T>(
    msg: &jetstream::Message,
    every: Duration,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "progress ack");
                }
            }
        }
    }
}

/// Reads consumer info periodically: pending gauge, readiness, and recreation when the
/// consumer was deleted under us.
pub(super) async fn info_loop<H: Handler>(s: Arc<Shared<H>>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(s.cfg.info_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = s
            .bus
            .js
            .get_consumer_from_stream::<pull::Config, _, _>(&s.consumer_name, &s.stream_name)
            .await;
        match r {
            Ok(mut c) => match c.info().await {
                Ok(info) => {
                    s.metrics.pending(info.num_pending);
                    s.last_info_ok.store(now_ms(), Ordering::Relaxed);
                    if let Some(depth) = dlq_depth(&s).await {
                        s.metrics.dlq_depth(depth);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "consumer info"),
            },
            Err(e) => {
                tracing::warn!(error = %e, consumer = %s.consumer_name, "consumer info unavailable");
                if consumer::is_gone(&e) {
                    s.recreate.notify_one();
                }
            }
        }
    }
}

/// Dead letters this worker has in the DLQ stream (per-subject counts of `dlq.<worker>.>`),
/// so an alert can fire on a growing DLQ without anyone running `accessctl`.
async fn dlq_depth<H: Handler>(s: &Shared<H>) -> Option<u64> {
    use futures::TryStreamExt as _;
    let stream = s
        .bus
        .js
        .get_stream(s.bus.stream_name(accesshub_domain::subjects::DLQ_STREAM))
        .await
        .ok()?;
    let filter = s
        .bus
        .subject(&accesshub_domain::subjects::dlq_of_worker(s.handler.name()));
    let mut subjects = stream.info_with_subjects(filter).await.ok()?;
    let mut total = 0u64;
    while let Ok(Some((_, count))) = subjects.try_next().await {
        total += count as u64;
    }
    Some(total)
}
