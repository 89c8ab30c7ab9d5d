-- name: ensure_agent
-- Every agent has its Home session from the first event that names it; one round trip.
WITH a AS (INSERT INTO agents (agent_id) VALUES ($1) ON CONFLICT (agent_id) DO NOTHING)
INSERT INTO sessions (agent_id, session_id, kind, title, icon) VALUES ($1, 'home', 'home', 'Home', 'Ho')
ON CONFLICT (agent_id, session_id) DO NOTHING;

-- name: insert_offer
INSERT INTO offers (offer_id, agent_id, conversation_id, channel, queue, title, conversation, status, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)
ON CONFLICT (offer_id) DO NOTHING
RETURNING offer_id;

-- name: get_offer
SELECT offer_id, agent_id, conversation_id, channel, queue, title, conversation, status, expires_at
FROM offers WHERE offer_id = $1 FOR UPDATE;

-- name: set_offer_status
UPDATE offers SET status = $2 WHERE offer_id = $1;

-- name: next_visitor_number
UPDATE agents SET visitor_counter = visitor_counter + 1 WHERE agent_id = $1 RETURNING visitor_counter;

-- name: count_open_sessions
SELECT count(*) FROM sessions WHERE agent_id = $1 AND status = 'open' AND kind <> 'home';

-- name: insert_session
INSERT INTO sessions (agent_id, session_id, kind, conversation_id, channel, title, icon, focused_tab)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
RETURNING session_id;

-- name: insert_tab
INSERT INTO tabs (agent_id, session_id, tab_id, kind, title, anchor, target)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: get_session
SELECT agent_id, session_id, kind, conversation_id, channel, title, icon, status, unread, focused_tab
FROM sessions WHERE agent_id = $1 AND session_id = $2 FOR UPDATE;

-- name: find_open_session_by_conversation
SELECT agent_id, session_id, kind, conversation_id, channel, title, icon, status, unread, focused_tab
FROM sessions WHERE conversation_id = $1 AND status = 'open';

-- name: close_session
UPDATE sessions SET status = 'closed', closed_at = now() WHERE agent_id = $1 AND session_id = $2 AND status = 'open';

-- name: set_focus
UPDATE agents SET focused_session = $2 WHERE agent_id = $1;

-- name: get_focus
SELECT focused_session FROM agents WHERE agent_id = $1;

-- name: set_presence
UPDATE agents SET presence = $2 WHERE agent_id = $1;

-- name: list_sessions
SELECT session_id, kind, conversation_id, channel, title, icon, status, unread, focused_tab, opened_at, closed_at,
       record, pane
FROM sessions WHERE agent_id = $1 AND (status = 'open' OR closed_at > now() - interval '1 day')
ORDER BY opened_at;

-- name: list_tabs
SELECT session_id, tab_id, kind, title, anchor, target FROM tabs WHERE agent_id = $1 ORDER BY opened_at;

-- name: list_pending_offers
SELECT offer_id, conversation_id, channel, queue, title, status, expires_at FROM offers
WHERE agent_id = $1 AND status IN ('pending', 'accepted') ORDER BY received_at;

-- name: bump_seq
-- Numbers an agent's events; the row lock orders concurrent transactions of one agent.
INSERT INTO agent_seq (agent_id, seq) VALUES ($1, $2)
ON CONFLICT (agent_id) DO UPDATE SET seq = agent_seq.seq + EXCLUDED.seq
RETURNING seq;

-- name: get_seq
SELECT seq FROM agent_seq WHERE agent_id = $1;

-- name: upsert_profile
INSERT INTO profiles (name, settings) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET settings = $2;

-- name: get_profile
SELECT p.name, p.settings FROM agents a JOIN profiles p ON p.name = a.profile WHERE a.agent_id = $1;

-- name: get_profile_by_name
SELECT name, settings FROM profiles WHERE name = $1;

-- name: list_profiles
SELECT name, settings FROM profiles ORDER BY name;

-- name: assign_profile
INSERT INTO agents (agent_id, profile) VALUES ($1, $2)
ON CONFLICT (agent_id) DO UPDATE SET profile = EXCLUDED.profile;

-- name: count_tabs
SELECT count(*) FROM tabs WHERE agent_id = $1 AND session_id = $2;

-- name: get_tab
SELECT tab_id, kind, title, anchor, target FROM tabs WHERE agent_id = $1 AND session_id = $2 AND tab_id = $3;

-- name: delete_tab
DELETE FROM tabs WHERE agent_id = $1 AND session_id = $2 AND tab_id = $3;

-- name: set_focused_tab
UPDATE sessions SET focused_tab = $3 WHERE agent_id = $1 AND session_id = $2;

-- name: get_draft
SELECT fields, version FROM drafts WHERE draft_key = $1 FOR UPDATE;

-- name: upsert_draft
INSERT INTO drafts (draft_key, agent_id, session_id, tab_id, conversation_id, fields, version)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (draft_key) DO UPDATE SET agent_id = $2, session_id = $3, fields = $6, version = $7, updated_at = now();

-- name: list_drafts
SELECT d.draft_key, d.session_id, d.tab_id, d.conversation_id, d.fields, d.version, d.updated_at
FROM drafts d
WHERE d.agent_id = $1
   OR d.conversation_id IN (SELECT conversation_id FROM sessions WHERE agent_id = $1 AND status = 'open');

-- name: retitle_session
UPDATE sessions SET title = $3, icon = $4, record = $5 WHERE agent_id = $1 AND session_id = $2;

-- name: bump_unread
UPDATE sessions SET unread = unread + 1 WHERE agent_id = $1 AND session_id = $2 RETURNING unread;

-- name: clear_unread
UPDATE sessions SET unread = 0 WHERE agent_id = $1 AND session_id = $2;

-- name: merge_pane
UPDATE sessions SET pane = pane || $3 WHERE agent_id = $1 AND session_id = $2 RETURNING pane;

-- name: upsert_assignment
INSERT INTO assignments (conversation_id, agent_id, channel, conversation) VALUES ($1, $2, $3, $4)
ON CONFLICT (conversation_id) DO UPDATE SET agent_id = $2, channel = $3, conversation = $4, assigned_at = now(),
    released = false;

-- name: get_assignment
SELECT conversation_id, agent_id, channel, conversation, released FROM assignments WHERE conversation_id = $1;

-- name: release_assignment
UPDATE assignments SET released = true WHERE conversation_id = $1 AND agent_id = $2;

-- name: reopen_session
UPDATE sessions SET status = 'open', closed_at = NULL WHERE agent_id = $1 AND session_id = $2 AND status = 'closed'
RETURNING session_id;

-- name: forget_app_tabs
DELETE FROM tabs WHERE agent_id = $1 AND session_id = $2 AND NOT anchor;
