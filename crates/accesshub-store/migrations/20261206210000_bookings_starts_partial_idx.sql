-- no-transaction
-- The booking-window index only for rows that have a window (issue 21/25 benchmarks).
--
-- `bookings_starts_idx (tenant_id, kind, starts_at)` competed with the primary key for every
-- lookup by (tenant, kind, key): while `bookings` has no statistics (never analysed: a new
-- database, autovacuum off or not yet run) both estimate one row and the planner took the
-- smaller window index, then filtered every booking of the tenant by key. booking-ingest's
-- per-webhook source-key probe did so: 1,742 accepts/s against 11,372/s, 1.3 ms of Postgres
-- CPU per webhook. A partial index serves only queries that imply `starts_at IS NOT NULL`
-- (the pull's window, `starts_at >= $3`), so key lookups always take the primary key.
-- Built CONCURRENTLY (no write lock during a rollout), hence one statement outside a
-- transaction; the old index is dropped by the next migration. Expand/contract: nothing
-- reads an index by name, so a rollback runs on either.
CREATE INDEX CONCURRENTLY IF NOT EXISTS bookings_starts_nn_idx
    ON bookings (tenant_id, kind, starts_at) WHERE starts_at IS NOT NULL
