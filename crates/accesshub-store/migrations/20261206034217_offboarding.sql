-- Offboarding (issue 20 item 3): deleting or disabling a connection, or deleting a tenant,
-- first removes the access it created at the vendor, through a sync run of scope `offboard`.
-- Expand only: the new columns default to "not offboarding", which older builds ignore; the
-- widened CHECK accepts everything the old one did. An older reconciler cannot decode a run of
-- scope `offboard` and so never executes one as something else.

-- What happens to the connection once nothing of ours is left at the vendor: NULL while the
-- connection is active; 'delete' or 'disable' while it is being offboarded (it keeps its
-- credentials until then, and wants no access meanwhile).
ALTER TABLE connections ADD COLUMN IF NOT EXISTS offboarding TEXT
    CHECK (offboarding IN ('delete', 'disable'));

-- The tenant is deleted (with its bookings and bindings) once its last connection is
-- offboarded.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS offboarding BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE sync_runs DROP CONSTRAINT IF EXISTS sync_runs_scope_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_scope_check
    CHECK (scope IN ('upcoming', 'active', 'full', 'offboard')) NOT VALID;
ALTER TABLE sync_runs VALIDATE CONSTRAINT sync_runs_scope_check;
-- What a run concluded besides its counts (an offboard run: the connection deleted).
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS note TEXT;
