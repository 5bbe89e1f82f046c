-- The due index holds unfinished deliveries only. Every recorded outcome changes `status`, so it is
-- never a HOT update and every index of `deliveries` takes a new entry for it — including this
-- one, where a delivered or dead row's entry was never read: the claim, the backlog count, the
-- batch sealer, the hold release and the subscription patch all ask for unfinished states, and
-- the listings and retention read finished rows by `seq`, by id or through
-- `deliveries_endpoint`. Partial, the index skips one B-tree insertion per outcome and stays the
-- size of the backlog rather than of the table. At 20K events/s: one WAL record fewer per
-- webhook (−3.5 % WAL), the server's CPU −5 % over seven interleaved pairs (BENCHMARKS.md,
-- "Session of 2026-12-05").
-- A state added to `DeliveryStatus` that is not final belongs in this list
-- (`store::tests::the_due_index_serves_every_unfinished_state_and_no_final_one` fails until then).
-- SQLite keeps its full index: its planner uses a partial index only for a query that repeats
-- the index's own terms, and the queries name different subsets of these states.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)
    WHERE status IN ('pending', 'retrying', 'filling');
