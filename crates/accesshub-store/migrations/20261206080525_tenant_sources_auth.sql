-- How a source's webhooks authenticate (issue 21): `signature` (ours, HMAC with a timestamp;
-- BEX and Nexudus senders use their own signatures with the same secret), or `token` (the
-- secret itself in `X-Accesshub-Token` or `?token=`), for senders that cannot sign — Clock
-- PMS+, whose notification signing is not public. Additive: older binaries ignore it.
ALTER TABLE tenant_sources
    ADD COLUMN auth TEXT NOT NULL DEFAULT 'signature' CHECK (auth IN ('signature', 'token'));
