-- The relay deletes outbox rows once JetStream has acknowledged them (instead of marking them
-- published and keeping them for a retention period): the index of published rows goes.
DROP INDEX IF EXISTS outbox_published_idx;
