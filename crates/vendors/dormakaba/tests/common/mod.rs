//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use accesshub_connections::{DormakabaProduct, DormakabaSettings, Secret};
use vendor_sim::SimHandle;

/// Port of a simulator URL (`http://127.0.0.1:PORT/...`).
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|s| s.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap()
}

/// A connection to the simulator's demo lock system of `product` (no encoders listed).
pub fn sim_settings(sim: &SimHandle, product: DormakabaProduct) -> DormakabaSettings {
    DormakabaSettings {
        product,
        host: "127.0.0.1".into(),
        port: port_of(&sim.dormakaba_url()),
        scheme: "http".into(),
        path: None,
        namespace: None,
        username: "pms-demo".into(),
        password: Secret::new("pms-demo-secret"),
        site_name: match product {
            DormakabaProduct::Saflok => "DEMO-HOTEL".into(),
            DormakabaProduct::Ambiance => "DEMO-AMBIANCE".into(),
        },
        pms_terminal_id: "accesshub".into(),
        encoders: vec![],
        rooms: Default::default(),
        common_areas: Default::default(),
        mobile_keys: true,
        key_size: 0,
        edge_site: None,
    }
}

/// A stay of `nights` from today for guest `name` (phone +31612345678), rooms R-101 and 102,
/// gym and entrance.
pub fn reservation(
    status: accesshub_domain::ReservationStatus,
    name: &str,
    nights: u64,
) -> accesshub_domain::Reservation {
    use chrono::{Days, NaiveTime, Utc};
    let today = Utc::now().date_naive();
    accesshub_domain::Reservation {
        status,
        guest: accesshub_domain::Guest {
            name: name.into(),
            email: None,
            mobile_phone: Some("+31612345678".into()),
        },
        arrival: today,
        departure: today.checked_add_days(Days::new(nights)).unwrap(),
        check_in_time: NaiveTime::from_hms_opt(0, 0, 0).unwrap(),
        check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
        timezone: "Europe/Amsterdam".into(),
        rooms: vec!["R-101".into(), "102".into()],
        common_areas: vec!["gym".into(), "entrance".into()],
        license_plates: vec![],
        mobile_key: false,
    }
}

/// Stores a reservation event's desired state as booking-ingest would.
pub async fn store_booking(pool: &sqlx::PgPool, ev: &accesshub_domain::Event) {
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload) \
         VALUES ($1, 'reservation', $2, $3, $4, 'native', $5, $6) \
         ON CONFLICT (tenant_id, kind, booking_key) DO UPDATE SET revision = EXCLUDED.revision, \
         payload = EXCLUDED.payload, event_id = EXCLUDED.event_id",
    )
    .bind(&ev.tenant)
    .bind(&ev.booking_key)
    .bind(&ev.site)
    .bind(ev.revision)
    .bind(ev.id)
    .bind(serde_json::to_value(ev).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

/// Messages in the DLQ stream.
pub async fn dlq_depth(bus: &accesshub_bus::Bus) -> u64 {
    let mut s = bus
        .js
        .get_stream(bus.stream_name(accesshub_domain::subjects::DLQ_STREAM))
        .await
        .unwrap();
    s.info().await.unwrap().state.messages
}

/// Publishes an event on the namespaced BOOKINGS stream (Nats-Msg-Id = event id), as the
/// outbox relay does, and waits for the PubAck.
pub async fn publish(bus: &accesshub_bus::Bus, ev: &accesshub_domain::Event) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        accesshub_domain::headers::MSG_ID,
        ev.id.to_string().as_str(),
    );
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(ev).unwrap().into())
        .headers(h);
    bus.js
        .send_publish(bus.subject(&ev.subject()), msg)
        .await
        .unwrap()
        .await
        .unwrap();
}
