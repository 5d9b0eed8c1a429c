-- Core tables: tenants and their upstream sources, desired booking state, the outbox,
-- ingest receipts (idempotency), and the per-vendor bindings workers keep.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per (tenant, upstream source) with its webhook signing secrets. Two secrets may be
-- valid at once (rotation). Secrets are encrypted with the key from ACCESSHUB_ENCRYPTION_KEY.
CREATE TABLE tenant_sources (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    source           TEXT NOT NULL,
    secret_enc       TEXT NOT NULL,
    previous_enc     TEXT,
    previous_expires TIMESTAMPTZ,
    site_defaults    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source)
);

-- Desired state of every booking, at its latest revision.
CREATE TABLE bookings (
    tenant_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    booking_key  TEXT NOT NULL,
    site         TEXT NOT NULL,
    revision     BIGINT NOT NULL,
    source       TEXT NOT NULL,
    event_id     UUID NOT NULL,
    payload      JSONB NOT NULL,
    -- When access for the booking starts and ends (for "upcoming"/"active" sync scopes).
    starts_at    TIMESTAMPTZ,
    ends_at      TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, booking_key)
);
CREATE INDEX bookings_starts_idx ON bookings (tenant_id, kind, starts_at);

-- Transactional outbox: written with the booking in one transaction, published by the relay.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    event_id      UUID NOT NULL UNIQUE,
    subject       TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    traceparent   TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INT NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Idempotency: the same upstream delivery gets the same answer (zero2prod's idempotency table).
CREATE TABLE ingest_receipts (
    tenant_id     TEXT NOT NULL,
    source        TEXT NOT NULL,
    delivery_key  TEXT NOT NULL,
    event_id      UUID NOT NULL,
    status_code   SMALLINT NOT NULL,
    response      JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source, delivery_key)
);

-- What a worker has applied at its vendor for one booking.
CREATE TABLE bindings (
    tenant_id         TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    booking_key       TEXT NOT NULL,
    applied_revision  BIGINT NOT NULL,
    applied_event_id  UUID,
    vendor_ids        JSONB NOT NULL DEFAULT '{}'::jsonb,
    status            TEXT NOT NULL,
    last_error        TEXT,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, kind, booking_key)
);
