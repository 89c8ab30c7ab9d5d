-- name: ensure_agent
-- Every agent has its Home session from the first event that names it; one round trip.
WITH a AS (INSERT INTO agents (agent_id) VALUES ($1) ON CONFLICT (agent_id) DO NOTHING)
INSERT INTO sessions (agent_id, session_id, kind, title, icon) VALUES ($1, 'home', 'home', 'Home', 'Ho')
ON CONFLICT (agent_id, session_id) DO NOTHING;

-- name: next_visitor_number
UPDATE agents SET visitor_counter = visitor_counter + 1 WHERE agent_id = $1 RETURNING visitor_counter;

-- name: set_focus
UPDATE agents SET focused_session = $2 WHERE agent_id = $1;

-- name: get_focus
SELECT focused_session FROM agents WHERE agent_id = $1;

-- name: get_seq
SELECT seq FROM agent_seq WHERE agent_id = $1;

-- name: get_offer
SELECT offer_id, agent_id, conversation_id, channel, expires_at, queue, title, conversation, status
FROM offers WHERE offer_id = $1 FOR UPDATE;

-- name: list_pending_offers
SELECT offer_id, agent_id, conversation_id, channel, expires_at, queue, title, conversation, status FROM offers
WHERE agent_id = $1 AND status IN ('pending', 'accepted') ORDER BY received_at;

-- name: get_session
SELECT agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab, record, pane,
       opened_at, closed_at, disposition, note, close_reason
FROM sessions WHERE agent_id = $1 AND session_id = $2 FOR UPDATE;

-- name: find_open_session_by_conversation
SELECT agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab, record, pane,
       opened_at, closed_at, disposition, note, close_reason
FROM sessions WHERE conversation_id = $1 AND status = 'open';

-- name: list_sessions
-- The agent's open sessions and those closed within a day, oldest first.
SELECT agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab, record, pane,
       opened_at, closed_at, disposition, note, close_reason
FROM sessions WHERE agent_id = $1 AND (status = 'open' OR closed_at > now() - interval '1 day')
ORDER BY opened_at;

-- name: list_open_conversation_sessions
-- Every agent's open conversation sessions (the supervisor overview), by agent, oldest first.
SELECT agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab, record, pane,
       opened_at, closed_at, disposition, note, close_reason
FROM sessions WHERE status = 'open' AND conversation_id IS NOT NULL
ORDER BY agent_id, opened_at, session_id;

-- name: count_open_sessions
SELECT count(*) FROM sessions WHERE agent_id = $1 AND status = 'open' AND kind <> 'home';

-- name: close_session
UPDATE sessions SET status = 'closed', closed_at = now(), disposition = $3, note = $4, close_reason = $5
WHERE agent_id = $1 AND session_id = $2 AND status = 'open'
RETURNING agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab, record,
          pane, opened_at, closed_at, disposition, note, close_reason;

-- name: retitle_session
UPDATE sessions SET title = $3, icon = $4, record = $5 WHERE agent_id = $1 AND session_id = $2;

-- name: set_focused_tab
UPDATE sessions SET focused_tab = $3 WHERE agent_id = $1 AND session_id = $2;

-- name: bump_unread
UPDATE sessions SET unread = unread + 1 WHERE agent_id = $1 AND session_id = $2 RETURNING unread;

-- name: clear_unread
UPDATE sessions SET unread = 0 WHERE agent_id = $1 AND session_id = $2;

-- name: insert_tab
INSERT INTO tabs (agent_id, session_id, tab_id, kind, title, anchor, target)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: get_tab
SELECT session_id, tab_id, kind, title, anchor, target FROM tabs
WHERE agent_id = $1 AND session_id = $2 AND tab_id = $3;

-- name: list_tabs
SELECT session_id, tab_id, kind, title, anchor, target FROM tabs WHERE agent_id = $1 ORDER BY opened_at;

-- name: count_tabs
SELECT count(*) FROM tabs WHERE agent_id = $1 AND session_id = $2;

-- name: delete_tab
DELETE FROM tabs WHERE agent_id = $1 AND session_id = $2 AND tab_id = $3;

-- name: forget_app_tabs
DELETE FROM tabs WHERE agent_id = $1 AND session_id = $2 AND NOT anchor;

-- name: get_draft
SELECT draft_key, agent_id, session_id, tab_id, conversation_id, fields, version, updated_at
FROM drafts WHERE draft_key = $1 FOR UPDATE;

-- name: upsert_draft
INSERT INTO drafts (draft_key, agent_id, session_id, tab_id, conversation_id, fields, version)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (draft_key) DO UPDATE SET agent_id = $2, session_id = $3, fields = $6, version = $7, updated_at = now();

-- name: list_drafts
-- The agent's drafts and those of the conversations in its open sessions.
SELECT d.draft_key, d.agent_id, d.session_id, d.tab_id, d.conversation_id, d.fields, d.version, d.updated_at
FROM drafts d
WHERE d.agent_id = $1
   OR d.conversation_id IN (SELECT conversation_id FROM sessions WHERE agent_id = $1 AND status = 'open');

-- name: get_assignment
SELECT conversation_id, agent_id, channel, conversation, released, queue FROM assignments WHERE conversation_id = $1;

-- name: list_assignments
SELECT conversation_id, agent_id, channel, conversation, released, queue FROM assignments
WHERE agent_id = $1 AND NOT released ORDER BY conversation_id;

-- name: release_assignment
-- Released if that agent still holds it; the work no longer waits either way.
WITH w AS (DELETE FROM waiting_work WHERE conversation_id = $1)
UPDATE assignments SET released = true WHERE conversation_id = $1 AND agent_id = $2;

-- name: upsert_profile
INSERT INTO profiles (name, settings) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET settings = $2;

-- name: assign_profile
INSERT INTO agents (agent_id, profile) VALUES ($1, $2)
ON CONFLICT (agent_id) DO UPDATE SET profile = EXCLUDED.profile;

-- name: get_profile
SELECT p.settings FROM agents a JOIN profiles p ON p.name = a.profile WHERE a.agent_id = $1;

-- name: list_profiles
SELECT name, settings FROM profiles ORDER BY name;

-- name: upsert_presences
-- The agents' presences as presence.v1 last announced them, one row per agent ($1 agents, $2 statuses,
-- $3 bases, $4 closed channels as JSON arrays, $5 colours, $6 sources, $7 times), taken in agent
-- order. An agent (with its Home) exists from its first presence on.
WITH p AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
        AS p (agent_id, status, base, closed, colour, source, since)
),
a AS (INSERT INTO agents (agent_id) SELECT agent_id FROM p ORDER BY agent_id ON CONFLICT (agent_id) DO NOTHING),
h AS (INSERT INTO sessions (agent_id, session_id, kind, title, icon)
      SELECT agent_id, 'home', 'home', 'Home', 'Ho' FROM p ORDER BY agent_id
      ON CONFLICT (agent_id, session_id) DO NOTHING)
INSERT INTO presence (agent_id, status, base, closed_channels, colour, source, since)
SELECT agent_id, status, base, closed::jsonb, colour, source, since FROM p ORDER BY agent_id
ON CONFLICT (agent_id) DO UPDATE SET status = EXCLUDED.status, base = EXCLUDED.base,
    closed_channels = EXCLUDED.closed_channels, colour = EXCLUDED.colour, source = EXCLUDED.source,
    since = EXCLUDED.since;

-- name: get_presence
SELECT agent_id, status, source, since, base, closed_channels, colour FROM presence WHERE agent_id = $1;

-- name: list_recent_messages
-- The newest $2 messages of each conversation, oldest first.
SELECT m.conversation_id, m.message_id, m.sender, m.text, m.time, m.sender_id, m.visibility, m.suggestion_id,
       m.command_id, m.ordinal
FROM unnest($1::text[]) AS c (conversation_id)
CROSS JOIN LATERAL (
    SELECT * FROM messages WHERE conversation_id = c.conversation_id ORDER BY ordinal DESC LIMIT $2
) m
ORDER BY m.conversation_id, m.ordinal;

-- name: list_messages_before
-- The newest $3 messages older than message $2 (the newest of all when $2 is null), oldest first;
-- none when $2 is not a message of the conversation.
SELECT conversation_id, message_id, sender, text, time, sender_id, visibility, suggestion_id, command_id, ordinal
FROM (
    SELECT * FROM messages
    WHERE conversation_id = $1
      AND ($2::text IS NULL OR ordinal < (SELECT ordinal FROM messages WHERE conversation_id = $1 AND message_id = $2))
    ORDER BY ordinal DESC LIMIT $3
) page
ORDER BY ordinal;

-- name: held_conversation
SELECT EXISTS (SELECT 1 FROM sessions WHERE agent_id = $1 AND conversation_id = $2);

-- name: upsert_conversations
-- What the arrivals said, one row per conversation ($1 ids, $2 channels, $3 titles, $4 priorities,
-- $5 arrival times); a repeated arrival updates all but the arrival time.
INSERT INTO conversations (conversation_id, channel, title, priority, arrived_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[]) ORDER BY 1
ON CONFLICT (conversation_id) DO UPDATE SET channel = EXCLUDED.channel, title = EXCLUDED.title,
    priority = EXCLUDED.priority;

-- name: forget_conversation
WITH w AS (DELETE FROM waiting_work WHERE conversation_id = $1),
     e AS (DELETE FROM escalations WHERE conversation_id = $1),
     p AS (DELETE FROM conversation_pane WHERE conversation_id = $1)
DELETE FROM conversations WHERE conversation_id = $1;

-- name: upsert_waiting_work
-- Waiting since it was first queued (a re-announced position or an offer keeps that time); a null
-- state keeps the current one (a new item waits).
INSERT INTO waiting_work (conversation_id, channel, queue, state, queued_at)
VALUES ($1, $2, $3, coalesce($4, 'waiting'), $5)
ON CONFLICT (conversation_id) DO UPDATE SET channel = $2, queue = $3, state = coalesce($4, waiting_work.state);

-- name: move_waiting_work
UPDATE waiting_work SET queue = $2 WHERE conversation_id = $1;

-- name: list_waiting_work
-- Waiting and offered work of the queues $1 (of all queues when null), the most urgent first.
SELECT w.conversation_id, w.channel, w.queue, w.state, w.queued_at, c.title, coalesce(c.priority, 0) AS priority
FROM waiting_work w LEFT JOIN conversations c USING (conversation_id)
WHERE $1::text[] IS NULL OR w.queue = ANY($1::text[])
ORDER BY coalesce(c.priority, 0) DESC, w.queued_at, w.conversation_id;

-- name: delete_dispositions
DELETE FROM dispositions;

-- name: insert_disposition
INSERT INTO dispositions (code, label, position) VALUES ($1, $2, $3);

-- name: list_dispositions
SELECT code, label FROM dispositions ORDER BY position;

-- name: insert_supervisor_action
INSERT INTO supervisor_actions (supervisor_id, agent_id, action, conversation_id, session_id, detail, time)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: list_supervisor_actions
-- The newest first, of one conversation ($1) or of all.
SELECT supervisor_id, agent_id, action, time, conversation_id, session_id, detail FROM supervisor_actions
WHERE $1::text IS NULL OR conversation_id = $1
ORDER BY action_id DESC LIMIT $2;

-- name: add_escalation
-- The signals seen so far for the conversation, sorted, without repeats.
INSERT INTO escalations (conversation_id, signals)
VALUES ($1, (SELECT jsonb_agg(DISTINCT v ORDER BY v) FROM jsonb_array_elements_text($2::jsonb) AS s (v)))
ON CONFLICT (conversation_id) DO UPDATE SET
    signals = (SELECT jsonb_agg(DISTINCT v ORDER BY v)
               FROM jsonb_array_elements_text(escalations.signals || EXCLUDED.signals) AS s (v)),
    updated_at = now()
RETURNING signals;

-- name: list_escalations
SELECT conversation_id, signals FROM escalations ORDER BY conversation_id;

-- Hot path (issue 13): one round trip per step of a conversation where several statements were.

-- name: bump_seqs
-- Numbers agents' events ($2[i] more for agent $1[i], $1 sorted): the row locks order concurrent
-- transactions of one agent, and are taken in $1's order, so two batches never deadlock on each
-- other's agents.
INSERT INTO agent_seq (agent_id, seq)
SELECT agent_id, n FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS b (agent_id, n, i) ORDER BY i
ON CONFLICT (agent_id) DO UPDATE SET seq = agent_seq.seq + EXCLUDED.seq
RETURNING agent_id, seq;

-- name: receive_offer
-- work.offered: the agent has its Home, the work shows as offered, the offer is recorded once;
-- returns the agent's profile settings ('{}' without one) and the offer's id when the offer is new,
-- no row otherwise. (An agent inserted here is not visible to the last SELECT: it has the default
-- profile.)
WITH a AS (INSERT INTO agents (agent_id) VALUES ($2) ON CONFLICT (agent_id) DO NOTHING),
     h AS (INSERT INTO sessions (agent_id, session_id, kind, title, icon) VALUES ($2, 'home', 'home', 'Home', 'Ho')
           ON CONFLICT (agent_id, session_id) DO NOTHING),
     w AS (INSERT INTO waiting_work (conversation_id, channel, queue, state, queued_at)
           VALUES ($3, $4, $5, 'offered', $10)
           ON CONFLICT (conversation_id) DO UPDATE SET channel = $4, queue = $5, state = 'offered'),
     o AS (INSERT INTO offers (offer_id, agent_id, conversation_id, channel, queue, title, conversation, status,
                               expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (offer_id) DO NOTHING
           RETURNING offer_id)
SELECT coalesce((SELECT p.settings FROM profiles p
                 WHERE p.name = coalesce((SELECT profile FROM agents WHERE agent_id = $2), 'default')), '{}'::jsonb)
           AS settings, o.offer_id
FROM o;

-- name: answer_offer
-- The agent's pending offer, not expired at $4, takes status $3; no row when there is none.
UPDATE offers SET status = $3
WHERE offer_id = $1 AND agent_id = $2 AND status = 'pending' AND expires_at > $4
RETURNING offer_id, agent_id, conversation_id, channel, expires_at, queue, title, conversation, status;

-- name: withdraw_offer
-- A pending or accepted offer is withdrawn; no row when there is none such.
UPDATE offers SET status = 'withdrawn' WHERE offer_id = $1 AND status IN ('pending', 'accepted')
RETURNING offer_id, agent_id, conversation_id, channel, expires_at, queue, title, conversation, status;

-- name: assign
-- work.assigned: the agent has its Home, its offer ($6) is assigned, the work no longer waits, the
-- assignment is recorded; returns what assist said, the escalation signals seen so far and the newest
-- $7 messages (oldest first), with the conversation's open session if there is one (its columns null
-- otherwise).
WITH a AS (INSERT INTO agents (agent_id) VALUES ($2) ON CONFLICT (agent_id) DO NOTHING),
     h AS (INSERT INTO sessions (agent_id, session_id, kind, title, icon) VALUES ($2, 'home', 'home', 'Home', 'Ho')
           ON CONFLICT (agent_id, session_id) DO NOTHING),
     o AS (UPDATE offers SET status = 'assigned' WHERE offer_id = $6),
     w AS (DELETE FROM waiting_work WHERE conversation_id = $1),
     s AS (INSERT INTO assignments (conversation_id, agent_id, channel, conversation, queue)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (conversation_id) DO UPDATE SET agent_id = $2, channel = $3, conversation = $4, queue = $5,
               assigned_at = now(), released = false)
SELECT (SELECT pane FROM conversation_pane WHERE conversation_id = $1) AS said,
       (SELECT signals FROM escalations WHERE conversation_id = $1) AS signals,
       (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.ordinal)
        FROM (SELECT conversation_id, message_id, sender, text, time, sender_id, visibility, suggestion_id,
                     command_id, ordinal
              FROM messages WHERE conversation_id = $1 ORDER BY ordinal DESC LIMIT $7) e) AS earlier,
       x.agent_id, x.session_id, x.kind, x.title, x.icon, x.conversation_id, x.channel, x.status, x.unread,
       x.focused_tab, x.record, x.pane, x.opened_at, x.closed_at, x.disposition, x.note, x.close_reason
FROM (VALUES (1)) AS one (n)
LEFT JOIN sessions x ON x.conversation_id = $1 AND x.status = 'open';

-- name: open_session
-- Reopen the closed session or open a new one with its anchor tab ($8: kind $9, target $10, title $11);
-- the anchor has the session's focus, the session the agent's; true when it was reopened.
WITH r AS (UPDATE sessions SET status = 'open', closed_at = NULL, disposition = NULL, note = NULL,
               close_reason = NULL, focused_tab = $8
           WHERE agent_id = $1 AND session_id = $2 AND status = 'closed'
           RETURNING session_id),
     i AS (INSERT INTO sessions (agent_id, session_id, kind, conversation_id, channel, title, icon, focused_tab)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM r)
           ON CONFLICT DO NOTHING
           RETURNING session_id),
     t AS (INSERT INTO tabs (agent_id, session_id, tab_id, kind, title, anchor, target)
           SELECT $1, $2, $8, $9, $11, true, $10 FROM i),
     f AS (UPDATE agents SET focused_session = $2 WHERE agent_id = $1)
SELECT EXISTS (SELECT 1 FROM r);

-- name: close_and_unfocus
-- close_session, and Home takes the agent's focus if the closed session had it (`unfocused`).
WITH c AS (UPDATE sessions SET status = 'closed', closed_at = now(), disposition = $3, note = $4, close_reason = $5
           WHERE agent_id = $1 AND session_id = $2 AND status = 'open'
           RETURNING *),
     f AS (UPDATE agents SET focused_session = 'home'
           WHERE agent_id = $1 AND focused_session = $2 AND EXISTS (SELECT 1 FROM c)
           RETURNING agent_id)
SELECT agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab, record, pane,
       opened_at, closed_at, disposition, note, close_reason, EXISTS (SELECT 1 FROM f) AS unfocused
FROM c;

-- name: post_message
-- The message as the conversation's next ordinal, returned with the open session holding the
-- conversation (its columns null when none) and that agent's focus; no row when the message was
-- stored already (same message_id).
WITH m AS (
    INSERT INTO messages (conversation_id, message_id, ordinal, sender, sender_id, visibility, text, time,
                          suggestion_id, command_id)
    SELECT $1, $2, coalesce(max(ordinal), 0) + 1, $3, $4, $5, $6, $7, $8, $9 FROM messages WHERE conversation_id = $1
    ON CONFLICT (conversation_id, message_id) DO NOTHING
    RETURNING ordinal
)
SELECT m.ordinal, a.focused_session AS focus,
       x.agent_id, x.session_id, x.kind, x.title, x.icon, x.conversation_id, x.channel, x.status, x.unread,
       x.focused_tab, x.record, x.pane, x.opened_at, x.closed_at, x.disposition, x.note, x.close_reason
FROM m
LEFT JOIN sessions x ON x.conversation_id = $1 AND x.status = 'open'
LEFT JOIN agents a ON a.agent_id = x.agent_id;

-- name: merge_open_pane
-- Merge $2 into the pane of the open session holding conversation $1 (and, when $3, into the
-- conversation's own); returns that session with its whole pane, its agent's profile settings and
-- the kind of its focused tab; no row when no session holds the conversation.
WITH c AS (INSERT INTO conversation_pane (conversation_id, pane) SELECT $1, $2 WHERE $3
           ON CONFLICT (conversation_id) DO UPDATE SET pane = conversation_pane.pane || EXCLUDED.pane,
               updated_at = now()),
     s AS (UPDATE sessions SET pane = pane || $2 WHERE conversation_id = $1 AND status = 'open'
           RETURNING agent_id, session_id, kind, title, icon, conversation_id, channel, status, unread, focused_tab,
                     record, pane, opened_at, closed_at, disposition, note, close_reason)
SELECT s.*,
       (SELECT p.settings FROM agents a JOIN profiles p ON p.name = a.profile WHERE a.agent_id = s.agent_id)
           AS settings,
       (SELECT t.kind FROM tabs t
        WHERE t.agent_id = s.agent_id AND t.session_id = s.session_id AND t.tab_id = s.focused_tab) AS focused_kind
FROM s;
