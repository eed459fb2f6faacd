-- Version 2: pay by phone number with an SMS code (SPEC W2–W6) and the stub SMS outbox.

-- A phone number bound to a payer's wallet, with the address goods are delivered to.
CREATE TABLE phone_bindings (
    phone            TEXT PRIMARY KEY,
    account          TEXT NOT NULL REFERENCES accounts(id),
    delivery_address TEXT
);

-- The current SMS code of an order (at most one per order; a new request replaces it).
CREATE TABLE phone_challenges (
    order_id      TEXT PRIMARY KEY REFERENCES orders(id),
    phone         TEXT NOT NULL,
    account       TEXT NOT NULL REFERENCES accounts(id),
    code_hash     TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    attempts_left INTEGER NOT NULL,
    used          INTEGER NOT NULL DEFAULT 0
);

-- How many phone-number requests an order has had (limits SMS sent per order).
CREATE TABLE phone_requests (
    order_id TEXT PRIMARY KEY REFERENCES orders(id),
    count    INTEGER NOT NULL
);

-- The stub gateway's outbox: every SMS "sent".
CREATE TABLE sms_outbox (
    id         INTEGER PRIMARY KEY,
    phone      TEXT NOT NULL,
    body       TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL
);
CREATE INDEX sms_outbox_phone ON sms_outbox(phone, id);
