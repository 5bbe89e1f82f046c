-- Attempts keyed by their delivery's `seq`, not its id (see the SQLite migration of the same
-- number): new attempts append to the primary key instead of landing at random places in it.
-- Attempts whose delivery no longer exists are not carried over.
CREATE TABLE delivery_attempts_by_seq (
    delivery_seq   BIGINT NOT NULL,
    attempt        BIGINT NOT NULL,
    status_code    BIGINT,
    latency_ms     BIGINT NOT NULL,
    error          TEXT,
    response_body  TEXT,
    created_at     BIGINT NOT NULL,
    CONSTRAINT delivery_attempts_pkey_by_seq PRIMARY KEY (delivery_seq, attempt)
);
INSERT INTO delivery_attempts_by_seq
    (delivery_seq, attempt, status_code, latency_ms, error, response_body, created_at)
SELECT d.seq, a.attempt, a.status_code, a.latency_ms, a.error, a.response_body, a.created_at
FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id;
DROP TABLE delivery_attempts;
ALTER TABLE delivery_attempts_by_seq RENAME TO delivery_attempts;
ALTER TABLE delivery_attempts RENAME CONSTRAINT delivery_attempts_pkey_by_seq TO delivery_attempts_pkey;
