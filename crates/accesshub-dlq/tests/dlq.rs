//! Against the real NATS and Postgres (accesshub-testkit isolation): dead letters published the
//! way the worker runtime publishes them, and a real MAX_DELIVERIES advisory.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use accesshub_bus::Bus;
use accesshub_dlq::{
    ADVISORY_REASON, Dlq, DlqError, EntrySource, Filter, NoProgress, ReplayOptions, ReplayStatus,
    ReplayTarget,
};
use accesshub_domain::{DeadLetter, ErrorClass, EventKind, headers, subjects};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use uuid::Uuid;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Spec<'a> {
    worker: &'a str,
    kind: EventKind,
    tenant: &'a str,
    key: &'a str,
    class: ErrorClass,
    reason: &'a str,
    failed_at: DateTime<Utc>,
    event_id: Uuid,
    replay_count: u32,
    /// The dead-lettered message's payload (default: a small stand-in, not an event).
    payload: Option<String>,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            worker: "tapkey-worker",
            kind: EventKind::Pass,
            tenant: "acme",
            key: "P-1",
            class: ErrorClass::Permanent,
            reason: "unknown mapping: pass type gold has no locks",
            failed_at: Utc::now(),
            event_id: Uuid::now_v7(),
            replay_count: 0,
            payload: None,
        }
    }
}

/// Publishes a dead letter as the worker runtime does: full copy, namespaced subject
/// `dlq.<worker>.<original subject>`, PubAck awaited.
async fn publish_dead_letter(bus: &Bus, s: &Spec<'_>) -> DeadLetter {
    let original_subject = bus.subject(&subjects::booking(s.kind, s.tenant, s.key));
    let payload = s.payload.clone().unwrap_or_else(|| {
        serde_json::json!({
            "id": s.event_id, "tenant": s.tenant, "kind": s.kind.as_str(), "key": s.key
        })
        .to_string()
    });
    let mut h = BTreeMap::new();
    h.insert(headers::MSG_ID.to_owned(), vec![s.event_id.to_string()]);
    h.insert(headers::TENANT.to_owned(), vec![s.tenant.to_owned()]);
    h.insert(headers::KIND.to_owned(), vec![s.kind.as_str().to_owned()]);
    h.insert(
        headers::TRACEPARENT.to_owned(),
        vec![TRACEPARENT.to_owned()],
    );
    if s.replay_count > 0 {
        h.insert(
            headers::REPLAY_COUNT.to_owned(),
            vec![s.replay_count.to_string()],
        );
        h.insert(headers::EVENT_ID.to_owned(), vec![s.event_id.to_string()]);
    }
    let (payload, payload_encoding) = DeadLetter::encode_payload(payload.as_bytes());
    let dl = DeadLetter {
        id: Uuid::now_v7(),
        worker: s.worker.to_owned(),
        original_subject: original_subject.clone(),
        original_headers: h,
        payload,
        payload_encoding,
        reason: s.reason.to_owned(),
        class: s.class,
        attempts: if s.class == ErrorClass::Transient {
            5
        } else {
            1
        },
        stream_sequence: None,
        stream: bus.stream_name(subjects::BOOKINGS_STREAM),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        event_id: Some(s.event_id),
        tenant: Some(s.tenant.to_owned()),
        kind: Some(s.kind.as_str().to_owned()),
        booking_key: Some(s.key.to_owned()),
        replay_count: s.replay_count,
        failed_at: s.failed_at,
    };
    let msg = jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&dl).unwrap().into())
        .header(headers::DLQ_WORKER, s.worker)
        .header(headers::DLQ_CLASS, s.class.as_str())
        .message_id(dl.id.to_string());
    let subject = bus.subject(&subjects::dlq(s.worker, &original_subject));
    bus.js
        .send_publish(subject, msg)
        .await
        .unwrap()
        .await
        .unwrap();
    dl
}

async fn setup() -> (accesshub_testkit::TestDb, accesshub_testkit::TestBus, Dlq) {
    let (db, tb) = accesshub_testkit::isolated().await;
    let dlq = Dlq::new(tb.bus.clone(), db.pool.clone());
    (db, tb, dlq)
}

fn opts() -> ReplayOptions {
    ReplayOptions {
        replayed_by: "sre-alice".into(),
        ..ReplayOptions::default()
    }
}

async fn bookings_last_seq(bus: &Bus) -> u64 {
    bus.js
        .get_stream(bus.stream_name(subjects::BOOKINGS_STREAM))
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .last_sequence
}

#[tokio::test]
async fn list_filters_newest_first() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    let t0 = Utc::now() - chrono::Duration::hours(3);
    publish_dead_letter(
        bus,
        &Spec {
            failed_at: t0,
            ..Default::default()
        },
    )
    .await;
    publish_dead_letter(
        bus,
        &Spec {
            worker: "cloudpass-worker",
            kind: EventKind::Reservation,
            tenant: "globex",
            key: "R.7",
            class: ErrorClass::Transient,
            reason: "retries exhausted: CloudPass 503 Service Unavailable",
            failed_at: t0 + chrono::Duration::hours(1),
            ..Default::default()
        },
    )
    .await;
    publish_dead_letter(
        bus,
        &Spec {
            worker: "tapkey-worker",
            tenant: "globex",
            key: "P-2",
            reason: "credentials rejected: 401 invalid_client",
            failed_at: t0 + chrono::Duration::hours(2),
            ..Default::default()
        },
    )
    .await;

    let all = dlq.list(&Filter::default(), None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    assert!(all.iter().all(|e| e.source == EntrySource::DeadLetter));

    let count = |f: Filter| {
        let dlq = dlq.clone();
        async move { dlq.list(&f, None).await.unwrap() }
    };
    let r = count(Filter {
        tenant: Some("globex".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 2);
    let r = count(Filter {
        worker: Some("cloudpass".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].booking_key.as_deref(), Some("R.7"));
    let r = count(Filter {
        worker: Some("tapkey-worker".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 2);
    let r = count(Filter {
        kind: Some("reservation".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    let r = count(Filter {
        booking: Some("P-2".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    let r = count(Filter {
        class: Some(ErrorClass::Transient),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    let r = count(Filter {
        since: Some(t0 + chrono::Duration::minutes(30)),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 2);
    let r = count(Filter {
        until: Some(t0 + chrono::Duration::minutes(30)),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    let r = count(Filter {
        reason_contains: Some("INVALID_CLIENT".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    let r = count(Filter {
        tenant: Some("globex".into()),
        class: Some(ErrorClass::Permanent),
        ..Default::default()
    })
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        dlq.list(&Filter::default(), Some(2)).await.unwrap().len(),
        2
    );

    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn show_and_replay_one_with_fresh_msg_id_and_record() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    let spec = Spec::default();
    let dl = publish_dead_letter(bus, &spec).await;
    let seq = dlq.list(&Filter::default(), None).await.unwrap()[0].seq;

    let d = dlq.show(seq).await.unwrap();
    assert_eq!(d.entry.id.as_deref(), Some(dl.id.to_string().as_str()));
    assert_eq!(d.entry.reason, spec.reason);
    assert_eq!(d.entry.attempts, 1);
    assert_eq!(
        d.entry.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(d.entry.payload.as_deref(), Some(dl.payload.as_str()));
    assert_eq!(d.entry.headers[headers::TENANT], vec!["acme".to_owned()]);
    assert!(d.earlier_replays.is_empty());

    let mut sub = bus
        .client
        .subscribe(dl.original_subject.clone())
        .await
        .unwrap();
    let report = dlq
        .replay(&ReplayTarget::One(seq), &opts(), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(report.replayed, 1);
    let new_id = match &report.outcomes[0].status {
        ReplayStatus::Replayed { new_msg_id, .. } => new_msg_id.clone(),
        other => panic!("{other:?}"),
    };
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    let h = msg.headers.unwrap();
    let msg_id = h.get(headers::MSG_ID).unwrap().as_str().to_owned();
    assert_eq!(msg_id, new_id);
    assert_ne!(msg_id, spec.event_id.to_string(), "fresh Msg-Id");
    assert_eq!(
        h.get(headers::REPLAY_OF).unwrap().as_str(),
        dl.id.to_string()
    );
    assert_eq!(h.get(headers::REPLAY_COUNT).unwrap().as_str(), "1");
    assert_eq!(h.get(headers::REPLAYED_BY).unwrap().as_str(), "sre-alice");
    assert_eq!(
        h.get(headers::EVENT_ID).unwrap().as_str(),
        spec.event_id.to_string()
    );
    assert_eq!(h.get(headers::TRACEPARENT).unwrap().as_str(), TRACEPARENT);
    assert_eq!(&msg.payload[..], dl.payload.as_bytes());
    // Arrived in BOOKINGS too (the dedupe window did not swallow it).
    assert_eq!(bookings_last_seq(bus).await, 1);

    let d = dlq.show(seq).await.unwrap();
    assert_eq!(d.earlier_replays.len(), 1);
    let r = &d.earlier_replays[0];
    assert_eq!(r.new_msg_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(r.replayed_by, "sre-alice");
    assert_eq!(
        r.event_id.as_deref(),
        Some(spec.event_id.to_string().as_str())
    );
    assert!(!r.dry_run);
    assert_eq!(d.entry.replays, 1, "kept and marked");

    // A bulk replay skips what was replayed already unless asked.
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &opts(),
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!((report.replayed, report.skipped), (0, 1));

    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn replay_of_an_event_that_fails_again_is_bounded() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    let spec = Spec::default();
    publish_dead_letter(bus, &spec).await;
    let o = ReplayOptions {
        max_replays: 2,
        ..opts()
    };

    // Replay, the worker fails again and dead-letters with the carried count, and so on.
    for round in 0..2u32 {
        let seq = dlq.list(&Filter::default(), Some(1)).await.unwrap()[0].seq;
        let report = dlq
            .replay(&ReplayTarget::One(seq), &o, &mut NoProgress)
            .await
            .unwrap();
        assert_eq!(report.replayed, 1, "round {round}");
        publish_dead_letter(
            bus,
            &Spec {
                replay_count: round + 1,
                ..Spec {
                    event_id: spec.event_id,
                    ..Default::default()
                }
            },
        )
        .await;
    }
    let seq = dlq.list(&Filter::default(), Some(1)).await.unwrap()[0].seq;
    let err = dlq
        .replay(&ReplayTarget::One(seq), &o, &mut NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, DlqError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("limit 2"));

    // The records alone also bound it, even if a worker forgot to carry the count.
    publish_dead_letter(
        bus,
        &Spec {
            event_id: spec.event_id,
            ..Default::default()
        },
    )
    .await;
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &ReplayOptions {
                include_replayed: true,
                ..o.clone()
            },
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed, 0);
    assert_eq!(report.skipped, 4);

    // --force overrides.
    let report = dlq
        .replay(
            &ReplayTarget::One(seq),
            &ReplayOptions { force: true, ..o },
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(bookings_last_seq(bus).await, 3);

    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn dry_run_publishes_nothing() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    publish_dead_letter(bus, &Spec::default()).await;
    publish_dead_letter(
        bus,
        &Spec {
            key: "P-9",
            ..Default::default()
        },
    )
    .await;
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &ReplayOptions {
                dry_run: true,
                ..opts()
            },
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!((report.dry_run, report.replayed), (2, 0));
    assert_eq!(bookings_last_seq(bus).await, 0);
    let d = dlq.show(report.outcomes[0].seq).await.unwrap();
    assert_eq!(d.earlier_replays.len(), 1);
    assert!(d.earlier_replays[0].dry_run);
    assert_eq!(d.entry.replays, 0, "dry runs do not mark entries");
    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn replay_with_delete_after_and_rate() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    for i in 0..5 {
        let key = format!("P-{i}");
        publish_dead_letter(
            bus,
            &Spec {
                key: &key,
                ..Default::default()
            },
        )
        .await;
    }
    let started = std::time::Instant::now();
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &ReplayOptions {
                delete_after: true,
                rate: Some(20.0),
                ..opts()
            },
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!((report.replayed, report.deleted), (5, 5));
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "paced at 20/s"
    );
    assert!(dlq.list(&Filter::default(), None).await.unwrap().is_empty());
    assert_eq!(bookings_last_seq(bus).await, 5);
    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn purge_with_filter_removes_only_matching() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    publish_dead_letter(bus, &Spec::default()).await;
    publish_dead_letter(
        bus,
        &Spec {
            key: "P-2",
            ..Default::default()
        },
    )
    .await;
    publish_dead_letter(
        bus,
        &Spec {
            tenant: "globex",
            ..Default::default()
        },
    )
    .await;
    let report = dlq
        .purge(&Filter {
            tenant: Some("acme".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((report.deleted, report.missing), (2, 0));
    let left = dlq.list(&Filter::default(), None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tenant.as_deref(), Some("globex"));
    // Deleting again is not an error.
    let again = dlq.delete(&[1]).await.unwrap();
    assert_eq!(again.deleted, 0);
    tb.cleanup().await;
    db.drop_db().await;
}

/// A consumer with max_deliver 2 that NAKs until the server publishes MAX_DELIVERIES, which
/// the DLQ stream captures; the entry is resolved to the original in BOOKINGS.
#[tokio::test]
async fn max_deliveries_advisory_is_resolved_and_replayable() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    let event_id = Uuid::now_v7();
    let subject = bus.subject(&subjects::booking(EventKind::Pass, "acme", "P-adv"));
    let msg = jetstream::message::PublishMessage::build()
        .payload(bytes::Bytes::from_static(b"{\"poison\":true}"))
        .header(headers::TENANT, "acme")
        .header(headers::KIND, "pass")
        .header(headers::TRACEPARENT, TRACEPARENT)
        .message_id(event_id.to_string());
    bus.js
        .send_publish(subject.clone(), msg)
        .await
        .unwrap()
        .await
        .unwrap();

    let bookings = bus
        .js
        .get_stream(bus.stream_name(subjects::BOOKINGS_STREAM))
        .await
        .unwrap();
    let consumer = bookings
        .create_consumer(pull::Config {
            durable_name: Some(bus.stream_name("tapkey-worker")),
            filter_subject: bus.subject("bookings.pass.>"),
            max_deliver: 2,
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let dlq_stream = bus
        .js
        .get_stream(bus.stream_name(subjects::DLQ_STREAM))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if dlq_stream.get_info().await.unwrap().state.messages > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no advisory captured");
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            m.ack_with(AckKind::Nak(None)).await.unwrap();
        }
    }

    let entries = dlq.list(&Filter::default(), None).await.unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.source, EntrySource::Advisory);
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.reason, ADVISORY_REASON);
    assert_eq!(e.worker, "tapkey-worker");
    assert_eq!(e.attempts, 2);
    assert_eq!(e.original_subject.as_deref(), Some(subject.as_str()));
    assert_eq!(e.tenant.as_deref(), Some("acme"));
    assert_eq!(e.booking_key.as_deref(), Some("P-adv"));
    assert_eq!(e.event_id.as_deref(), Some(event_id.to_string().as_str()));
    assert_eq!(
        e.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(e.payload.as_deref(), Some("{\"poison\":true}"));
    let f = |w: &str| Filter {
        worker: Some(w.into()),
        class: Some(ErrorClass::Transient),
        ..Default::default()
    };
    assert_eq!(dlq.list(&f("tapkey"), None).await.unwrap().len(), 1);
    assert_eq!(dlq.list(&f("cloudpass"), None).await.unwrap().len(), 0);

    let depth = dlq.depth_per_worker().await.unwrap();
    assert_eq!(depth.get("tapkey-worker (advisory)"), Some(&1));

    let mut sub = bus.client.subscribe(subject.clone()).await.unwrap();
    let report = dlq
        .replay(&ReplayTarget::One(e.seq), &opts(), &mut NoProgress)
        .await
        .unwrap();
    assert_eq!(report.replayed, 1);
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    let h = m.headers.unwrap();
    assert_ne!(
        h.get(headers::MSG_ID).unwrap().as_str(),
        event_id.to_string()
    );
    assert_eq!(
        h.get(headers::EVENT_ID).unwrap().as_str(),
        event_id.to_string()
    );
    assert_eq!(&m.payload[..], b"{\"poison\":true}");

    // A worker's dead letter for the same original supersedes the advisory in listings.
    let mut spec_dl = publish_dead_letter(
        bus,
        &Spec {
            key: "P-adv",
            event_id,
            ..Default::default()
        },
    )
    .await;
    spec_dl.stream_sequence = Some(1);
    let subj = bus.subject(&subjects::dlq("tapkey-worker", &spec_dl.original_subject));
    bus.js
        .send_publish(
            subj,
            jetstream::message::PublishMessage::build()
                .payload(serde_json::to_vec(&spec_dl).unwrap().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let entries = dlq.list(&Filter::default(), None).await.unwrap();
    assert!(
        entries.iter().all(|e| e.source == EntrySource::DeadLetter),
        "{entries:?}"
    );
    // A purge also removes the advisory hidden behind that dead letter.
    let report = dlq
        .purge(&Filter {
            booking: Some("P-adv".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.deleted, 3, "advisory + both dead letters");
    assert!(
        dlq.purge_preview(&Filter::default())
            .await
            .unwrap()
            .is_empty()
    );

    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn status_reports_streams_consumers_depth_and_sync_runs() {
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    publish_dead_letter(bus, &Spec::default()).await;
    publish_dead_letter(
        bus,
        &Spec {
            worker: "cloudpass-worker",
            ..Default::default()
        },
    )
    .await;
    publish_dead_letter(
        bus,
        &Spec {
            worker: "cloudpass-worker",
            key: "x",
            ..Default::default()
        },
    )
    .await;
    let bookings = bus
        .js
        .get_stream(bus.stream_name(subjects::BOOKINGS_STREAM))
        .await
        .unwrap();
    bookings
        .create_consumer(pull::Config {
            durable_name: Some(bus.stream_name("tapkey-worker")),
            filter_subject: bus.subject("bookings.pass.>"),
            ..Default::default()
        })
        .await
        .unwrap();

    // The reconciler's migration may or may not have created sync_runs: start without it.
    sqlx::query("DROP TABLE IF EXISTS sync_runs CASCADE")
        .execute(&db.pool)
        .await
        .unwrap();
    let st = accesshub_dlq::collect_status(bus, &db.pool).await;
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    assert_eq!(st.streams.len(), 4);
    let dlq_stream = st
        .streams
        .iter()
        .find(|s| s.name == dlq.stream_name())
        .unwrap();
    assert_eq!(dlq_stream.messages, 3);
    assert_eq!(st.consumers.len(), 1);
    assert_eq!(st.dlq_depth.get("cloudpass-worker"), Some(&2));
    assert_eq!(st.dlq_depth.get("tapkey-worker"), Some(&1));
    assert!(st.sync_runs.is_none(), "no table yet");

    // Whatever shape the reconciler gives sync_runs, the last run per connection shows.
    sqlx::query(
        "CREATE TABLE sync_runs (id BIGSERIAL PRIMARY KEY, connection_id TEXT, status TEXT,
                                 started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, created INT)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sync_runs (connection_id, status, started_at) VALUES
           ('c1', 'failed', now() - interval '1 hour'), ('c1', 'ok', now()), ('c2', 'running', now())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let st = accesshub_dlq::collect_status(bus, &db.pool).await;
    let runs = st.sync_runs.unwrap();
    assert_eq!(runs.len(), 2);
    let c1 = runs.iter().find(|r| r.connection == "c1").unwrap();
    assert_eq!(c1.status.as_deref(), Some("ok"));

    tb.cleanup().await;
    db.drop_db().await;
}

/// A pass event of booking `key` at `revision`.
fn pass(key: &str, revision: i64, status: accesshub_domain::PassStatus) -> accesshub_domain::Event {
    accesshub_domain::Event::new(
        "acme",
        "hq",
        key,
        revision,
        accesshub_domain::Source::Nexudus,
        Utc::now(),
        accesshub_domain::EventBody::Pass(accesshub_domain::Pass {
            status,
            holder: accesshub_domain::PassHolder {
                id: "h1".into(),
                email: "h@example.com".into(),
                name: None,
            },
            pass_type: "day".into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: Utc::now() + chrono::Duration::days(1),
        }),
    )
}

/// A replay never pushes a state older than the stored desired state: an older revision, or
/// one of the same revision that would undo the cancellation stored for it, is refused (even
/// with --force); the event the booking stands at is replayed.
#[tokio::test]
async fn replay_never_pushes_a_state_older_than_the_stored_one() {
    use accesshub_domain::PassStatus::Active;
    let (db, tb, dlq) = setup().await;
    let bus = &tb.bus;
    // Stored desired state: S-OLD at revision 3, S-TIE at revision 5 removed, S-OK at 2.
    for (key, rev, ends) in [("S-OLD", 3, false), ("S-TIE", 5, true), ("S-OK", 2, false)] {
        sqlx::query(
            "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, \
               event_id, payload, ends_access) \
             VALUES ('acme', 'pass', $1, 'hq', $2, 'nexudus', $3, '{}'::json, $4)",
        )
        .bind(key)
        .bind(rev)
        .bind(Uuid::now_v7())
        .bind(ends)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    for (key, ev) in [
        ("S-OLD", pass("S-OLD", 2, Active)),
        ("S-TIE", pass("S-TIE", 5, Active)),
        ("S-OK", pass("S-OK", 2, Active)),
    ] {
        let spec = Spec {
            key,
            event_id: ev.id,
            payload: Some(serde_json::to_string(&ev).unwrap()),
            ..Spec::default()
        };
        publish_dead_letter(bus, &spec).await;
    }
    let entries = dlq.list(&Filter::default(), None).await.unwrap();
    let seq_of = |key: &str| {
        entries
            .iter()
            .find(|e| e.booking_key.as_deref() == Some(key))
            .unwrap()
            .seq
    };
    // One by one: refused with the reason, even forced.
    let forced = ReplayOptions {
        force: true,
        ..opts()
    };
    for key in ["S-OLD", "S-TIE"] {
        match dlq
            .replay(&ReplayTarget::One(seq_of(key)), &forced, &mut NoProgress)
            .await
        {
            Err(DlqError::Refused { reason, .. }) => {
                assert!(
                    reason.contains("older than the booking's stored desired state"),
                    "{reason}"
                )
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    // In bulk: the stale ones skipped, the current one replayed.
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &opts(),
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed, 1, "{report:?}");
    let skipped = report
        .outcomes
        .iter()
        .filter(
            |o| matches!(&o.status, ReplayStatus::Skipped { reason } if reason.contains("older")),
        )
        .count();
    assert_eq!(skipped, 2, "{report:?}");
    assert_eq!(
        bookings_last_seq(bus).await,
        1,
        "only S-OK's event was published"
    );
    tb.cleanup().await;
    db.drop_db().await;
}
