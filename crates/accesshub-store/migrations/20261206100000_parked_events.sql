-- Events of a connection whose vendor is down (the worker's circuit breaker is open): parked
-- here and acknowledged instead of burning deliveries towards the DLQ, and published again on
-- the worker's repair feed (sync.<vendor>.>) when the breaker closes, oldest first. One row per
-- booking (and per stray object for reconciler removals): the latest revision wins, an ending
-- wins a tie. Additive: nothing older reads it.
CREATE TABLE IF NOT EXISTS parked_events (
    vendor      TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    park_key    TEXT NOT NULL,
    connection  TEXT NOT NULL,
    booking_key TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    ends_access BOOLEAN NOT NULL,
    action      TEXT NOT NULL,
    force       BOOLEAN NOT NULL,
    payload     BYTEA NOT NULL,
    reason      TEXT NOT NULL,
    parked_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (vendor, tenant_id, park_key)
);
CREATE INDEX IF NOT EXISTS parked_events_by_connection
    ON parked_events (vendor, tenant_id, connection, parked_at);
