-- Operator console sessions (accesshub-console): an admin token exchanged for a session cookie.
-- Only hashes are stored (of the cookie value and of the token it was opened with), so a
-- leaked table opens nothing; the token's hash lets every request see a revoked or expired
-- token at once. Additive: older binaries do not read it.
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash     TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,
    token_id    UUID NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- NULL: every tenant.
    tenants     TEXT[],
    csrf        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expires_idx ON console_sessions (expires_at);
