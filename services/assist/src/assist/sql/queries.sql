-- name: upsert_article
INSERT INTO articles (id, title, body, tags, product, language, status, vector, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
ON CONFLICT (id) DO UPDATE SET title = $2, body = $3, tags = $4, product = $5, language = $6, status = $7,
    vector = $8, updated_at = now()
RETURNING (xmax = 0) AS created;

-- name: get_article
SELECT id, title, body, tags, product, language, status, updated_at FROM articles WHERE id = $1;

-- name: list_article_vectors
SELECT id, title, language, vector FROM articles WHERE status = 'published' AND vector IS NOT NULL ORDER BY id;

-- name: list_articles_without_vector
SELECT id, title, tags, body FROM articles WHERE vector IS NULL ORDER BY id;

-- name: set_article_vector
UPDATE articles SET vector = $2 WHERE id = $1;

-- name: kb_version
SELECT version FROM kb_version;

-- name: bump_kb_version
UPDATE kb_version SET version = version + 1;

-- name: search_articles
-- Any of the query's words (OR), ranked by cover density with title > tags > body weights.
WITH q AS (SELECT to_tsquery('english', $1) AS query)
SELECT a.id, a.title, a.tags, a.product, ts_rank_cd('{0.1, 0.2, 0.6, 1.0}', a.search, q.query, 32) AS score
FROM articles a, q
WHERE a.status = 'published' AND a.search @@ q.query AND ($3::text IS NULL OR a.language = $3)
ORDER BY score DESC, a.id
LIMIT $2;

-- name: upsert_library_reply
INSERT INTO replies (id, source, title, text, tags, language, vector)
VALUES ($1, 'library', $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET title = $2, text = $3, tags = $4, language = $5, vector = $6, updated_at = now()
RETURNING (xmax = 0) AS created;

-- name: learn_reply
-- A reply an agent sent: new, or one more use of the same words (its vector already merged).
INSERT INTO replies (id, source, title, text, vector, uses)
VALUES ($1, 'history', $2, $3, $4, 1)
ON CONFLICT (id) DO UPDATE SET vector = $4, uses = replies.uses + 1, updated_at = now();

-- name: get_reply
SELECT id, source, text, language, vector, uses FROM replies WHERE id = $1;

-- name: list_reply_vectors
SELECT id, source, text, language, vector, uses FROM replies ORDER BY id;

-- name: list_replies
SELECT id, source, title, text, uses, shown, accepted, edited, rejected FROM replies ORDER BY source DESC, id;

-- name: reply_stats
SELECT id, uses, shown, accepted, edited, rejected FROM replies WHERE id = ANY($1::text[]);

-- name: count_shown
UPDATE replies SET shown = shown + 1 WHERE id = ANY($1::text[]);

-- name: insert_suggestion
INSERT INTO suggestions (suggestion_id, conversation_id, reply_id, text, score) VALUES ($1, $2, $3, $4, $5);

-- name: get_suggestion
SELECT suggestion_id, conversation_id, reply_id, text, verdict FROM suggestions WHERE suggestion_id = $1;

-- name: decide_suggestion
-- Once: a suggestion already decided is left as it is (no row returned).
UPDATE suggestions SET verdict = $2, final_text = $3, agent_id = $4, decided_at = now()
WHERE suggestion_id = $1 AND verdict IS NULL
RETURNING reply_id;

-- name: count_verdict
UPDATE replies SET accepted = accepted + ($2 = 'accepted')::int, edited = edited + ($2 = 'edited')::int,
    rejected = rejected + ($2 = 'rejected')::int
WHERE id = $1;

-- name: last_suggested
SELECT reply_ids, for_message FROM last_suggested WHERE conversation_id = $1;

-- name: set_last_suggested
INSERT INTO last_suggested (conversation_id, reply_ids, for_message) VALUES ($1, $2, $3)
ON CONFLICT (conversation_id) DO UPDATE SET reply_ids = $2, for_message = $3;

-- name: last_surfaced
SELECT article_ids FROM surfaced WHERE conversation_id = $1;

-- name: set_surfaced
INSERT INTO surfaced (conversation_id, article_ids) VALUES ($1, $2)
ON CONFLICT (conversation_id) DO UPDATE SET article_ids = $2, at = now();

-- name: insert_conversation
INSERT INTO conversations (conversation_id, channel, subject, customer_name) VALUES ($1, $2, $3, $4)
ON CONFLICT (conversation_id) DO NOTHING;

-- name: insert_conversations
-- A batch's arrivals in one statement, in order: the first arrival of a conversation wins.
INSERT INTO conversations (conversation_id, channel, subject, customer_name)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (conversation_id) DO NOTHING;

-- name: get_conversation
SELECT conversation_id, channel, subject, customer_name FROM conversations WHERE conversation_id = $1;

-- name: insert_message
INSERT INTO messages (conversation_id, message_id, sender, visibility, text, posted_at, suggestion_id)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
RETURNING true;

-- name: insert_messages_scheduled
-- A batch's messages in one statement (one known already is skipped), and each conversation with a
-- new message scheduled as schedule does, with no trigger ($8 the debounce, $9 the ceiling): once
-- per conversation, which within one transaction (one now()) is what once per message would do.
WITH added AS (
    INSERT INTO messages (conversation_id, message_id, sender, visibility, text, posted_at, suggestion_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
    ON CONFLICT DO NOTHING
    RETURNING conversation_id, message_id
), due AS (
    INSERT INTO pending (conversation_id, due_at, first_at, triggers)
    SELECT DISTINCT conversation_id, now() + make_interval(secs => $8), now(), '{}'::text[] FROM added
    ON CONFLICT (conversation_id) DO UPDATE SET
        due_at = LEAST(now() + make_interval(secs => $8), pending.first_at + make_interval(secs => $9)),
        triggers = ARRAY(SELECT DISTINCT t FROM unnest(pending.triggers || '{}'::text[]) t),
        version = pending.version + 1
)
SELECT conversation_id, message_id FROM added;

-- name: transcript
-- The latest $2 messages (all when $2 is null), in the order they were posted.
SELECT message_id, sender, text, vector, learned, suggestion_id FROM (
    SELECT message_id, sender, text, vector, learned, suggestion_id, posted_at FROM messages
    WHERE conversation_id = $1 ORDER BY posted_at DESC, message_id DESC LIMIT $2
) latest ORDER BY posted_at, message_id;

-- name: message_count
SELECT count(*) FROM messages WHERE conversation_id = $1;

-- name: set_message_vector
UPDATE messages SET vector = $3 WHERE conversation_id = $1 AND message_id = $2;

-- name: mark_learned
UPDATE messages SET learned = true WHERE conversation_id = $1 AND message_id = $2;

-- name: hold_conversations
-- work.assigned for a batch's conversations (each once) in one round trip, answered in input order.
-- The agent holds the conversation (again) and, on a transfer, the agent before no longer does. The
-- first time this agent holds it (the row is new: xmax is 0 for an inserted row, not for one updated
-- on conflict) its trigger is due at once if the conversation has messages (as schedule with no
-- debounce, $5 the ceiling), else kept for its first message (as keep_triggers).
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
        AS i(conversation_id, agent_id, previous_agent_id, trigger, n)
), let_go AS (
    INSERT INTO conversation_agents (conversation_id, agent_id, released_at)
    SELECT conversation_id, previous_agent_id, now() FROM input
    WHERE previous_agent_id IS NOT NULL AND previous_agent_id <> agent_id
    ON CONFLICT (conversation_id, agent_id) DO UPDATE SET released_at = now()
), held AS (
    INSERT INTO conversation_agents (conversation_id, agent_id)
    SELECT conversation_id, agent_id FROM input
    ON CONFLICT (conversation_id, agent_id) DO UPDATE SET released_at = NULL
    RETURNING conversation_id, xmax = 0 AS first
), seen AS (
    SELECT input.n, input.conversation_id, input.trigger, held.first,
        EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = input.conversation_id) AS written
    FROM input JOIN held USING (conversation_id)
), due AS (
    INSERT INTO pending (conversation_id, due_at, first_at, triggers)
    SELECT conversation_id, now(), now(), ARRAY[trigger] FROM seen WHERE first AND written
    ON CONFLICT (conversation_id) DO UPDATE SET
        due_at = LEAST(now(), pending.first_at + make_interval(secs => $5)),
        triggers = ARRAY(SELECT DISTINCT t FROM unnest(pending.triggers || EXCLUDED.triggers) t),
        version = pending.version + 1
), kept AS (
    INSERT INTO pending (conversation_id, due_at, triggers)
    SELECT conversation_id, 'infinity', ARRAY[trigger] FROM seen WHERE first AND NOT written
    ON CONFLICT (conversation_id) DO UPDATE SET
        triggers = ARRAY(SELECT DISTINCT t FROM unnest(pending.triggers || EXCLUDED.triggers) t), leased_until = NULL
)
SELECT first, written FROM seen ORDER BY n;

-- name: release_conversations
-- work.released, work.overflowed and conversation.ended for a batch's conversations (each once) in
-- one round trip, answered in input order. The agent (when given) no longer holds the conversation;
-- the trigger is due at once if the conversation has messages (as schedule with no debounce, $5 the
-- ceiling), else with `forget` the conversation's pending update is dropped.
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) WITH ORDINALITY
        AS i(conversation_id, agent_id, trigger, forget, n)
), released AS (
    INSERT INTO conversation_agents (conversation_id, agent_id, released_at)
    SELECT conversation_id, agent_id, now() FROM input WHERE agent_id IS NOT NULL
    ON CONFLICT (conversation_id, agent_id) DO UPDATE SET released_at = now()
), seen AS (
    SELECT n, conversation_id, trigger, forget,
        EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = input.conversation_id) AS written
    FROM input
), due AS (
    INSERT INTO pending (conversation_id, due_at, first_at, triggers)
    SELECT conversation_id, now(), now(), ARRAY[trigger] FROM seen WHERE written
    ON CONFLICT (conversation_id) DO UPDATE SET
        due_at = LEAST(now(), pending.first_at + make_interval(secs => $5)),
        triggers = ARRAY(SELECT DISTINCT t FROM unnest(pending.triggers || EXCLUDED.triggers) t),
        version = pending.version + 1
), forgotten AS (
    DELETE FROM pending WHERE conversation_id IN (SELECT conversation_id FROM seen WHERE forget AND NOT written)
)
SELECT written FROM seen ORDER BY n;

-- name: get_conversation_agent
SELECT agent_id, first_at, released_at FROM conversation_agents WHERE conversation_id = $1 AND agent_id = $2;

-- name: schedule
-- Trailing debounce with a ceiling: due $2 s from now, but no later than $3 s after the burst began.
INSERT INTO pending (conversation_id, due_at, first_at, triggers)
VALUES ($1, now() + make_interval(secs => $2), now(), $4)
ON CONFLICT (conversation_id) DO UPDATE SET
    due_at = LEAST(now() + make_interval(secs => $2), pending.first_at + make_interval(secs => $3)),
    triggers = ARRAY(SELECT DISTINCT t FROM unnest(pending.triggers || $4::text[]) t),
    version = pending.version + 1;

-- name: claim_pending
-- A lease, not a delete: if the process dies mid-way, the conversation is due again after it.
UPDATE pending SET leased_until = now() + interval '30 seconds'
WHERE conversation_id IN (
    SELECT conversation_id FROM pending
    WHERE due_at <= now() AND (leased_until IS NULL OR leased_until < now())
    ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING conversation_id, triggers, version;

-- name: next_due
-- Seconds until the next conversation not leased is due (triggers kept for a first message wait forever).
SELECT EXTRACT(EPOCH FROM min(due_at) - now()) FROM pending
WHERE (leased_until IS NULL OR leased_until < now()) AND due_at < 'infinity';

-- name: finish_pending
-- Done, unless messages arrived meanwhile: then it stays due, without the triggers just served.
WITH gone AS (DELETE FROM pending WHERE conversation_id = $1 AND version = $2 RETURNING 1)
UPDATE pending SET leased_until = NULL, triggers = ARRAY(SELECT t FROM unnest(triggers) t WHERE t <> ALL($3::text[]))
WHERE conversation_id = $1 AND NOT EXISTS (SELECT 1 FROM gone);

-- name: keep_triggers
-- Triggers that wait for the conversation's first message (which schedules the conversation again).
INSERT INTO pending (conversation_id, due_at, triggers) VALUES ($1, 'infinity', $2)
ON CONFLICT (conversation_id) DO UPDATE SET
    triggers = ARRAY(SELECT DISTINCT t FROM unnest(pending.triggers || $2::text[]) t), leased_until = NULL;

-- name: upsert_summary
INSERT INTO summaries (conversation_id, summary, entities, provider, message_count, intent, model, trigger)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (conversation_id) DO UPDATE SET summary = $2, entities = $3, provider = $4, message_count = $5,
    intent = $6, model = $7, trigger = $8, updated_at = now();

-- name: get_summary
SELECT summary, entities, provider, model, intent, trigger, message_count, updated_at FROM summaries
WHERE conversation_id = $1;

-- name: get_case_summary
SELECT conversation_id, draft, trigger, agent_id, provider, model, status, drafted_at, saved, saved_by, saved_at
FROM case_summaries WHERE conversation_id = $1;

-- name: upsert_case_summary
INSERT INTO case_summaries (conversation_id, draft, trigger, agent_id, provider, model)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (conversation_id) DO UPDATE SET draft = $2, trigger = $3, agent_id = $4, provider = $5, model = $6,
    status = 'draft', drafted_at = now();

-- name: save_case_summary
UPDATE case_summaries SET saved = $2, saved_by = $3, saved_at = now(), status = 'saved'
WHERE conversation_id = $1
RETURNING status;

-- name: flag_escalation
-- Each signal once per conversation: the ones flagged before are left as they are (not returned).
INSERT INTO escalations (conversation_id, signal, message_id)
SELECT $1, s, $3 FROM unnest($2::text[]) s
ON CONFLICT (conversation_id, signal) DO NOTHING
RETURNING signal;
