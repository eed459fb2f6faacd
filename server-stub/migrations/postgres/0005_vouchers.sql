-- PostgreSQL. Version 5: payer-made QR e-cash vouchers (SPEC V) and their per-account settings.

-- A voucher freezes its face value with a hold on the payer's wallet until it is
-- redeemed (the hold is captured by the transfers to the payee and back to nothing),
-- voided, expired or failed (the hold is released). `used` is what the payee received.
CREATE TABLE vouchers (
    id            TEXT COLLATE "C" PRIMARY KEY,
    payer         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    currency      TEXT COLLATE "C" NOT NULL,
    face_value    BIGINT NOT NULL CHECK (face_value > 0),
    used          BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= face_value),
    state         TEXT COLLATE "C" NOT NULL CHECK (state IN ('unused', 'redeemed', 'failed', 'voided', 'expired')),
    hold_id       BIGINT NOT NULL REFERENCES holds(id),
    restricted_to TEXT COLLATE "C" REFERENCES accounts(id),
    payee         TEXT COLLATE "C" REFERENCES accounts(id),
    -- The redemption's idempotency key: a replay gets the same answer.
    redeem_key    TEXT COLLATE "C",
    transfer_id   BIGINT REFERENCES transfers(id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    closed_at_ms  BIGINT,
    CHECK (state <> 'redeemed' OR (payee IS NOT NULL AND used > 0))
);
CREATE INDEX vouchers_payer ON vouchers(payer, created_at_ms);
CREATE INDEX vouchers_payee ON vouchers(payee, created_at_ms);
CREATE INDEX vouchers_unused_expiry ON vouchers(expires_at_ms) WHERE state = 'unused';

CREATE TABLE voucher_settings (
    account           TEXT COLLATE "C" PRIMARY KEY REFERENCES accounts(id),
    pin_every_voucher BIGINT NOT NULL,
    redeem_mode       TEXT COLLATE "C" NOT NULL CHECK (redeem_mode IN ('scan_then_confirm', 'redeem_on_scan')),
    -- A voucher was once made with the PIN (what "PIN only the first time" needs).
    pin_verified      BIGINT NOT NULL DEFAULT 0
);
