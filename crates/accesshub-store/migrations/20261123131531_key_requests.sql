-- Outcome of each key request (encode a card, duplicate, mobile key), so a front desk can
-- poll "key ready" / "encoder busy, retrying" by request id. Written by dormakaba-worker;
-- the same outcome is published on results.keyreq.<tenant>.<request_id>.
CREATE TABLE key_requests (
    request_id       UUID PRIMARY KEY,
    tenant           TEXT NOT NULL,
    -- Booking key of the reservation the keys are for.
    reservation_key  TEXT NOT NULL,
    action           TEXT NOT NULL,
    -- in_flight (a vendor call is under way), pending (transient failure, retrying),
    -- encoded, sent, failed.
    status           TEXT NOT NULL
                     CHECK (status IN ('in_flight', 'pending', 'encoded', 'sent', 'failed')),
    message          TEXT,
    attempts         INT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX key_requests_tenant_idx ON key_requests (tenant, updated_at DESC);
