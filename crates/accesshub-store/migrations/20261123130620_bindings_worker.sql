-- Worker runtime: when the last failure of a binding was recorded, and an index for
-- "which bookings are failing at vendor X" (accessctl status, dashboards).
ALTER TABLE bindings ADD COLUMN IF NOT EXISTS last_error_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS bindings_vendor_status_idx ON bindings (vendor, status);
