//! What the runtime's integration tests share: a Tapkey connection pointing nowhere (the
//! handlers are scripted), a pass event, and publishing onto the test namespace's streams.

#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;

use accesshub_connections::{Connection, TapkeySettings, VendorSettings};
use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus, Source, headers};
use accesshub_testkit::TestBus;
use async_nats::jetstream::message::PublishMessage;

/// `tenant`'s Tapkey connection `default`, serving every site.
pub fn connection(tenant: &str) -> Connection {
    Connection {
        tenant: tenant.into(),
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

/// A day pass of `tenant` at site `hq`, active or removed.
pub fn pass(tenant: &str, key: &str, rev: i64, active: bool) -> Event {
    Event::new(
        tenant,
        "hq",
        key,
        rev,
        Source::Nexudus,
        chrono::Utc::now(),
        EventBody::Pass(Pass {
            status: if active {
                PassStatus::Active
            } else {
                PassStatus::Removed
            },
            holder: PassHolder {
                id: "h1".into(),
                email: "h@example.com".into(),
                name: None,
            },
            pass_type: "day".into(),
            pass_type_name: None,
            valid_from: None,
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
        }),
    )
}

/// Publishes `body` on the namespaced `subject` and waits for the PubAck.
pub async fn publish_raw(tb: &TestBus, subject: &str, body: Vec<u8>, h: async_nats::HeaderMap) {
    let msg = PublishMessage::build().payload(body.into()).headers(h);
    tb.bus
        .js
        .send_publish(tb.bus.subject(subject), msg)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Publishes `ev` on BOOKINGS as booking-ingest does (message id, tenant and kind headers).
pub async fn publish_event(tb: &TestBus, ev: &Event) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::MSG_ID, ev.id.to_string().as_str());
    h.insert(headers::TENANT, ev.tenant.as_str());
    h.insert(headers::KIND, ev.kind().as_str());
    publish_raw(tb, &ev.subject(), serde_json::to_vec(ev).unwrap(), h).await;
}
