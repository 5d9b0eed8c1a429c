-- The relay deletes outbox rows once JetStream has acknowledged them
-- (20261123173500_outbox_delete_on_publish), so no row is ever marked published: the column
-- only misled readers of the schema.
ALTER TABLE outbox DROP COLUMN IF EXISTS published_at;
