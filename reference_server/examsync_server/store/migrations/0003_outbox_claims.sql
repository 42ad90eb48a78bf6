-- The outbox relay claims events before publishing them, instead of holding the SQLite write
-- lock while it talks to Redis: a claim older than a minute is taken over (its process died).
ALTER TABLE event_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE event_outbox ADD COLUMN claimed_at REAL;
