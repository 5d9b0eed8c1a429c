-- Upstream pulls (issue 21): API credentials per tenant and source, and what a sync run's pull
-- phase found. Additive only.

-- How accesshub reads a tenant's booking system (BEX API key, Nexudus user/password, Clock
-- API user): the base URL in clear, the credentials sealed with the same key box as vendor
-- secrets (associated data `upstream_credentials`, tenant, source).
CREATE TABLE upstream_credentials (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    source           TEXT NOT NULL,
    base_url         TEXT NOT NULL,
    credentials_enc  TEXT NOT NULL,
    -- Free-form per-source options (BEX: arrival look-back days, page size).
    options          JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source)
);

-- Counts of a run's pull phase; NULL when the run did not pull (no upstream credentials).
ALTER TABLE sync_runs
    ADD COLUMN pull_fetched  BIGINT,
    ADD COLUMN pull_new      BIGINT,
    ADD COLUMN pull_changed  BIGINT,
    ADD COLUMN pull_vanished BIGINT;
