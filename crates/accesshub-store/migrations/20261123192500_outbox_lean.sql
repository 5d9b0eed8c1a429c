-- The outbox on the webhook's commit path, made lean.
--
-- 1. No NOTIFY at commit. Postgres serialises every transaction that has a pending NOTIFY
--    behind one database-wide lock held until its commit record is flushed
--    (async.c, PreCommit_Notify), so the committers' fsyncs queued one by one instead of
--    sharing a WAL flush. Each replica's relay is woken in-process by its own committers; rows
--    of a replica that died before relaying them are picked up by the others' poll.
-- 2. Rows are deleted once published, so every row is pending: the partial index of pending
--    rows and the unique index on event_id (JetStream de-duplicates on it anyway) only cost
--    two index insertions per webhook. The primary key orders the relay's claims.
-- 3. A queue table: vacuum it by dead-row count, not by the fraction of a table that is
--    nearly empty most of the time.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS accesshub_outbox_notify();
DROP INDEX IF EXISTS outbox_pending_idx;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
                        autovacuum_vacuum_insert_scale_factor = 0,
                        autovacuum_vacuum_insert_threshold = 100000);
