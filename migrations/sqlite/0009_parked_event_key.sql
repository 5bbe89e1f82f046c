-- A replayed batch parks the same events again: one row per (subscription, event).
-- Existing rows keep a NULL key (NULLs are distinct, so they never conflict).
ALTER TABLE parked_events ADD COLUMN event_key TEXT;
CREATE UNIQUE INDEX parked_events_event_key ON parked_events (subscription_id, event_key);
