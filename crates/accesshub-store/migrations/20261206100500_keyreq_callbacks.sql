-- Key-request outcomes delivered by callback (issue 26): the URL the caller gave with the
-- request, and the delivery's progress. booking-ingest POSTs the outcome, signed with the
-- source's webhook secret, once the dormakaba worker has recorded a final one; retried with
-- backoff a bounded number of times. Several replicas share the work (FOR UPDATE SKIP
-- LOCKED, a lease in next_attempt_at).
CREATE TABLE keyreq_callbacks (
    tenant_id        TEXT NOT NULL,
    request_id       UUID NOT NULL,
    source           TEXT NOT NULL,
    url              TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    gave_up_at       TIMESTAMPTZ,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);

-- The deliverer's scan: only callbacks still to deliver.
CREATE INDEX keyreq_callbacks_due ON keyreq_callbacks (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
