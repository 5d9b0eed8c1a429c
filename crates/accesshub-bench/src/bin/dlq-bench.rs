//! `make bench`: how fast the DLQ tooling works through a large backlog — publishing 100,000
//! dead letters (as workers would after a long vendor outage), listing them, replaying them
//! all (PubAck awaited, every replay recorded in Postgres) and purging them. Writes the
//! "## DLQ replay" section of BENCHMARKS.md.
//!
//! `DLQ_BENCH_N` changes the number of entries. Needs the local NATS and Postgres.

use std::{collections::BTreeMap, time::Instant};

use accesshub_dlq::{Dlq, Filter, NoProgress, ReplayOptions, ReplayTarget};
use accesshub_domain::{DeadLetter, ErrorClass, EventKind, headers, subjects};
use anyhow::Context as _;
use futures::{StreamExt as _, stream::FuturesUnordered};

fn rate(n: u64, secs: f64) -> String {
    format!("{:.0}/s", n as f64 / secs.max(1e-9))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: u64 = accesshub_config::env_or("DLQ_BENCH_N", 100_000u64)?;
    let (db, tb) = accesshub_testkit::isolated().await;
    let bus = tb.bus.clone();
    let dlq = Dlq::new(bus.clone(), db.pool.clone());

    // 1. Fill the DLQ like workers would: distinct events over 50 tenants, ~0.6 KB each.
    let t = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..n {
        let tenant = format!("tenant-{}", i % 50);
        let key = format!("P-{i}");
        let event_id = uuid::Uuid::now_v7();
        let original_subject = bus.subject(&subjects::booking(EventKind::Pass, &tenant, &key));
        let body = serde_json::json!({
            "id": event_id, "tenant": tenant, "kind": "pass", "key": key, "revision": 1,
            "pass": {"holder": {"name": "Guest Example", "email": "guest@example.com"},
                     "type": "gold", "valid_from": "2026-01-01T10:00:00Z",
                     "valid_until": "2026-01-03T10:00:00Z"}
        })
        .to_string();
        let (payload, payload_encoding) = DeadLetter::encode_payload(body.as_bytes());
        let mut h = BTreeMap::new();
        h.insert(headers::MSG_ID.to_owned(), vec![event_id.to_string()]);
        h.insert(headers::TENANT.to_owned(), vec![tenant.clone()]);
        let dl = DeadLetter {
            id: uuid::Uuid::now_v7(),
            worker: "tapkey-worker".into(),
            original_subject: original_subject.clone(),
            original_headers: h,
            payload,
            payload_encoding,
            reason: "retries exhausted: Tapkey 503 Service Unavailable".into(),
            class: ErrorClass::Transient,
            attempts: 5,
            stream_sequence: None,
            stream: bus.stream_name(subjects::BOOKINGS_STREAM),
            trace_id: None,
            event_id: Some(event_id),
            tenant: Some(tenant),
            kind: Some("pass".into()),
            booking_key: Some(key),
            replay_count: 0,
            failed_at: chrono::Utc::now(),
        };
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(&dl)?.into())
            .message_id(dl.id.to_string());
        let ack = bus
            .js
            .send_publish(
                bus.subject(&subjects::dlq("tapkey-worker", &original_subject)),
                msg,
            )
            .await
            .context("publish dead letter")?;
        inflight.push(std::future::IntoFuture::into_future(ack));
        while inflight.len() >= 1000 {
            if let Some(r) = inflight.next().await {
                r.context("dead letter PubAck")?;
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r.context("dead letter PubAck")?;
    }
    let fill = t.elapsed().as_secs_f64();

    // 2. List everything (one ordered-consumer pass) and a filtered page.
    let t = Instant::now();
    let all = dlq.list(&Filter::default(), None).await?;
    let list_all = t.elapsed().as_secs_f64();
    anyhow::ensure!(all.len() as u64 == n, "listed {} of {n}", all.len());
    drop(all);
    let t = Instant::now();
    let page = dlq
        .list(
            &Filter {
                tenant: Some("tenant-7".into()),
                ..Default::default()
            },
            Some(50),
        )
        .await?;
    let list_page = t.elapsed().as_secs_f64();
    anyhow::ensure!(page.len() == 50);

    // 3. Dry run, then the real replay of everything.
    let opts = ReplayOptions {
        replayed_by: "dlq-bench".into(),
        ..ReplayOptions::default()
    };
    let t = Instant::now();
    let dry = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &ReplayOptions {
                dry_run: true,
                ..opts.clone()
            },
            &mut NoProgress,
        )
        .await?;
    let dry_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(dry.dry_run == n);
    let t = Instant::now();
    let report = dlq
        .replay(
            &ReplayTarget::Filter(Filter::default()),
            &opts,
            &mut NoProgress,
        )
        .await?;
    let replay_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.replayed == n && report.failed == 0,
        "replayed {} failed {}",
        report.replayed,
        report.failed
    );
    let landed = bus
        .js
        .get_stream(bus.stream_name(subjects::BOOKINGS_STREAM))
        .await?
        .get_info()
        .await?
        .state
        .messages;
    anyhow::ensure!(landed == n, "BOOKINGS holds {landed} of {n}");

    // 4. Purge everything.
    let t = Instant::now();
    let purged = dlq.purge(&Filter::default()).await?;
    let purge_secs = t.elapsed().as_secs_f64();

    let body = format!(
        "{n} dead letters (~0.6 KB payloads), one isolated namespace on the local nats-server \
         (memory streams, as in tests) and a fresh Postgres database; {} build, `accesshub-dlq`.\n\n\
         | step | time | rate |\n|---|---|---|\n\
         | publish {n} dead letters (PubAck, 1000 in flight) | {fill:.2} s | {} |\n\
         | `dlq list` all (one ordered-consumer pass, parse, sort) | {list_all:.2} s | {} |\n\
         | `dlq list --tenant X --limit 50` (scans the whole DLQ) | {list_page:.2} s | |\n\
         | `dlq replay --all --dry-run` (scan + {n} records) | {dry_secs:.2} s | {} |\n\
         | `dlq replay --all` (fresh Msg-Id, PubAck awaited, 256 in flight, recorded in batches of 500) | {replay_secs:.2} s | {} |\n\
         | `dlq purge --all` (one delete request per entry) | {purge_secs:.2} s | {} |\n\n\
         Every replay landed in BOOKINGS ({landed} messages) and has its `dlq_replays` row. \
         `--rate N/s` caps the replay below these figures when workers or vendors need it.",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        rate(n, fill),
        rate(n, list_all),
        rate(n, dry_secs),
        rate(n, replay_secs),
        rate(purged.deleted, purge_secs),
    );
    accesshub_bench::write_section("DLQ replay", &body)?;
    accesshub_bench::record_figures(
        "dlq",
        &[
            ("entries", n as f64),
            ("replay_per_s", n as f64 / replay_secs.max(1e-9)),
            ("publish_per_s", n as f64 / fill.max(1e-9)),
        ],
    )?;
    tb.cleanup().await;
    db.drop_db().await;
    Ok(())
}
