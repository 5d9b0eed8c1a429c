-- Wake the outbox relays of every booking-ingest replica when rows are written, from inside
-- the writing statement: one NOTIFY per INSERT statement (Postgres folds identical ones of a
-- transaction into one, delivered at commit), with no extra round trip for the writer.
CREATE FUNCTION accesshub_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('accesshub_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION accesshub_outbox_notify();
