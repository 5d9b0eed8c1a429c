//! End to end with the real worker runtime: a poison event and a vendor outage each end in the
//! DLQ with the right reason; after the fix, a replay applies them exactly once; an event that
//! keeps failing comes back with its history and is stopped by the loop limit.

#![allow(clippy::unwrap_used)]

use accesshub_testkit::eventually;
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use accesshub_connections::{Connection, TapkeySettings, Vendor, VendorSettings};
use accesshub_dlq::{Dlq, DlqError, Filter, NoProgress, ReplayOptions, ReplayTarget};
use accesshub_domain::{
    ErrorClass, Event, EventBody, EventKind, Pass, PassHolder, PassStatus, Source, headers,
};
use async_nats::jetstream::message::PublishMessage;
use worker_runtime::{
    ApplyContext, ApplyOutcome, Handler, HandlerError, Recorded, StaticConnections, Status,
    WorkerConfig,
};

/// `poison-*` fails permanently until `fixed`; `outage-*` fails transiently while `outage`.
#[derive(Clone, Default)]
struct Script {
    fixed: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
    applied: Arc<Mutex<HashMap<String, u32>>>,
}

struct E2eHandler(Script);

impl Handler for E2eHandler {
    type Ids = serde_json::Value;
    type Client = ();

    fn client(
        &self,
        _conn: &Connection,
        _limiter: std::sync::Arc<vendor_http::RateLimiter>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "e2e-worker"
    }
    fn vendor(&self) -> Vendor {
        Vendor::Tapkey
    }
    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Pass]
    }
    async fn apply(
        &self,
        ctx: &ApplyContext<()>,
        event: &Event,
        _prev: Option<&Recorded<serde_json::Value>>,
    ) -> Result<ApplyOutcome<serde_json::Value>, HandlerError> {
        let key = event.booking_key.clone();
        if key.starts_with("poison-") && !self.0.fixed.load(Ordering::SeqCst) {
            return Err(HandlerError::permanent(
                "pass type gold is not mapped to any lock",
            ));
        }
        if key.starts_with("outage-") && self.0.outage.load(Ordering::SeqCst) {
            return Err(HandlerError::transient("Tapkey create grant: HTTP 503"));
        }
        *self.0.applied.lock().unwrap().entry(key).or_default() += 1;
        Ok(ApplyOutcome::new(
            Status::Active,
            serde_json::json!({"ref": ctx.reference}),
        ))
    }
}

fn connection() -> Connection {
    Connection {
        tenant: "acme".into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Tapkey(TapkeySettings {
            authority_url: "http://127.0.0.1:9".into(),
            base_url: "http://127.0.0.1:9".into(),
            client_id: "c".into(),
            client_secret: accesshub_connections::Secret::new("s"),
            owner_account_id: "o".into(),
            pass_types: BTreeMap::new(),
        }),
        version: 0,
    }
}

fn event(key: &str) -> Event {
    Event::new(
        "acme",
        "hq",
        key,
        1,
        Source::Nexudus,
        chrono::Utc::now(),
        EventBody::Pass(Pass {
            status: PassStatus::Active,
            holder: PassHolder {
                id: "h1".into(),
                email: "h@example.com".into(),
                name: None,
            },
            pass_type: "gold".into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
        }),
    )
}

async fn publish(bus: &accesshub_bus::Bus, ev: &Event) {
    let msg = PublishMessage::build()
        .payload(serde_json::to_vec(ev).unwrap().into())
        .header(headers::TENANT, ev.tenant.as_str())
        .header(headers::KIND, ev.kind().as_str())
        .message_id(ev.id.to_string());
    bus.js
        .send_publish(bus.subject(&ev.subject()), msg)
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn poison_and_outage_dead_letter_then_replay_applies_exactly_once() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let script = Script::default();
    script.outage.store(true, Ordering::SeqCst);
    let cfg = WorkerConfig::for_test(
        tb.config("e2e-worker", &db.url),
        Arc::new(StaticConnections::new(vec![connection()])),
    );
    let worker = worker_runtime::start(cfg, E2eHandler(script.clone()))
        .await
        .unwrap();
    let dlq = Dlq::new(tb.bus.clone(), db.pool.clone());

    let poison = event("poison-1");
    let outage = event("outage-1");
    publish(&tb.bus, &poison).await;
    publish(&tb.bus, &outage).await;
    eventually("both dead-lettered", Duration::from_secs(20), || async {
        dlq.list(&Filter::default(), None).await.unwrap().len() >= 2
    })
    .await;
    let entries = dlq.list(&Filter::default(), None).await.unwrap();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let p = entries
        .iter()
        .find(|e| e.booking_key.as_deref() == Some("poison-1"))
        .unwrap();
    assert_eq!(p.class, ErrorClass::Permanent);
    assert_eq!(p.worker, "e2e-worker");
    assert!(p.reason.contains("not mapped"), "{}", p.reason);
    assert_eq!(p.event_id.as_deref(), Some(poison.id.to_string().as_str()));
    let o = entries
        .iter()
        .find(|e| e.booking_key.as_deref() == Some("outage-1"))
        .unwrap();
    assert_eq!(o.class, ErrorClass::Transient);
    assert!(
        o.reason.contains("retries exhausted") && o.reason.contains("503"),
        "{}",
        o.reason
    );
    assert_eq!(o.attempts, 5);
    let transient = dlq
        .list(
            &Filter {
                class: Some(ErrorClass::Transient),
                worker: Some("e2e".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(transient.len(), 1);

    // The fix: mapping added, vendor back.
    script.fixed.store(true, Ordering::SeqCst);
    script.outage.store(false, Ordering::SeqCst);
    let opts = ReplayOptions {
        replayed_by: "sre".into(),
        ..ReplayOptions::default()
    };
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &opts,
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed, 2);
    eventually("both applied", Duration::from_secs(20), || async {
        let a = script.applied.lock().unwrap();
        a.get("poison-1") == Some(&1) && a.get("outage-1") == Some(&1)
    })
    .await;

    // Replaying again (forced past the "already replayed" mark) changes nothing at the vendor:
    // the revision was applied, the worker skips it.
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &ReplayOptions {
                include_replayed: true,
                ..opts.clone()
            },
            &mut NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let a = script.applied.lock().unwrap();
        assert_eq!(a.get("poison-1"), Some(&1), "exactly once");
        assert_eq!(a.get("outage-1"), Some(&1), "exactly once");
    }
    assert_eq!(
        dlq.list(&Filter::default(), None).await.unwrap().len(),
        2,
        "no new failures"
    );

    worker.shutdown().await.unwrap();
    tb.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn an_event_that_keeps_failing_returns_with_history_and_hits_the_loop_limit() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let script = Script::default();
    let cfg = WorkerConfig::for_test(
        tb.config("e2e-worker", &db.url),
        Arc::new(StaticConnections::new(vec![connection()])),
    );
    let worker = worker_runtime::start(cfg, E2eHandler(script.clone()))
        .await
        .unwrap();
    let dlq = Dlq::new(tb.bus.clone(), db.pool.clone());
    let ev = event("poison-loop");
    publish(&tb.bus, &ev).await;
    let n_entries = |n: usize| {
        let dlq = dlq.clone();
        async move { dlq.list(&Filter::default(), None).await.unwrap().len() >= n }
    };
    eventually("first failure", Duration::from_secs(20), || n_entries(1)).await;

    let opts = ReplayOptions {
        replayed_by: "sre".into(),
        max_replays: 2,
        ..ReplayOptions::default()
    };
    for round in 1..=2u32 {
        let newest = dlq
            .list(&Filter::default(), Some(1))
            .await
            .unwrap()
            .remove(0);
        dlq.replay(&ReplayTarget::One(newest.seq), &opts, &mut NoProgress)
            .await
            .unwrap();
        eventually("failure after replay", Duration::from_secs(20), || {
            n_entries(1 + round as usize)
        })
        .await;
        let again = dlq
            .list(&Filter::default(), Some(1))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            again.replay_count, round,
            "the worker carries the replay count"
        );
        assert_eq!(again.event_id.as_deref(), Some(ev.id.to_string().as_str()));
        let shown = dlq.show(again.seq).await.unwrap();
        assert_eq!(shown.earlier_replays.len(), round as usize);
    }
    let newest = dlq
        .list(&Filter::default(), Some(1))
        .await
        .unwrap()
        .remove(0);
    let err = dlq
        .replay(&ReplayTarget::One(newest.seq), &opts, &mut NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, DlqError::Refused { .. }), "{err}");
    assert!(script.applied.lock().unwrap().is_empty());

    worker.shutdown().await.unwrap();
    tb.cleanup().await;
    db.drop_db().await;
}
