//! Every hop is traced (issue 10, principle 7): a webhook sent with a W3C `traceparent`, the
//! event it becomes, the worker's processing and its vendor calls share one trace, exported by
//! the real binaries to a receiver built on the official OTLP protobuf definitions: over
//! OTLP/HTTP with the spec's default encoding (protobuf, `OTEL_EXPORTER_OTLP_PROTOCOL` unset)
//! and over OTLP/gRPC (issue 24). The services' JSON log lines inside the trace's spans carry
//! its trace id and their span ids.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use accesshub_e2e::otlp::{OtlpReceiver, ReceivedSpan, Transport};
use common::{Options, Stack, at, bex, cloudpass_bookings, cloudpass_conn};

fn describe(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {} {} trace={} span={} parent={}",
                s.service, s.name, s.trace_id, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_event_worker_and_vendor_call_share_one_trace() {
    one_trace(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_over_otlp_grpc() {
    one_trace(Some(Transport::Grpc)).await;
}

/// Exporter settings (`None`: the spec's default transport) plus JSON logs, with the worker's
/// per-message debug line (inside its message span).
fn service_env(
    receiver: &OtlpReceiver,
    service: &str,
    transport: Option<Transport>,
) -> Vec<(String, String)> {
    let mut env = match transport {
        Some(t) => receiver.env_for(service, t),
        None => receiver.env(service),
    };
    env.push(("ACCESSHUB_LOG_FORMAT".into(), "json".into()));
    env.push((
        "RUST_LOG".into(),
        "info,worker_runtime=debug,sqlx=warn,async_nats=warn,hyper=warn".into(),
    ));
    env
}

async fn one_trace(transport: Option<Transport>) {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(cloudpass_conn(&s.sim)).await;
    s.start_ingest(&service_env(&receiver, "booking-ingest", transport))
        .await;
    s.start_worker(
        "cloudpass-worker",
        &service_env(&receiver, "cloudpass-worker", transport),
    )
    .await;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let (status, answer) = s
        .webhook_with(
            "bex",
            &bex("BEX-TRACE-1", "reservation:created", &at(0), &["TR-4CE-1"]),
            &[("traceparent", traceparent.clone())],
        )
        .await;
    assert_eq!(status, 202, "{answer}\n{}", s.logs());
    s.wait_until("the CloudPass booking", Duration::from_secs(30), || async {
        cloudpass_bookings(&s.sim, "ah:acme:reservation:BEX-TRACE-1:")
            .await
            .len()
            == 1
    })
    .await;

    // Wait for the batch exporters (200 ms schedule delay); then stop the services with
    // SIGTERM so whatever is still buffered is flushed, and wait a little more.
    let in_trace = |r: &OtlpReceiver| -> Vec<ReceivedSpan> {
        r.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    };
    // Complete = every hop has arrived: the exporters flush independently, so the worker's
    // message span (closed after its vendor calls) may arrive after them.
    let complete = |spans: &[ReceivedSpan]| {
        let ingest_ids: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.service == "booking-ingest")
            .map(|s| s.span_id.as_str())
            .collect();
        !ingest_ids.is_empty()
            && spans.iter().any(|s| {
                s.service == "cloudpass-worker" && ingest_ids.contains(s.parent_span_id.as_str())
            })
            && spans.iter().any(|s| s.name == "vendor.request")
    };
    let arrived = accesshub_e2e::eventually(Duration::from_secs(15), || async {
        complete(&in_trace(&receiver)).then_some(())
    })
    .await;
    let logs = s.logs();
    if arrived.is_none() {
        for (_, w) in &mut s.workers {
            w.proc.terminate(Duration::from_secs(10));
        }
        if let Some(i) = &mut s.ingest {
            i.proc.terminate(Duration::from_secs(10));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let spans = in_trace(&receiver);
    let all = receiver.spans();
    assert!(
        complete(&spans),
        "trace {trace_id} (from the webhook's traceparent) must hold a booking-ingest span, a \
         cloudpass-worker span and a vendor.request span\n\
         spans in the trace:\n{}\n\
         every span received ({}):\n{}\n{logs}",
        describe(&spans),
        all.len(),
        describe(&all),
    );
    // The chain is connected: the ingest span is a child of the upstream's span, and the
    // vendor call's parent is a span of the same trace.
    assert!(
        spans
            .iter()
            .any(|s| s.service == "booking-ingest" && s.parent_span_id == parent),
        "an ingest span whose parent is the upstream's span {parent}\n{}",
        describe(&spans)
    );
    eprintln!("trace {trace_id}:\n{}", describe(&spans));
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let ingest_ids: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.service == "booking-ingest")
        .map(|s| s.span_id.as_str())
        .collect();
    assert!(
        spans
            .iter()
            .any(|s| s.service == "cloudpass-worker"
                && ingest_ids.contains(s.parent_span_id.as_str())),
        "a worker span is a child of an ingest span (context carried through the outbox and NATS)\n{}",
        describe(&spans)
    );
    let expected = transport.unwrap_or(Transport::HttpProtobuf);
    assert!(
        spans.iter().all(|s| s.transport == expected),
        "every span over {expected:?}\n{spans:?}"
    );
    // JSON log lines inside the trace's spans name it (the worker's "applied" line is inside
    // its message span), with the span id of a span of the trace.
    let traced: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.get(l.find('{')?..)?).ok())
        .filter(|v| v["trace_id"] == trace_id.as_str())
        .collect();
    assert!(
        !traced.is_empty(),
        "no JSON log line with trace_id {trace_id}\n{logs}"
    );
    for line in &traced {
        let span_id = line["span_id"].as_str().unwrap_or_default();
        assert!(
            span_id.len() == 16 && ids.contains(span_id),
            "log line's span_id {span_id} is a span of the trace: {line}\n{}",
            describe(&spans)
        );
    }
    for v in spans.iter().filter(|s| s.name == "vendor.request") {
        assert!(
            ids.contains(v.parent_span_id.as_str()),
            "vendor.request's parent {} is in the trace\n{}",
            v.parent_span_id,
            describe(&spans)
        );
    }
    s.finish().await;
}
