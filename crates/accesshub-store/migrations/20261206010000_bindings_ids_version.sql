-- The version of the record shape in `vendor_ids` (the adapter's `Handler::IDS_VERSION`), so a
-- build never reads a record written by a newer adapter as its own (after a rollback, say).
-- Expand only: rows written by older builds are version 1, and older builds ignore the column.
ALTER TABLE bindings ADD COLUMN IF NOT EXISTS ids_version smallint NOT NULL DEFAULT 1;
