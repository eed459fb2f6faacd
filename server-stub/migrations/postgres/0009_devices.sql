-- Version 9: the register of sold devices (SPEC D1) and the product a catalog order sells.

ALTER TABLE orders ADD COLUMN device_product TEXT COLLATE "C";

CREATE TABLE devices (
    id               TEXT COLLATE "C" PRIMARY KEY,
    id_kind          TEXT COLLATE "C" NOT NULL CHECK (id_kind IN ('imei', 'meid', 'esn', 'serial')),
    product          TEXT COLLATE "C" NOT NULL,
    os_version       TEXT COLLATE "C",
    credential_hash  TEXT COLLATE "C",
    order_id         TEXT COLLATE "C" UNIQUE REFERENCES orders(id),
    registered_at_ms BIGINT NOT NULL,
    refunded_at_ms   BIGINT,
    refund_transfer  BIGINT REFERENCES transfers(id)
);
