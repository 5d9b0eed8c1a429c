-- bindings_vendor_status_idx ((vendor, status)) was added for dashboards that never came: no
-- statement filters bindings by vendor and status. It cost an index insertion per binding,
-- and it broke the workers' booking probe: a generic plan made while the table had never
-- been analysed (a new deployment) chose it for `vendor = $x`, i.e. a scan of every binding
-- of the vendor per probe, over the primary key's exact match. Every remaining query on
-- bindings is a primary-key prefix.
DROP INDEX IF EXISTS bindings_vendor_status_idx;
