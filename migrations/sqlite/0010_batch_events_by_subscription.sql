-- batch_events was keyed by event_id alone, a hash: each of a busy subscription's events landed at a
-- random place in that index, so a write of 10,000 events dirtied thousands of index pages (the
-- SQLite writer spent most of its time reading and writing them; BENCHMARKS.md, "Delivery modes").
-- Keyed by (subscription, block, event) instead, a subscription's new events go to the end of its
-- range: the same uniqueness (an event id already names its subscription and block), a few pages.
CREATE TABLE batch_events_new (
    subscription_id TEXT NOT NULL,
    block_number    INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    delivery_id     TEXT NOT NULL,
    position        INTEGER NOT NULL,
    element         TEXT NOT NULL
);
INSERT INTO batch_events_new (subscription_id, block_number, event_id, delivery_id, position, element)
    SELECT d.subscription_id, e.block_number, e.event_id, e.delivery_id, e.position, e.element
    FROM batch_events e JOIN deliveries d ON d.id = e.delivery_id;
DROP TABLE batch_events;
ALTER TABLE batch_events_new RENAME TO batch_events;
CREATE UNIQUE INDEX batch_events_key ON batch_events (subscription_id, block_number, event_id);
CREATE INDEX batch_events_delivery ON batch_events (delivery_id, position);
