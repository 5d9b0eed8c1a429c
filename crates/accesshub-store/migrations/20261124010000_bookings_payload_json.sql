-- The booking's desired state is the event exactly as booking-ingest serialized it, and it is
-- only ever read whole (workers decode it, the reconciler reads it as text). As jsonb, every
-- webhook paid for parsing it into jsonb's binary form and every full sync for printing it
-- back; json keeps the text as written, checked for syntax only. Path operators (->, #>>)
-- work on json as on jsonb.
ALTER TABLE bookings ALTER COLUMN payload TYPE json USING payload::json;
