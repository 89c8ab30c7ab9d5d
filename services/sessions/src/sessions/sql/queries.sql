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
SELECT session_id, kind, conversation_id, channel, title, icon, status, unread, focused_tab, opened_at, closed_at
FROM sessions WHERE agent_id = $1 AND (status = 'open' OR closed_at > now() - interval '1 day')
ORDER BY opened_at;

-- name: list_tabs
SELECT session_id, tab_id, kind, title, anchor, target FROM tabs WHERE agent_id = $1 ORDER BY opened_at;

-- name: list_pending_offers
SELECT offer_id, conversation_id, channel, queue, title, status, expires_at FROM offers
WHERE agent_id = $1 AND status IN ('pending', 'accepted') ORDER BY received_at;
