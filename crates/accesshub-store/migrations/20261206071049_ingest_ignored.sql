-- Events booking-ingest deliberately ignored (install per administration: a site no enabled
-- connection is activated for, a disabled connection, an unmapped administration, facility or
-- pass type — "access control off there"). One row per booking, the latest reason and a count,
-- so the table stays as small as the set of ignored bookings; the metric
-- accesshub_ingest_ignored_total{source,reason} counts deliveries.
-- Expand only: new table, nothing older builds read is touched.
CREATE TABLE IF NOT EXISTS ingest_ignored (
    tenant_id    TEXT NOT NULL,
    source       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    booking_key  TEXT NOT NULL,
    site         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    deliveries   BIGINT NOT NULL DEFAULT 1,
    first_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source, kind, booking_key)
);
CREATE INDEX IF NOT EXISTS ingest_ignored_last_idx ON ingest_ignored (tenant_id, last_at);

-- Install per administration: the upstream organization a tenant's source belongs to (BEX
-- organization id, Nexudus account, Clock subscription). The Sync pull lists the
-- organization's administrations with it; NULL until the operator sets it.
ALTER TABLE tenant_sources ADD COLUMN IF NOT EXISTS organization_id TEXT;
