-- Version 8: a short code per red-packet set (typed on a phone to claim from a set a TV
-- shows), unique among open sets like an order's among pending orders.

ALTER TABLE packet_sets ADD COLUMN short_code TEXT;
CREATE UNIQUE INDEX packet_sets_open_code ON packet_sets(short_code) WHERE state = 'open';
