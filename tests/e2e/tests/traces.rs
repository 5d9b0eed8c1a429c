//! Every hop is traced (issue 10, principle 7): a webhook sent with a W3C `traceparent`, the
//! event it becomes, the worker's processing and its vendor calls share one trace, exported by
//! the real binaries over OTLP/HTTP (JSON) to a real receiver.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use accesshub_e2e::otlp::{OtlpReceiver, ReceivedSpan};
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
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(cloudpass_conn(&s.sim)).await;
    s.start_ingest(&receiver.env("booking-ingest")).await;
    s.start_worker("cloudpass-worker", &receiver.env("cloudpass-worker"))
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
