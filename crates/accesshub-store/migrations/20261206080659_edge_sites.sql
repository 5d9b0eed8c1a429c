-- Hotels' edge sites (docs/deploy.md "On-premises lock servers"): whether each site's edge
-- relay answers, as the dormakaba worker last saw it (`accessctl status`). Additive: nothing
-- older reads it.
CREATE TABLE IF NOT EXISTS edge_sites (
    tenant_id   TEXT NOT NULL,
    site        TEXT NOT NULL,
    vendor      TEXT NOT NULL DEFAULT 'dormakaba',
    online      BOOLEAN NOT NULL,
    since       TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, site)
);
