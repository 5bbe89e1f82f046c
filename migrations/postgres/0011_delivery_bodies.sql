-- A delivery's body in its own table, written once. SQLite rewrites a whole row, overflow pages
-- included, whenever an UPDATE changes the row's size, and every claim and every recorded outcome
-- does: a batch webhook's body (up to megabytes) was written three times and checkpointed three
-- times (measured: 20 bodies of 650 KB, 13.1 MB of log for the insert, +13.8 MB for a claim,
-- +13.8 MB for an outcome; BENCHMARKS.md, "Delivery modes"). Keyed by the delivery's `seq`, so new
-- bodies append at the end of the table.
CREATE TABLE delivery_bodies (
    seq   BIGINT PRIMARY KEY REFERENCES deliveries (seq) ON DELETE CASCADE,
    body  TEXT NOT NULL
);
INSERT INTO delivery_bodies (seq, body) SELECT seq, body FROM deliveries;
ALTER TABLE deliveries DROP COLUMN body;
