-- SQLite. Version 10: merchant webhooks (see server-stub/src/webhooks.rs). An event row and one
-- delivery row per endpoint are written in the transaction that made the event (a
-- durable outbox); the delivery workers of every node claim due deliveries and log
-- each attempt.

CREATE TABLE webhook_endpoints (
    id             TEXT PRIMARY KEY,
    merchant       TEXT NOT NULL REFERENCES accounts(id),
    url            TEXT NOT NULL,
    secret         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    disabled_at_ms BIGINT
);
CREATE UNIQUE INDEX webhook_endpoints_live_url ON webhook_endpoints(merchant, url)
    WHERE disabled_at_ms IS NULL;

CREATE TABLE webhook_events (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- The JSON body exactly as delivered, the same bytes on every retry.
    body          TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES webhook_events(id),
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints(id),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at_ms   BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, id);

CREATE TABLE webhook_attempts (
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries(id),
    at_ms       BIGINT NOT NULL,
    status      BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, at_ms);
