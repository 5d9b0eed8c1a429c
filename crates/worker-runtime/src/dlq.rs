//! Building and publishing dead letters. The [`DeadLetter`] envelope is the contract with
//! `accessctl dlq`: every field is filled whenever it is knowable.

use accesshub_bus::{Bus, BusError, header_map};
use accesshub_domain::{DeadLetter, ErrorClass, Event, headers, subjects};
use async_nats::jetstream::{self, message::PublishMessage};

/// What is known about the failed message.
pub(crate) struct Failure<'a> {
    pub(crate) worker: &'a str,
    pub(crate) msg: &'a jetstream::Message,
    pub(crate) original_subject: &'a str,
    pub(crate) event: Option<&'a Event>,
    pub(crate) reason: &'a str,
    pub(crate) class: ErrorClass,
    pub(crate) attempts: u64,
    pub(crate) stream: String,
    pub(crate) stream_sequence: Option<u64>,
    pub(crate) trace_id: Option<String>,
}

pub(crate) fn build(f: &Failure<'_>) -> DeadLetter {
    let (payload, payload_encoding) = DeadLetter::encode_payload(&f.msg.message.payload);
    let hdrs = f.msg.message.headers.as_ref();
    let first = |name: &str| {
        hdrs.and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    // Without a parsed event, fall back to the headers the publisher set.
    let event_id = f.event.map(|e| e.id).or_else(|| {
        first(headers::EVENT_ID)
            .or_else(|| first(headers::MSG_ID))
            .and_then(|s| s.parse().ok())
    });
    DeadLetter {
        id: uuid::Uuid::now_v7(),
        worker: f.worker.to_owned(),
        original_subject: f.original_subject.to_owned(),
        original_headers: header_map(hdrs),
        payload,
        payload_encoding,
        reason: f.reason.to_owned(),
        class: f.class,
        attempts: f.attempts,
        stream_sequence: f.stream_sequence,
        stream: f.stream.clone(),
        trace_id: f.trace_id.clone(),
        event_id,
        tenant: f
            .event
            .map(|e| e.tenant.clone())
            .or_else(|| first(headers::TENANT)),
        kind: f
            .event
            .map(|e| e.kind().as_str().to_owned())
            .or_else(|| first(headers::KIND)),
        booking_key: f.event.map(|e| e.booking_key.clone()),
        replay_count: first(headers::REPLAY_COUNT)
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0),
        failed_at: chrono::Utc::now(),
    }
}

/// Publishes to `dlq.<worker>.<original subject>` (namespaced) and waits for the PubAck, so
/// the original is only terminated once its copy is durable. The `Nats-Msg-Id` is derived
/// from the stream sequence: a redelivered failure does not produce a second entry.
pub(crate) async fn publish(bus: &Bus, dl: &DeadLetter) -> Result<(), BusError> {
    let subject = bus.subject(&subjects::dlq(&dl.worker, &dl.original_subject));
    let body = serde_json::to_vec(dl).map_err(|e| BusError::Publish {
        subject: subject.clone(),
        message: e.to_string(),
    })?;
    let msg_id = match dl.stream_sequence {
        Some(seq) => format!("dlq:{}:{}:{seq}", dl.worker, dl.stream),
        None => dl.id.to_string(),
    };
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::DLQ_WORKER, dl.worker.as_str());
    h.insert(headers::DLQ_CLASS, dl.class.as_str());
    if let Some(tp) = dl
        .original_headers
        .get(headers::TRACEPARENT)
        .and_then(|v| v.first())
    {
        h.insert(headers::TRACEPARENT, tp.as_str());
    }
    accesshub_telemetry::inject_nats(&mut h);
    let msg = PublishMessage::build()
        .payload(body.into())
        .headers(h)
        .message_id(msg_id);
    let err = |e: &dyn std::fmt::Display| BusError::Publish {
        subject: subject.clone(),
        message: e.to_string(),
    };
    bus.js
        .send_publish(subject.clone(), msg)
        .await
        .map_err(|e| err(&e))?
        .await
        .map_err(|e| err(&e))?;
    Ok(())
}
