-- The trace of the worker's attempt that last wrote a binding: the one that applied what the
-- row records, or that failed with its last_error (issue 22: the console's Bookings screen
-- shows it per vendor, as the id an SRE pastes into the trace UI). 32 hex digits as in
-- `traceparent`; NULL when the attempt was not traced or the row predates the column.
-- Expand-only: nullable, no default, no rewrite; older workers never name the column (their
-- writes leave the previous trace id in place until a newer worker writes the row).
ALTER TABLE bindings ADD COLUMN IF NOT EXISTS trace_id TEXT;
