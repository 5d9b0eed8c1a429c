//! Durable parking of a connection's messages while its circuit breaker is open
//! ([`breaker`](crate::breaker)): the message is written to `parked_events` and acknowledged,
//! so no delivery is burned and nothing goes to the DLQ for a transient reason. When the
//! breaker half-opens, the oldest parked message is published again as the probe; when it
//! closes, all of them, oldest first, on the worker's own repair feed (`sync.<vendor>.>`), so
//! they take the normal path: keyed dispatch, booking locks, the revision rule, the record.
//!
//! One row per booking (per stray object for reconciler removals): a newer revision replaces
//! the parked one, an ending wins a tie — the same rule as the worker's revision check.
//! Publishing and deleting are not atomic: a crash between them publishes a row twice, and
//! the revision check skips the second copy (at-least-once, exactly-once effect).

use accesshub_bus::Bus;
use accesshub_domain::{
    headers, subjects,
    sync::{self, SyncAction},
};
use async_nats::jetstream;
use sqlx::PgPool;

/// Header on a parked message published again as a half-open breaker's probe: the one message
/// of the connection allowed to call the vendor while the breaker is half-open.
pub(crate) const HEADER_PROBE: &str = "Accesshub-Breaker-Probe";

/// Failures of parking or republishing (the caller retries; nothing is acknowledged unparked).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParkError {
    /// Postgres.
    #[error("database (parked events): {0}")]
    Db(#[from] sqlx::Error),
    /// NATS refused or did not confirm the publish.
    #[error("publish (parked events): {0}")]
    Publish(String),
}

impl accesshub_domain::Classify for ParkError {
    fn class(&self) -> accesshub_domain::ErrorClass {
        match self {
            ParkError::Db(e) => accesshub_store::db_error_class(e),
            ParkError::Publish(_) => accesshub_domain::ErrorClass::Transient,
        }
    }
}

/// One message to park.
pub(crate) struct Parked<'a> {
    pub vendor: &'a str,
    pub tenant: &'a str,
    pub connection: &'a str,
    /// Unique per booking and action (`<kind>/<key>`, or `remove/<kind>/<key>/<vendor id>`).
    pub park_key: String,
    pub booking_key: &'a str,
    pub revision: i64,
    pub ends_access: bool,
    pub action: SyncAction,
    pub force: bool,
    pub payload: &'a [u8],
    pub reason: &'a str,
}

/// Parks `p` (or keeps the parked row when it is newer, or an ending at the same revision).
pub(crate) async fn park(pool: &PgPool, p: &Parked<'_>) -> Result<(), ParkError> {
    sqlx::query(
        "INSERT INTO parked_events (vendor, tenant_id, park_key, connection, booking_key, \
           revision, ends_access, action, force, payload, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (vendor, tenant_id, park_key) DO UPDATE SET \
           connection = EXCLUDED.connection, revision = EXCLUDED.revision, \
           ends_access = EXCLUDED.ends_access, action = EXCLUDED.action, \
           force = EXCLUDED.force OR (parked_events.force AND parked_events.revision = EXCLUDED.revision), \
           payload = EXCLUDED.payload, reason = EXCLUDED.reason, parked_at = clock_timestamp() \
         WHERE EXCLUDED.revision > parked_events.revision \
            OR (EXCLUDED.revision = parked_events.revision \
                AND (EXCLUDED.ends_access OR NOT parked_events.ends_access))",
    )
    .bind(p.vendor)
    .bind(p.tenant)
    .bind(&p.park_key)
    .bind(p.connection)
    .bind(p.booking_key)
    .bind(p.revision)
    .bind(p.ends_access)
    .bind(p.action.as_str())
    .bind(p.force)
    .bind(p.payload)
    .bind(p.reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Connections of `vendor` with parked messages: (tenant, connection, count).
pub(crate) async fn parked_connections(
    pool: &PgPool,
    vendor: &str,
) -> Result<Vec<(String, String, i64)>, ParkError> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, connection, count(*) FROM parked_events WHERE vendor = $1 \
         GROUP BY tenant_id, connection ORDER BY tenant_id, connection",
    )
    .bind(vendor)
    .fetch_all(pool)
    .await?)
}

type Row = (
    String,
    String,
    i64,
    String,
    bool,
    Vec<u8>,
    chrono::DateTime<chrono::Utc>,
);

/// Publishes up to `limit` parked messages of one connection again, oldest first, on
/// `sync.<vendor>.<tenant>.<key>` (marked as the probe when `probe`), and deletes each row
/// unless a newer message replaced it meanwhile. Returns how many were published.
pub(crate) async fn republish(
    pool: &PgPool,
    bus: &Bus,
    vendor: &str,
    tenant: &str,
    connection: &str,
    limit: i64,
    probe: bool,
) -> Result<usize, ParkError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT park_key, booking_key, revision, action, force, payload, parked_at \
           FROM parked_events WHERE vendor = $1 AND tenant_id = $2 AND connection = $3 \
          ORDER BY parked_at, park_key LIMIT $4",
    )
    .bind(vendor)
    .bind(tenant)
    .bind(connection)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let stamp = chrono::Utc::now().timestamp_micros();
    let mut acks = Vec::with_capacity(rows.len());
    for (park_key, booking_key, revision, action, force, payload, _) in &rows {
        let mut h = async_nats::HeaderMap::new();
        h.insert(sync::HEADER_RUN, "0");
        h.insert(sync::HEADER_ACTION, action.as_str());
        if *force {
            h.insert(sync::HEADER_FORCE, "true");
        }
        h.insert(
            sync::HEADER_REASON,
            if probe {
                "breaker probe"
            } else {
                "breaker closed"
            },
        );
        if probe {
            h.insert(HEADER_PROBE, "true");
        }
        h.insert(headers::TENANT, tenant);
        h.insert(headers::REVISION, revision.to_string().as_str());
        accesshub_telemetry::propagation::inject_nats(&mut h);
        let msg = jetstream::message::PublishMessage::build()
            .payload(payload.clone().into())
            .headers(h)
            .message_id(format!(
                "parked-{}-{}-{}-{revision}-{stamp}",
                subjects::token(vendor),
                subjects::token(tenant),
                subjects::token(park_key),
            ));
        let subject = bus.subject(&subjects::sync(vendor, tenant, booking_key));
        let ack = bus
            .js
            .send_publish(subject, msg)
            .await
            .map_err(|e| ParkError::Publish(e.to_string()))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| ParkError::Publish(e.to_string()))?;
    }
    for (park_key, _, revision, _, _, _, parked_at) in &rows {
        sqlx::query(
            "DELETE FROM parked_events WHERE vendor = $1 AND tenant_id = $2 AND park_key = $3 \
               AND revision = $4 AND parked_at = $5",
        )
        .bind(vendor)
        .bind(tenant)
        .bind(park_key)
        .bind(revision)
        .bind(parked_at)
        .execute(pool)
        .await?;
    }
    Ok(rows.len())
}
