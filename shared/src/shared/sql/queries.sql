-- The consumer pipeline's own statements, on the inbox and outbox every service's schema has
-- (migrations/0001_messaging.sql). The migration runner's statements stay in db.py: they name the
-- schema they create, before any of this exists.

-- name: claim_inbox
-- The ids not handled before by this consumer (the others are duplicates: redelivered or re-sent).
INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::text[])
ON CONFLICT DO NOTHING RETURNING event_id;

-- name: claim_inbox_many
-- claim_inbox for the batches of several consumers at once ($1[i] the consumer of event $2[i]).
INSERT INTO inbox (consumer, event_id) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING RETURNING consumer, event_id;

-- name: insert_outbox
-- A transaction's events in one statement, in the order they were emitted: ids are drawn as the
-- rows are inserted, in ordinality order, and the relay publishes in id order.
INSERT INTO outbox (topic, key, payload, headers)
SELECT t, k, p, h FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[]) WITH ORDINALITY AS r(t, k, p, h, n)
ORDER BY n
RETURNING id;

-- name: bury_outbox
UPDATE outbox SET dead_at = now(), dead_reason = $2 WHERE id = $1;

-- name: delete_outbox
DELETE FROM outbox WHERE id = ANY($1::bigint[]);

-- name: sweep_and_list_outbox
-- Deletes $2 (rows the relay published since its last read) and lists the pending rows in order
-- (dead rows, which the broker can never take, skipped), in one round trip. The SELECT sees the
-- statement's snapshot, before the delete, hence the exclusion (a few ids: the relay sweeps a long
-- list with delete_outbox instead).
WITH swept AS (DELETE FROM outbox WHERE id = ANY($2::bigint[]))
SELECT id, topic, key, payload, headers FROM outbox
WHERE dead_at IS NULL AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $1;

-- name: prune_inbox
-- One bounded chunk of inbox rows older than $1 seconds (inbox_received_at index); returns how many.
WITH doomed AS (
    SELECT ctid FROM inbox WHERE received_at < now() - make_interval(secs => $1) LIMIT $2
), gone AS (
    DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1
)
SELECT count(*)::int FROM gone;

-- name: try_advisory_lock
SELECT pg_try_advisory_lock($1);

-- name: advisory_unlock
SELECT pg_advisory_unlock($1);
