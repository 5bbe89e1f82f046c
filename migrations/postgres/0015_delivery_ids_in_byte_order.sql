-- Delivery ids (the webhook-id, `msg_` and 32 random hex digits) in byte order. Every new delivery
-- inserts its id into the unique index on `deliveries.id`, and so does every recorded outcome (it
-- changes `status`, an indexed column, so the update is never HOT). Under the database's default
-- collation each comparison in that index calls the C library's strcoll — even for `C.UTF-8` —
-- and random keys make every descent a full one. Ids are only compared for equality, so byte
-- order loses nothing: a 512-row deliveries insert at 100K rows executed in 9.6–10.2 ms instead of
-- 13.7–14.3 ms, the table rewritten both ways (BENCHMARKS.md, "Session of 2026-12-03 (fifth)").
-- `batch_events.delivery_id` follows, so the join between the two keeps one collation and its
-- index. SQLite compares text bytewise already (BINARY): no SQLite counterpart.
ALTER TABLE deliveries ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE batch_events ALTER COLUMN delivery_id TYPE TEXT COLLATE "C";
