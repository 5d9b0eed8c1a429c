-- Issues 20/21: an event ignored because access control was off (a disabled connection, an
-- unmapped administration, facility or pass type) must not be lost once the operator switches
-- it on. The ignored row keeps the booking's latest normalized event (the same data `bookings`
-- holds), its revision and whether it ends access (so a later delivery replaces it only when
-- it supersedes it, as for `bookings`), and when the booking's access ends (retention prunes
-- the row like a booking). Every sync run re-admits the rows its connection now acts on.
-- sync_runs.pull_readmitted counts them per run.
-- Expand only: nullable columns; an older booking-ingest keeps writing rows without an event
-- (never re-admitted), an older reconciler ignores the new columns.
ALTER TABLE ingest_ignored
    ADD COLUMN IF NOT EXISTS event       JSONB,
    ADD COLUMN IF NOT EXISTS revision    BIGINT,
    ADD COLUMN IF NOT EXISTS ends_access BOOLEAN,
    ADD COLUMN IF NOT EXISTS ends_at     TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS ingest_ignored_ends_idx ON ingest_ignored (ends_at);
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS pull_readmitted BIGINT;
