-- Version 6: red packets (SPEC R). A set's total sits in its currency's escrow account
-- from creation until each packet is claimed (escrow → recipient) or the set expires
-- (the unclaimed rest, escrow → sender, in the transaction that closes the set).

CREATE TABLE packet_sets (
    id            TEXT PRIMARY KEY,
    sender        TEXT NOT NULL REFERENCES accounts(id),
    currency      TEXT NOT NULL,
    total         INTEGER NOT NULL CHECK (total > 0),
    count         INTEGER NOT NULL CHECK (count >= 2),
    fixed         INTEGER NOT NULL,
    message       TEXT NOT NULL,
    escrow        TEXT NOT NULL REFERENCES accounts(id),
    state         TEXT NOT NULL CHECK (state IN ('open', 'finished', 'refunded')),
    -- Packets claimed so far; every claim updates it, which also locks the set's row, so
    -- a claim and the expiry refund can never both see the same packet as unclaimed.
    claimed       INTEGER NOT NULL DEFAULT 0 CHECK (claimed >= 0 AND claimed <= count),
    restricted    INTEGER NOT NULL DEFAULT 0,
    refunded      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    closed_at_ms  INTEGER
);
CREATE INDEX packet_sets_sender ON packet_sets(sender, created_at_ms);
CREATE INDEX packet_sets_open_expiry ON packet_sets(expires_at_ms) WHERE state = 'open';

-- The packets, cut when the set is made (stored, so the split is auditable).
CREATE TABLE packets (
    set_id        TEXT NOT NULL REFERENCES packet_sets(id),
    position      INTEGER NOT NULL,
    amount        INTEGER NOT NULL CHECK (amount > 0),
    recipient     TEXT REFERENCES accounts(id),
    claimed_at_ms INTEGER,
    transfer_id   INTEGER REFERENCES transfers(id),
    PRIMARY KEY (set_id, position)
);
-- One packet per recipient and set, enforced here rather than by a read before the write.
CREATE UNIQUE INDEX packets_one_per_recipient ON packets(set_id, recipient) WHERE recipient IS NOT NULL;
CREATE INDEX packets_recipient ON packets(recipient, claimed_at_ms) WHERE recipient IS NOT NULL;

-- Who may claim from a restricted set.
CREATE TABLE packet_allowed (
    set_id  TEXT NOT NULL REFERENCES packet_sets(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (set_id, account)
);
