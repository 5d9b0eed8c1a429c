//! Raw baselines on this machine, measured in the same run as accesshub's own figures so
//! ratios mean something: JetStream publish and consume, publish→receive latency, and
//! PostgreSQL commit rates.

use std::time::{Duration, Instant};

use accesshub_bench::{ms, percentile, write_section};
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt as _;

const PAYLOAD_BYTES: usize = 300;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BASELINE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&nats_url)
        .await
        .context("connect NATS")?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(2048)
        .build(client.clone());
    let ns = format!("bench{}", std::process::id());
    let stream_name = format!("{}_BASE", ns.to_uppercase());
    let subject = format!("{ns}.base");
    let _ = js.delete_stream(&stream_name).await;
    let st = js
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{ns}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("create stream")?;
    let payload = bytes::Bytes::from(format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(PAYLOAD_BYTES - 10)
    ));

    // Async publish with up to 2,048 acks in flight.
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        acks.push(std::future::IntoFuture::into_future(
            js.publish(subject.clone(), payload.clone()).await?,
        ));
        while acks.len() >= 2048 {
            if let Some(r) = acks.next().await {
                r?;
            }
        }
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    let publish_rate = n as f64 / start.elapsed().as_secs_f64();

    // Pull consume + ack.
    let consumer = st
        .create_consumer(pull::Config {
            durable_name: Some("base".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let start = Instant::now();
    let mut msgs = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await?;
    let mut got = 0;
    while got < n {
        match msgs.next().await {
            Some(Ok(m)) => {
                let _ = m.ack().await;
                got += 1;
            }
            Some(Err(_)) => continue,
            None => break,
        }
    }
    let consume_rate = got as f64 / start.elapsed().as_secs_f64();
    drop(msgs);

    // Publish → receive latency at 2,000 msg/s.
    let lat_subject = format!("{ns}.lat");
    let lat_consumer = st
        .create_consumer(pull::Config {
            durable_name: Some("lat".into()),
            filter_subject: lat_subject.clone(),
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut lat_msgs = lat_consumer.stream().messages().await?;
    let samples = 10_000usize;
    let recv = tokio::spawn(async move {
        let mut lats = Vec::with_capacity(samples);
        while lats.len() < samples {
            match tokio::time::timeout(Duration::from_secs(10), lat_msgs.next()).await {
                Ok(Some(Ok(m))) => {
                    if let Ok(sent) = std::str::from_utf8(&m.payload)
                        .unwrap_or("0")
                        .parse::<u128>()
                    {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0);
                        lats.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                    }
                }
                Ok(Some(Err(_))) => continue,
                _ => break,
            }
        }
        lats
    });
    let mut tick = tokio::time::interval(Duration::from_micros(500));
    for _ in 0..samples {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let _ack = js
            .publish(lat_subject.clone(), now.to_string().into())
            .await?;
    }
    let mut lats = recv.await?;
    lats.sort();
    let _ = js.delete_stream(&stream_name).await;

    // PostgreSQL: single-row commits and UNNEST batches, on a fresh database.
    let db = accesshub_testkit::TestDb::new().await;
    sqlx::query("CREATE TABLE bench (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&db.pool)
        .await?;
    let rows = 5_000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..rows / 8 {
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO bench (v) VALUES ($1)")
                    .bind(format!("{w}-{i}"))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let commit_rate = rows as f64 / start.elapsed().as_secs_f64();
    let batch = 10_000;
    let batches = 10;
    let start = Instant::now();
    for b in 0..batches {
        let vals: Vec<String> = (0..batch).map(|i| format!("{b}-{i}")).collect();
        sqlx::query("INSERT INTO bench (v) SELECT * FROM UNNEST($1::text[])")
            .bind(&vals)
            .execute(&db.pool)
            .await?;
    }
    let unnest_rate = (batch * batches) as f64 / start.elapsed().as_secs_f64();
    db.drop_db().await;

    let body = format!(
        "| baseline | figure |\n|---|---|\n\
         | JetStream async publish ({PAYLOAD_BYTES}-byte JSON, 2,048 acks in flight, file storage) | {publish_rate:.0} msg/s |\n\
         | JetStream pull consume + ack | {consume_rate:.0} msg/s |\n\
         | publish → receive latency at 2,000 msg/s | p50 {} · p99 {} |\n\
         | PostgreSQL single-row INSERT + COMMIT (8 connections) | {commit_rate:.0} commits/s |\n\
         | PostgreSQL UNNEST batches of 10,000 rows | {unnest_rate:.0} rows/s |\n",
        ms(percentile(&lats, 50.0)),
        ms(percentile(&lats, 99.0)),
    );
    write_section("Baselines (raw NATS and PostgreSQL)", &body)?;
    accesshub_bench::record_figures(
        "baselines",
        &[
            ("js_publish_per_s", publish_rate),
            ("js_consume_per_s", consume_rate),
            (
                "js_latency_p50_ms",
                accesshub_bench::millis(percentile(&lats, 50.0)),
            ),
            (
                "js_latency_p99_ms",
                accesshub_bench::millis(percentile(&lats, 99.0)),
            ),
            ("pg_commits_per_s", commit_rate),
            ("pg_unnest_rows_per_s", unnest_rate),
        ],
    )?;
    Ok(())
}
