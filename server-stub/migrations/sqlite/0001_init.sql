-- Couchpay server schema, version 1.
-- Money columns are INTEGER minor units. Only 'system' accounts (the per-currency
-- issuance accounts that top-ups come from) may have a negative balance.

CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('wallet', 'card', 'merchant', 'escrow', 'system')),
    -- For a card: the wallet it is linked to.
    owner           TEXT REFERENCES accounts(id),
    name            TEXT NOT NULL,
    currency        TEXT NOT NULL,
    balance         INTEGER NOT NULL DEFAULT 0,
    held            INTEGER NOT NULL DEFAULT 0,
    pin_hash        TEXT,
    failed_pins     INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    CHECK (kind = 'system' OR (held >= 0 AND balance >= held))
);
CREATE UNIQUE INDEX accounts_card_owner ON accounts(owner) WHERE kind = 'card';

-- Immutable: rows are only ever inserted. Mistakes are fixed by correcting transfers.
CREATE TABLE transfers (
    id            INTEGER PRIMARY KEY,
    debit         TEXT NOT NULL REFERENCES accounts(id),
    credit        TEXT NOT NULL REFERENCES accounts(id),
    amount        INTEGER NOT NULL CHECK (amount > 0),
    currency      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    reference     TEXT,
    created_at_ms INTEGER NOT NULL,
    CHECK (debit <> credit)
);
CREATE INDEX transfers_reference ON transfers(reference);

CREATE TRIGGER transfers_immutable_update BEFORE UPDATE ON transfers
BEGIN SELECT RAISE(ABORT, 'transfers are immutable'); END;
CREATE TRIGGER transfers_immutable_delete BEFORE DELETE ON transfers
BEGIN SELECT RAISE(ABORT, 'transfers are immutable'); END;

-- Frozen money (voucher holds). accounts.held is the sum of active holds.
CREATE TABLE holds (
    id            INTEGER PRIMARY KEY,
    account       TEXT NOT NULL REFERENCES accounts(id),
    amount        INTEGER NOT NULL CHECK (amount > 0),
    reason        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'released', 'captured')),
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    short_code       TEXT NOT NULL,
    item_id          TEXT NOT NULL,
    item_title       TEXT NOT NULL,
    item_kind        TEXT NOT NULL,
    period_days      INTEGER,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    merchant_id      TEXT NOT NULL REFERENCES accounts(id),
    merchant_name    TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    device_name      TEXT NOT NULL,
    tv_token_hash    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'expired', 'cancelled')),
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER NOT NULL,
    paid_at_ms       INTEGER,
    payer            TEXT REFERENCES accounts(id),
    delivery_address TEXT
);
-- A short code identifies at most one live order.
CREATE UNIQUE INDEX orders_live_code ON orders(short_code) WHERE status = 'pending';
CREATE INDEX orders_pending_expiry ON orders(expires_at_ms) WHERE status = 'pending';

-- One row per completed payment; the primary key makes retries idempotent.
CREATE TABLE payments (
    payer         TEXT NOT NULL REFERENCES accounts(id),
    idem_key      TEXT NOT NULL,
    order_id      TEXT NOT NULL UNIQUE REFERENCES orders(id),
    funding       TEXT NOT NULL,
    transfer_id   INTEGER NOT NULL REFERENCES transfers(id),
    paid_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (payer, idem_key)
);

CREATE TABLE entitlements (
    order_id       TEXT PRIMARY KEY REFERENCES orders(id),
    device_id      TEXT NOT NULL,
    granted_at_ms  INTEGER NOT NULL,
    valid_until_ms INTEGER
);
CREATE INDEX entitlements_device ON entitlements(device_id);

CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY,
    account       TEXT NOT NULL REFERENCES accounts(id),
    expires_at_ms INTEGER NOT NULL
);
