-- Applied after `pipeline migrate` to a fresh database for the A/B run of queue_state_hot_path.patch
-- (BENCHMARKS.md, "Session of 2026-12-04 (fifth)"): the hot path's queue state in its own table.
CREATE TABLE delivery_queue (seq BIGINT PRIMARY KEY, status TEXT NOT NULL, next_attempt_at BIGINT NOT NULL, lease_until BIGINT NOT NULL);
CREATE INDEX delivery_queue_due ON delivery_queue (status, next_attempt_at);
DROP INDEX deliveries_due; DROP INDEX deliveries_endpoint;
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, seq);
ALTER TABLE deliveries SET (fillfactor = 45);
