//! The durable consumers a worker pulls from: one on BOOKINGS (this worker's event kinds) and
//! one on SYNC (the reconciler's repair commands for this vendor), created or brought to our
//! settings before each pull, and recognised when the server says one is gone.

use accesshub_domain::subjects;
use async_nats::jetstream::{
    ErrorCode,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{ConsumerError, ConsumerErrorKind},
};

use super::Shared;
use crate::handler::Handler;

/// The durable consumer's configuration: one filter subject (nats-server 2.9).
fn consumer_config<H: Handler>(s: &Shared<H>) -> pull::Config {
    let kinds = s.handler.kinds();
    let filter = match kinds {
        [one] => subjects::bookings_of_kind(*one),
        _ => subjects::BOOKINGS_SUBJECTS.to_owned(),
    };
    pull::Config {
        durable_name: Some(s.consumer_name.clone()),
        description: Some(format!("{} (accesshub worker)", s.handler.name())),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        filter_subject: s.bus.subject(&filter),
        ack_wait: s.cfg.ack_wait,
        max_deliver: s.cfg.max_deliver,
        max_ack_pending: s.cfg.max_ack_pending,
        ..Default::default()
    }
}

/// Which stream a pull loop consumes: booking events, or the reconciler's repair commands.
/// Both feed the same keyed dispatch and the same handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feed {
    Bookings,
    Sync,
}

/// The SYNC consumer: this vendor's repair commands, same delivery settings as BOOKINGS.
fn sync_consumer_config<H: Handler>(s: &Shared<H>) -> pull::Config {
    pull::Config {
        durable_name: Some(s.sync_consumer_name.clone()),
        description: Some(format!(
            "{} repair commands (accesshub worker)",
            s.handler.name()
        )),
        filter_subject: s.bus.subject(&format!(
            "sync.{}.>",
            subjects::token(s.handler.vendor().as_str())
        )),
        ..consumer_config(s)
    }
}

pub(super) fn feed_names<H: Handler>(s: &Shared<H>, feed: Feed) -> (&str, &str) {
    match feed {
        Feed::Bookings => (&s.stream_name, &s.consumer_name),
        Feed::Sync => (&s.sync_stream_name, &s.sync_consumer_name),
    }
}

/// Creates the consumer or brings it to our settings; falls back to the existing one when
/// the server refuses the update.
pub(super) async fn ensure_consumer<H: Handler>(
    s: &Shared<H>,
    feed: Feed,
) -> Result<PullConsumer, String> {
    let (stream_name, consumer_name) = feed_names(s, feed);
    let stream = s
        .bus
        .js
        .get_stream(stream_name)
        .await
        .map_err(|e| format!("stream {stream_name}: {e}"))?;
    let config = match feed {
        Feed::Bookings => consumer_config(s),
        Feed::Sync => sync_consumer_config(s),
    };
    match stream.create_consumer(config).await {
        Ok(c) => Ok(c),
        Err(e) => {
            tracing::warn!(error = %e, consumer = %consumer_name, "consumer create/update refused; using existing");
            stream
                .get_consumer(consumer_name)
                .await
                .map_err(|e2| format!("consumer {consumer_name}: {e}; {e2}"))
        }
    }
}

/// Whether a consumer lookup failed because the consumer (or its stream) no longer exists —
/// JetStream's "consumer not found" (10014) or "stream not found" (10059) — so the consumer
/// must be created again, rather than NATS being slow or away.
pub(super) fn is_gone(e: &ConsumerError) -> bool {
    match e.kind() {
        ConsumerErrorKind::JetStream(js) => {
            let code = js.error_code();
            code == ErrorCode::CONSUMER_NOT_FOUND || code == ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use accesshub_testkit::TestBus;
    use async_nats::jetstream::consumer::pull;

    use super::*;

    /// The info loop's question, asked of a real server: a deleted consumer (or stream) is
    /// "gone"; a lookup refused for another reason is not.
    #[tokio::test]
    async fn a_missing_consumer_or_stream_is_gone_by_error_code() {
        let tb = TestBus::new("postgres://unused").await;
        let js = &tb.bus.js;
        let stream = tb.bus.stream_name(subjects::BOOKINGS_STREAM);
        let missing = js
            .get_consumer_from_stream::<pull::Config, _, _>("no-such-consumer", &stream)
            .await
            .err()
            .unwrap();
        assert!(is_gone(&missing), "{missing:?}");
        let no_stream = js
            .get_consumer_from_stream::<pull::Config, _, _>("c", format!("{stream}-none"))
            .await
            .err()
            .unwrap();
        assert!(is_gone(&no_stream), "{no_stream:?}");
        let invalid = js
            .get_consumer_from_stream::<pull::Config, _, _>("bad.name", &stream)
            .await
            .err()
            .unwrap();
        assert!(!is_gone(&invalid), "{invalid:?}");
        tb.cleanup().await;
    }
}
