-- Admin tokens with roles, tenant scope and expiry, and a durable audit log of every change
-- made through the admin API (issue 23 item 2; security review M2, L4).
--
-- Expand only, so a rollback keeps working: an older build ignores the new columns and reads
-- `scopes`. The new build keeps writing `scopes` in the old vocabulary for tokens valid for
-- every tenant (viewer/operator -> {read}, admin -> {admin}) and writes `{}` for
-- tenant-scoped tokens, which an older build refuses (403) rather than reading as "every
-- tenant". An older build does not know `expires_at`: after a rollback, expiry is not enforced
-- (revocation still is).

-- viewer | operator | admin. NULL: a row written by an older build; its role follows `scopes`
-- ('admin' in scopes -> admin, else viewer), exactly what that build granted.
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS role TEXT
    CHECK (role IN ('viewer', 'operator', 'admin'));
UPDATE api_tokens
   SET role = CASE WHEN 'admin' = ANY (scopes) THEN 'admin' ELSE 'viewer' END
 WHERE role IS NULL;

-- Tenants the token may see and act on. NULL: every tenant (what every older token meant).
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS tenants TEXT[];

-- After this instant the token is refused. NULL: never expires (older tokens, and the
-- revocation marker of a bootstrap token).
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;

-- Who minted it (token id and name at the time), for the audit trail of delegation.
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS created_by_id UUID;
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS created_by_name TEXT;

-- One row per change made through the admin API (and DLQ replays/purges by accessctl).
-- No foreign keys: the trail outlives the tenants, tokens and connections it talks about.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The token that made the change (NULL: not made through a token, e.g. accessctl's
    -- direct DLQ access, whose actor is the operating-system user).
    token_id    UUID,
    actor       TEXT NOT NULL,
    -- Dotted verb: tenant.create, connection.apply, token.revoke, sync.request, dlq.purge, ...
    action      TEXT NOT NULL,
    -- NULL for changes that belong to no single tenant (e.g. a token for several tenants).
    tenant_id   TEXT,
    -- What was changed, e.g. "acme/tapkey/default" or a token id.
    target      TEXT NOT NULL,
    -- State before and after, secrets masked as "***". NULL where there is none.
    before      JSONB,
    after       JSONB
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_log_tenant_at_idx ON audit_log (tenant_id, at DESC, id DESC);
