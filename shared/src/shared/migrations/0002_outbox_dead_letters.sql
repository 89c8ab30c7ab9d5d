-- An outbox row the broker can never take (too large) is marked dead with its reason instead of
-- blocking every later event of the schema; the relay skips dead rows (issue 12).
ALTER TABLE outbox ADD COLUMN dead_at timestamptz, ADD COLUMN dead_reason text;

-- The relay's scan: pending rows in order, dead ones left out without reading them.
CREATE INDEX outbox_pending ON outbox (id) WHERE dead_at IS NULL;
