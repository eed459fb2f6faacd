-- Version 5: payer-made QR e-cash vouchers (SPEC V) and their per-account settings.

-- A voucher freezes its face value with a hold on the payer's wallet until it is
-- redeemed (the hold is captured by the transfers to the payee and back to nothing),
-- voided, expired or failed (the hold is released). `used` is what the payee received.
CREATE TABLE vouchers (
    id            TEXT PRIMARY KEY,
    payer         TEXT NOT NULL REFERENCES accounts(id),
    currency      TEXT NOT NULL,
    face_value    INTEGER NOT NULL CHECK (face_value > 0),
    used          INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= face_value),
    state         TEXT NOT NULL CHECK (state IN ('unused', 'redeemed', 'failed', 'voided', 'expired')),
    hold_id       INTEGER NOT NULL REFERENCES holds(id),
    restricted_to TEXT REFERENCES accounts(id),
    payee         TEXT REFERENCES accounts(id),
    -- The redemption's idempotency key: a replay gets the same answer.
    redeem_key    TEXT,
    transfer_id   INTEGER REFERENCES transfers(id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    closed_at_ms  INTEGER,
    CHECK (state <> 'redeemed' OR (payee IS NOT NULL AND used > 0))
);
CREATE INDEX vouchers_payer ON vouchers(payer, created_at_ms);
CREATE INDEX vouchers_payee ON vouchers(payee, created_at_ms);
CREATE INDEX vouchers_unused_expiry ON vouchers(expires_at_ms) WHERE state = 'unused';

CREATE TABLE voucher_settings (
    account           TEXT PRIMARY KEY REFERENCES accounts(id),
    pin_every_voucher INTEGER NOT NULL,
    redeem_mode       TEXT NOT NULL CHECK (redeem_mode IN ('scan_then_confirm', 'redeem_on_scan')),
    -- A voucher was once made with the PIN (what "PIN only the first time" needs).
    pin_verified      INTEGER NOT NULL DEFAULT 0
);
