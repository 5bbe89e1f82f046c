-- Attempts keyed by their delivery's `seq`, not its id. The id is a hash: every recorded outcome
-- inserted into the old primary key (delivery_id, attempt) at a random place, and once that index
-- outgrew the writer's page cache each insert read a random page and wrote it back to the log.
-- At 10K webhooks/s that cost grew with the table until the host fell behind within a minute
-- (BENCHMARKS.md, "Session of 2026-12-03 (second)"). `seq` only grows: new attempts append.
-- Attempts whose delivery no longer exists are not carried over.
CREATE TABLE delivery_attempts_by_seq (
    delivery_seq   INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    status_code    INTEGER,
    latency_ms     INTEGER NOT NULL,
    error          TEXT,
    response_body  TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (delivery_seq, attempt)
);
INSERT INTO delivery_attempts_by_seq
    (delivery_seq, attempt, status_code, latency_ms, error, response_body, created_at)
SELECT d.seq, a.attempt, a.status_code, a.latency_ms, a.error, a.response_body, a.created_at
FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id;
DROP TABLE delivery_attempts;
ALTER TABLE delivery_attempts_by_seq RENAME TO delivery_attempts;
