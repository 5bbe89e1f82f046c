-- Nothing to change on SQLite: PostgreSQL's 0012 replaces the bodies' foreign key, whose check
-- cost 1.6 ms per 100 inserted rows there. SQLite's check is an in-process probe of the primary
-- key, so `delivery_bodies` keeps `REFERENCES deliveries (seq) ON DELETE CASCADE`. (Kept so both
-- dialects' migrations stay numbered alike.)
SELECT 1;
