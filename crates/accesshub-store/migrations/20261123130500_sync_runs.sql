-- Reconciler: every sync run with its counts, and per-connection schedules.

-- One row per sync run (queued by a schedule, `accessctl sync run` or the admin API; claimed
-- and executed by a reconciler replica). Counts are updated while the run progresses.
CREATE TABLE sync_runs (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    vendor           TEXT NOT NULL,
    connection_name  TEXT NOT NULL DEFAULT 'default',
    scope            TEXT NOT NULL CHECK (scope IN ('upcoming', 'active', 'full')),
    -- Only for scope `upcoming`: arrivals within this many days.
    scope_days       INT,
    trigger          TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'api')),
    requested_by     TEXT,
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'partial')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    -- Lease: the replica running it refreshes this; a stale running row is taken over.
    heartbeat_at     TIMESTAMPTZ,
    runner           TEXT,
    attempts         INT NOT NULL DEFAULT 0,
    checked          BIGINT NOT NULL DEFAULT 0,
    in_sync          BIGINT NOT NULL DEFAULT 0,
    created          BIGINT NOT NULL DEFAULT 0,
    updated          BIGINT NOT NULL DEFAULT 0,
    removed          BIGINT NOT NULL DEFAULT 0,
    failed           BIGINT NOT NULL DEFAULT 0,
    error            TEXT
);
-- At most one queued-or-running run per connection: a second request gets the first's id.
CREATE UNIQUE INDEX sync_runs_one_active_idx
    ON sync_runs (tenant_id, vendor, connection_name)
    WHERE status IN ('queued', 'running');
CREATE INDEX sync_runs_queued_idx ON sync_runs (id) WHERE status = 'queued';
CREATE INDEX sync_runs_conn_idx ON sync_runs (tenant_id, vendor, connection_name, id DESC);

-- When each connection is synced automatically (cron in the connection's timezone).
CREATE TABLE sync_schedules (
    tenant_id        TEXT NOT NULL,
    vendor           TEXT NOT NULL,
    connection_name  TEXT NOT NULL DEFAULT 'default',
    -- Cron expression (5 fields `min hour dom mon dow`, or 6 with seconds first).
    cron             TEXT NOT NULL,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    scope            TEXT NOT NULL DEFAULT 'full' CHECK (scope IN ('upcoming', 'active', 'full')),
    scope_days       INT,
    enabled          BOOLEAN NOT NULL DEFAULT true,
    next_run_at      TIMESTAMPTZ NOT NULL,
    last_run_id      BIGINT,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, connection_name)
);
CREATE INDEX sync_schedules_due_idx ON sync_schedules (next_run_at) WHERE enabled;
