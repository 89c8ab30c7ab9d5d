-- The consumer pipeline's own statements, on the inbox and outbox every service's schema has
-- (migrations/0001_messaging.sql). The migration runner's statements stay in db.py: they name the
-- schema they create, before any of this exists.

-- name: claim_inbox
-- The ids not handled before by this consumer (the others are duplicates: redelivered or re-sent).
INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::text[])
ON CONFLICT DO NOTHING RETURNING event_id;

-- name: insert_outbox
INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4);

-- name: list_outbox
SELECT id, topic, key, payload, headers FROM outbox ORDER BY id LIMIT $1;

-- name: delete_outbox
DELETE FROM outbox WHERE id = ANY($1::bigint[]);

-- name: try_advisory_lock
SELECT pg_try_advisory_lock($1);

-- name: advisory_unlock
SELECT pg_advisory_unlock($1);
