-- Who replayed which dead letter, when, and under which fresh Nats-Msg-Id. `accessctl dlq
-- show` lists the earlier replays of an event from here, and the replay loop limit counts them
-- (a worker that forgets to carry Accesshub-Replay-Count still cannot cause an endless loop).
CREATE TABLE dlq_replays (
    id                BIGSERIAL PRIMARY KEY,
    -- DLQ stream (namespaced name) and sequence of the replayed entry: the entry's stable id.
    dlq_stream        TEXT NOT NULL,
    dlq_seq           BIGINT NOT NULL,
    -- Original event id (Accesshub-Event-Id / Nats-Msg-Id); text because a poison payload's
    -- id may not be a UUID. NULL when unknown.
    event_id          TEXT,
    worker            TEXT NOT NULL,
    original_subject  TEXT NOT NULL,
    -- Fresh Nats-Msg-Id of the republished message (NULL for a dry run).
    new_msg_id        TEXT,
    replayed_by       TEXT NOT NULL,
    replayed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    dry_run           BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX dlq_replays_event_idx ON dlq_replays (event_id, replayed_at);
CREATE INDEX dlq_replays_seq_idx ON dlq_replays (dlq_stream, dlq_seq);
