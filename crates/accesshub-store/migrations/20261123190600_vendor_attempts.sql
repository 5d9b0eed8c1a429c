-- Worker runtime: bookings for which a worker may have started a vendor call. Written (and
-- committed) under the booking's lock before the first vendor call of a booking that has no
-- binding yet, for handlers that opt in (tapkey-worker). A booking with neither a binding nor
-- a row here has never reached the vendor, so its first attempt may skip the lookups that only
-- exist to find what an earlier, crashed attempt created (Tapkey: the grants list).
-- Rows are never needed again once the booking has a binding; they are kept (one small row
-- per booking, like bindings) because deleting them would cost a write per event.
CREATE TABLE IF NOT EXISTS vendor_attempts (
    tenant_id    TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    booking_key  TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, kind, booking_key)
);
