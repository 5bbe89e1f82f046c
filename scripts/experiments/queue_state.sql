-- A model of the delivery lifecycle on PostgreSQL, server side only (issue 6): today's schema
-- (A: the queue state — status, next_attempt_at, lease_until — in `deliveries`, under two of its
-- indexes) against the queue state in a table of its own (B: `deliveries` has no index on what an
-- outcome changes, so the outcome's UPDATE can be HOT; a finished row leaves `b_queue`).
-- Each function writes `batches` batches of 512 deliveries the way the hot path does — insert
-- (with bodies), record each outcome as delivered, log the attempt — with generated rows.
--
-- Run on a scratch database with pg_stat_statements (track = all) for per-statement figures:
--   psql -d scratch -f scripts/experiments/queue_state.sql
--   for r in 0 1 2 3; do psql -d scratch -c "\timing on" \
--     -c "select run_a(100, $((r*51200)))" -c "select run_b(100, $((r*51200)))"; done
-- BENCHMARKS.md, "Session of 2026-12-04 (fifth)", has the figures.
DROP TABLE IF EXISTS a_deliveries, a_bodies, a_attempts, b_deliveries, b_queue, b_bodies, b_attempts CASCADE;
DROP SEQUENCE IF EXISTS b_seq;
-- A: today's schema
CREATE TABLE a_deliveries (
    seq BIGSERIAL PRIMARY KEY, id TEXT COLLATE "C" NOT NULL UNIQUE, subscription_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL, chain_id BIGINT NOT NULL, event_type TEXT NOT NULL, block_number BIGINT NOT NULL,
    status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0, last_status_code BIGINT, last_error TEXT,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, release_block BIGINT, ordering_key TEXT);
CREATE INDEX a_due ON a_deliveries (status, next_attempt_at);
CREATE INDEX a_endpoint ON a_deliveries (endpoint_id, status);
CREATE INDEX a_held ON a_deliveries (chain_id, release_block) WHERE release_block IS NOT NULL;
CREATE INDEX a_ordering ON a_deliveries (ordering_key, seq) WHERE ordering_key IS NOT NULL;
CREATE TABLE a_bodies (seq BIGINT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE a_attempts (delivery_seq BIGINT NOT NULL, attempt BIGINT NOT NULL, status_code BIGINT, latency_ms BIGINT NOT NULL,
    error TEXT, response_body TEXT, created_at BIGINT NOT NULL, PRIMARY KEY (delivery_seq, attempt));
-- B: queue state in its own table; deliveries has no index on what an outcome changes
CREATE TABLE b_deliveries (LIKE a_deliveries INCLUDING DEFAULTS) WITH (fillfactor = 45);
ALTER TABLE b_deliveries ADD PRIMARY KEY (seq);
CREATE SEQUENCE b_seq; ALTER TABLE b_deliveries ALTER seq SET DEFAULT nextval('b_seq');
CREATE UNIQUE INDEX b_id ON b_deliveries (id);
CREATE INDEX b_endpoint ON b_deliveries (endpoint_id, seq);
CREATE INDEX b_ordering ON b_deliveries (ordering_key, seq) WHERE ordering_key IS NOT NULL;
CREATE TABLE b_queue (seq BIGINT PRIMARY KEY, status TEXT NOT NULL, next_attempt_at BIGINT NOT NULL, lease_until BIGINT NOT NULL,
    chain_id BIGINT NOT NULL, release_block BIGINT);
CREATE INDEX b_due ON b_queue (status, next_attempt_at);
CREATE INDEX b_held ON b_queue (chain_id, release_block) WHERE release_block IS NOT NULL;
CREATE TABLE b_bodies (seq BIGINT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE b_attempts (LIKE a_attempts); ALTER TABLE b_attempts ADD PRIMARY KEY (delivery_seq, attempt);
-- :n batches of 512; each batch inserted then its outcomes recorded (as the hot path does)
CREATE OR REPLACE FUNCTION run_a(batches int, base bigint) RETURNS void AS $$
DECLARE b int; lo bigint;
BEGIN
 FOR b IN 0..batches-1 LOOP
  lo := base + b*512;
  WITH j AS (SELECT g, 'msg_' || lpad(g::text, 12, '0') || md5(g::text) AS id FROM generate_series(lo, lo+511) g),
   ins AS (INSERT INTO a_deliveries (id, subscription_id, endpoint_id, chain_id, event_type, block_number, status, attempts, next_attempt_at, lease_until, created_at, updated_at)
     SELECT id, 'sub_' || (g % 100), 'ep_1', 1, 'erc20.transfer', g/200, 'pending', 0, 1000 + g, 1000 + g, g, g FROM j RETURNING seq, id)
  INSERT INTO a_bodies SELECT seq, repeat('x', 900) FROM ins;
  UPDATE a_deliveries d SET status = 'delivered', attempts = 1, next_attempt_at = 2000 + d.seq, lease_until = 0, last_status_code = 200, last_error = NULL, updated_at = 5
    FROM (SELECT g AS seq FROM generate_series(lo + 1, lo + 512) g) j WHERE d.seq = j.seq AND d.status <> 'delivered';
  INSERT INTO a_attempts SELECT g, 1, 200, 3, NULL, NULL, 5 FROM generate_series(lo + 1, lo + 512) g;
 END LOOP;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION run_b(batches int, base bigint) RETURNS void AS $$
DECLARE b int; lo bigint;
BEGIN
 FOR b IN 0..batches-1 LOOP
  lo := base + b*512;
  WITH j AS (SELECT g, 'msg_' || lpad(g::text, 12, '0') || md5(g::text) AS id FROM generate_series(lo, lo+511) g),
   ins AS (INSERT INTO b_deliveries (id, subscription_id, endpoint_id, chain_id, event_type, block_number, status, attempts, next_attempt_at, lease_until, created_at, updated_at)
     SELECT id, 'sub_' || (g % 100), 'ep_1', 1, 'erc20.transfer', g/200, 'pending', 0, 1000 + g, 1000 + g, g, g FROM j RETURNING seq, id, next_attempt_at),
   q AS (INSERT INTO b_queue SELECT seq, 'pending', next_attempt_at, next_attempt_at, 1, NULL FROM ins RETURNING seq)
  INSERT INTO b_bodies SELECT seq, repeat('x', 900) FROM q;
  UPDATE b_deliveries d SET status = 'delivered', attempts = 1, next_attempt_at = 2000 + d.seq, lease_until = 0, last_status_code = 200, last_error = NULL, updated_at = 5
    FROM (SELECT g AS seq FROM generate_series(lo + 1, lo + 512) g) j WHERE d.seq = j.seq AND d.status <> 'delivered';
  DELETE FROM b_queue q USING (SELECT g AS seq FROM generate_series(lo + 1, lo + 512) g) j WHERE q.seq = j.seq;
  INSERT INTO b_attempts SELECT g, 1, 200, 3, NULL, NULL, 5 FROM generate_series(lo + 1, lo + 512) g;
 END LOOP;
END $$ LANGUAGE plpgsql;
