-- Vendor connections (tenant × vendor × name) and the admin API's bearer tokens.

-- One tenant's link to one vendor. `settings` is the vendor settings with every secret
-- replaced by "***" (safe to list and diff); `settings_enc` is the full settings JSON sealed
-- with the key from ACCESSHUB_ENCRYPTION_KEY (SecretBox), the only place secrets live.
CREATE TABLE connections (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vendor        TEXT NOT NULL CHECK (vendor IN ('cloudpass', 'dormakaba', 'ipassan', 'tapkey')),
    name          TEXT NOT NULL DEFAULT 'default',
    enabled       BOOLEAN NOT NULL DEFAULT true,
    -- Upstream sites served; empty means every site of the tenant.
    sites         TEXT[] NOT NULL DEFAULT '{}',
    settings      JSONB NOT NULL,
    settings_enc  TEXT NOT NULL,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, name)
);
CREATE INDEX connections_vendor_idx ON connections (vendor, tenant_id);

-- Bearer tokens of the admin API. Only the SHA-256 of a token is stored.
CREATE TABLE api_tokens (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    scopes        TEXT[] NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
