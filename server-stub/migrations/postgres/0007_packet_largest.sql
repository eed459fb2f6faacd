-- Version 7: the largest packet claimed so far, kept on the set (SPEC R5), so that a
-- claim of a large set marks it without reading every claim before it.

ALTER TABLE packet_sets ADD COLUMN largest BIGINT NOT NULL DEFAULT 0;
UPDATE packet_sets SET largest = COALESCE(
    (SELECT MAX(amount) FROM packets p WHERE p.set_id = packet_sets.id AND p.recipient IS NOT NULL),
    0);
