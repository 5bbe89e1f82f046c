-- Delivery modes (issue 12): batched webhooks and ordered delivery, per subscription.
-- batch: NULL (one webhook per event), '"block"' or '{"max_events":N,"max_wait_ms":M}' (JSON).
ALTER TABLE subscriptions ADD COLUMN batch TEXT;
ALTER TABLE subscriptions ADD COLUMN ordering TEXT NOT NULL DEFAULT 'none';          -- none | chain
ALTER TABLE subscriptions ADD COLUMN ordering_key TEXT NOT NULL DEFAULT 'subscription'; -- subscription | address
ALTER TABLE subscriptions ADD COLUMN on_dead TEXT NOT NULL DEFAULT 'halt';           -- halt | skip

-- An ordered delivery's key (NULL = unordered): a row is claimed only when no earlier row (by seq)
-- of its key is still undelivered (or dead, when its subscription halts on dead).
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
CREATE INDEX deliveries_ordering ON deliveries (ordering_key, seq) WHERE ordering_key IS NOT NULL;

-- The events of a batch delivery ({max_events, max_wait_ms}), appended while the batch fills
-- (its delivery row has status 'filling' and is never claimed) and read once when it is sealed.
-- event_id is the single-event delivery id, so an event replayed after a crash is not added twice.
CREATE TABLE batch_events (
    event_id      TEXT PRIMARY KEY,
    delivery_id   TEXT NOT NULL,
    position      INTEGER NOT NULL,
    block_number  INTEGER NOT NULL,
    element       TEXT NOT NULL
);
CREATE INDEX batch_events_delivery ON batch_events (delivery_id, position);
