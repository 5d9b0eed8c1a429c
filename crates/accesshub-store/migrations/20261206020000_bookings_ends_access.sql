-- Whether the stored desired state ends access (cancelled, checked out, no-show, pass used or
-- removed, facility booking cancelled): an event that ends access wins over a stored one of the
-- same revision that does not (an upstream's delete need not bump its last-change time).
-- Expand only: older builds do not write it and keep their revision rule.
ALTER TABLE bookings ADD COLUMN IF NOT EXISTS ends_access boolean NOT NULL DEFAULT false;
