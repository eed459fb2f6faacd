-- SQLite. Version 11: the developer console lists the newest orders.
CREATE INDEX orders_created ON orders(created_at_ms);
