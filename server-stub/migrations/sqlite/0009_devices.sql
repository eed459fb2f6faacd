-- Version 9: the register of sold devices (SPEC D1) and the product a catalog order sells.

ALTER TABLE orders ADD COLUMN device_product TEXT;

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,          -- canonical IMEI, MEID, ESN or vendor serial
    id_kind          TEXT NOT NULL CHECK (id_kind IN ('imei', 'meid', 'esn', 'serial')),
    product          TEXT NOT NULL,
    os_version       TEXT,                      -- NULL: the product's factory version
    credential_hash  TEXT,                      -- SHA-256 of the device credential; NULL until provisioned
    order_id         TEXT UNIQUE REFERENCES orders(id),  -- the sale; NULL when not sold through Couchpay
    registered_at_ms INTEGER NOT NULL,
    refunded_at_ms   INTEGER,
    refund_transfer  INTEGER REFERENCES transfers(id)
);
