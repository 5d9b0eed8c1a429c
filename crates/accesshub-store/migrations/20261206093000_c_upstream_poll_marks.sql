-- Incremental upstream polls (issue 21): how far each connection's poll has read, so that a
-- restarted reconciler goes on from there instead of re-listing everything (or, with a
-- fresh in-memory mark, missing what changed while it was down). Additive only.
CREATE TABLE upstream_poll_marks (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The connection (vendor, name) whose poll this is; not a foreign key: a deleted
    -- connection's mark is harmless and goes with its tenant.
    vendor      TEXT NOT NULL,
    connection  TEXT NOT NULL,
    -- The upstream polled (`nexudus`).
    source      TEXT NOT NULL,
    -- The start of the last poll that read everything it listed: the next one asks for
    -- changes since then (minus an overlap).
    polled_at   TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, connection, source)
);
