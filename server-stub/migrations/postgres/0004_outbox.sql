-- PostgreSQL. Version 4: the event outbox, through which the nodes sharing this database
-- hear of each other's events (see server-stub/src/outbox.rs). One row per writer batch
-- that produced events, inserted in that batch's transaction; pruned after a minute.
CREATE TABLE event_outbox (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The node (server process) that wrote it: its own relay skips it.
    node   TEXT COLLATE "C" NOT NULL,
    at_ms  BIGINT NOT NULL,
    -- A JSON array of events.
    events TEXT NOT NULL
);
CREATE INDEX event_outbox_at ON event_outbox(at_ms);
