-- Version 3: the wrong-PIN policy per account and source, the server's secrets, and
-- merchant API keys.

-- Wrong PINs per account and source (client address; IPv6 per /64). `failures` counts
-- wrong PINs in a row from this source; `window_failures` those of the current
-- per-source window (see pin.rs); `last_success_ms` marks a source the owner has used
-- (it keeps working when unknown sources are shut out).
CREATE TABLE pin_failures (
    account         TEXT NOT NULL REFERENCES accounts(id),
    source          TEXT NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    window_failures INTEGER NOT NULL DEFAULT 0,
    last_failure_ms INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    last_success_ms INTEGER,
    PRIMARY KEY (account, source)
);
CREATE INDEX pin_failures_source ON pin_failures(source, last_failure_ms);

-- accounts.failed_pins now counts wrong PINs from unknown sources in the day window
-- that starts at pin_window_start_ms; accounts.locked_until_ms is no longer used.
ALTER TABLE accounts ADD COLUMN pin_window_start_ms INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET failed_pins = 0, locked_until_ms = 0;

-- Random secrets created on first start (e.g. the key that signs CSRF cookies), kept
-- here so that they survive restarts and every node of a cluster shares them.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- Merchant API keys: read access to one merchant's balance, orders and payments.
-- Only the SHA-256 of a key is stored; the key itself is shown once, on creation.
CREATE TABLE merchant_keys (
    key_hash      TEXT PRIMARY KEY,
    merchant      TEXT NOT NULL REFERENCES accounts(id),
    label         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX merchant_keys_merchant ON merchant_keys(merchant);
CREATE INDEX payments_payer_time ON payments(payer, paid_at_ms, idem_key);
CREATE INDEX orders_merchant_time ON orders(merchant_id, created_at_ms, id);
