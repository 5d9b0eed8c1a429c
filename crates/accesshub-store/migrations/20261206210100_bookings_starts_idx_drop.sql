-- no-transaction
-- Drops the window index the partial `bookings_starts_nn_idx` replaces (see the previous
-- migration): it made lookups by (tenant, kind, key) scan the tenant's bookings while the
-- table had no statistics. CONCURRENTLY: no lock on writers during a rollout.
DROP INDEX CONCURRENTLY IF EXISTS bookings_starts_idx
