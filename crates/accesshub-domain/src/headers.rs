//! NATS header names, defined once.

/// JetStream de-duplication id; we set it to the event id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE: &str = "tracestate";
/// Tenant of the event, so consumers can filter without parsing the body.
pub const TENANT: &str = "Accesshub-Tenant";
/// Event kind (`reservation`, `facility`, `pass`, `keyreq`).
pub const KIND: &str = "Accesshub-Kind";
/// Revision of the booking's desired state carried by the event.
pub const REVISION: &str = "Accesshub-Revision";
/// Schema version of the payload.
pub const SCHEMA_VERSION: &str = "Accesshub-Schema-Version";
/// Set on a replayed message: the id of the DLQ entry it came from.
pub const REPLAY_OF: &str = "Accesshub-Replay-Of";
/// Set on a replayed message: how many times this event has been replayed.
pub const REPLAY_COUNT: &str = "Accesshub-Replay-Count";
/// Set on a replayed message: who replayed it.
pub const REPLAYED_BY: &str = "Accesshub-Replayed-By";
/// The original event id, kept across replays (which need a fresh `Nats-Msg-Id`).
pub const EVENT_ID: &str = "Accesshub-Event-Id";
/// On DLQ messages: the worker that gave up.
pub const DLQ_WORKER: &str = "Accesshub-Dlq-Worker";
/// On DLQ messages: transient or permanent.
pub const DLQ_CLASS: &str = "Accesshub-Dlq-Class";
