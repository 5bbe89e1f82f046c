-- A body goes with its delivery through a statement-level trigger instead of the foreign key's
-- `ON DELETE CASCADE`. The foreign key's check ran once per inserted body, on the hot path: in a
-- 100-row batch write, 1.6 ms of the statement's 5.5 ms of execution (`EXPLAIN ANALYZE`,
-- BENCHMARKS.md, "Latency at 1K events/s — session of 2026-12-02 (seventh)"). Bodies are only
-- inserted for the rows the same statement inserted (`inserted.seq`), so the check guarded
-- nothing the write does not already keep; deleting with their rows is what remains, and this
-- trigger does it once per DELETE statement, for every row it removed.
ALTER TABLE delivery_bodies DROP CONSTRAINT IF EXISTS delivery_bodies_seq_fkey;

CREATE FUNCTION delete_delivery_bodies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivery_bodies WHERE seq IN (SELECT seq FROM gone);
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_delete_bodies AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION delete_delivery_bodies();
