-- name: lock_agent
-- The agent's row, locked; a first sight creates it (the outer SELECT's snapshot does not see the
-- row the CTE inserts, hence the UNION). No row: another transaction created it meanwhile (retry).
WITH created AS (
    INSERT INTO agents (agent_id) VALUES ($1) ON CONFLICT DO NOTHING
    RETURNING status, base, manual, profile, status_before, manual_before, disconnected_at, idle, closed_channels
), known AS (
    SELECT status, base, manual, profile, status_before, manual_before, disconnected_at, idle, closed_channels
    FROM agents WHERE agent_id = $1 FOR UPDATE
)
SELECT * FROM known UNION ALL SELECT * FROM created;

-- name: lock_agents
-- A batch's agents ($1, sorted) in one round trip: routing's capacity for those it names ($2..$5,
-- sorted; written only when it differs), then every agent's row locked in agent order as lock_agent
-- gives it (a first sight creates it), with its profile's automatic rules (null: the defaults). Fewer
-- rows than agents: another transaction created one meanwhile (retry).
WITH loads AS (
    INSERT INTO capacity (agent_id, total_used, is_full, exclusive_held)
    SELECT * FROM unnest($2::text[], $3::int[], $4::bool[], $5::bool[]) ORDER BY 1
    ON CONFLICT (agent_id) DO UPDATE SET
        total_used = EXCLUDED.total_used, is_full = EXCLUDED.is_full, exclusive_held = EXCLUDED.exclusive_held
    WHERE (capacity.total_used, capacity.is_full, capacity.exclusive_held)
        IS DISTINCT FROM (EXCLUDED.total_used, EXCLUDED.is_full, EXCLUDED.exclusive_held)
), created AS (
    INSERT INTO agents (agent_id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING
    RETURNING agent_id, status, base, manual, profile, status_before, manual_before, disconnected_at, idle,
        closed_channels
), known AS (
    SELECT agent_id, status, base, manual, profile, status_before, manual_before, disconnected_at, idle,
        closed_channels
    FROM agents WHERE agent_id = ANY($1::text[]) ORDER BY agent_id FOR UPDATE
), agent AS (
    SELECT * FROM known UNION ALL SELECT * FROM created
)
SELECT agent.*, profiles.rules FROM agent LEFT JOIN profiles ON profiles.name = agent.profile;

-- name: set_status
-- The status's base and colour are those of the configured status of that name, else the status is
-- a base presence (its own base, no colour). With a source ($4) the change joins the history.
WITH configured AS (SELECT base, colour FROM statuses WHERE name = $2),
resolved AS (
    SELECT COALESCE((SELECT base FROM configured), $2) AS base, (SELECT colour FROM configured) AS colour
), changed AS (
    UPDATE agents SET status = $2, base = (SELECT base FROM resolved), manual = $3, updated_at = now()
    WHERE agent_id = $1
), noted AS (
    INSERT INTO history (agent_id, status, previous, source, reason)
    SELECT $1, $2, $5, $4, $6 WHERE $4::text IS NOT NULL
)
SELECT base, colour FROM resolved;

-- name: set_statuses
-- A batch's status changes, in order ($1..$6 per change): each agent ends with its last one, every
-- change with a source joins the history in order. Statuses resolve as in set_status; answers each
-- change's base and colour, in order.
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY
        AS i(agent_id, status, manual, previous, source, reason, n)
), resolved AS (
    SELECT input.*, COALESCE(s.base, input.status) AS base, s.colour
    FROM input LEFT JOIN statuses s ON s.name = input.status
), last AS (
    SELECT DISTINCT ON (agent_id) agent_id, status, base, manual FROM resolved ORDER BY agent_id, n DESC
), changed AS (
    UPDATE agents SET status = last.status, base = last.base, manual = last.manual, updated_at = now()
    FROM last WHERE agents.agent_id = last.agent_id
), noted AS (
    INSERT INTO history (agent_id, status, previous, source, reason)
    SELECT agent_id, status, previous, source, reason FROM resolved WHERE source IS NOT NULL ORDER BY n
)
SELECT base, colour FROM resolved ORDER BY n;

-- name: remember_before
UPDATE agents SET status_before = $2, manual_before = $3, disconnected_at = $4 WHERE agent_id = $1;

-- name: set_idle
UPDATE agents SET idle = $2 WHERE agent_id = $1;

-- name: set_closed_channels
UPDATE agents SET closed_channels = $2 WHERE agent_id = $1;

-- name: list_history
SELECT status, previous, source, reason, at FROM history WHERE agent_id = $1 ORDER BY id DESC LIMIT $2;

-- name: find_load
SELECT total_used, is_full, exclusive_held FROM capacity WHERE agent_id = $1;

-- name: device_seen
INSERT INTO devices (agent_id, device_id, signed_in, last_seen, idle_s, lost) VALUES ($1, $2, true, $4, $3, false)
ON CONFLICT (agent_id, device_id) DO UPDATE SET signed_in = true, last_seen = $4, idle_s = $3, lost = false;

-- name: sign_out_device
UPDATE devices SET signed_in = false WHERE agent_id = $1 AND device_id = $2;

-- name: list_devices
SELECT agent_id, device_id, signed_in, last_seen, idle_s, lost FROM devices WHERE agent_id = $1 ORDER BY device_id;

-- name: list_live_devices
SELECT agent_id, device_id, signed_in, last_seen, idle_s, lost FROM devices
WHERE agent_id = $1 AND signed_in AND NOT lost
ORDER BY device_id;

-- name: list_silent_devices
-- Devices silent for longer than the timeout at `now`; `grace_from` keeps a restart from counting
-- its own downtime.
SELECT agent_id, device_id, signed_in, last_seen, idle_s, lost FROM devices
WHERE signed_in AND NOT lost AND GREATEST(last_seen, $2) < $3::timestamptz - make_interval(secs => $1)
ORDER BY agent_id, device_id
FOR UPDATE SKIP LOCKED;

-- name: mark_device_lost
UPDATE devices SET lost = true WHERE agent_id = $1 AND device_id = $2;

-- name: upsert_status
INSERT INTO statuses (name, base, colour, custom) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET base = $2, colour = $3, custom = $4;

-- name: list_statuses
SELECT name, base, colour, custom FROM statuses ORDER BY name;

-- name: upsert_profile
INSERT INTO profiles (name, rules) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET rules = $2;

-- name: find_profile_rules
SELECT rules FROM profiles WHERE name = $1;

-- name: assign_agent
INSERT INTO agents (agent_id, profile, team) VALUES ($1, $2, $3)
ON CONFLICT (agent_id) DO UPDATE SET profile = $2, team = $3;

-- name: find_presence
SELECT agent_id, status, base, manual, team, profile, closed_channels, idle, updated_at
FROM agents WHERE agent_id = $1;

-- name: list_team
SELECT agent_id, status, base, manual, closed_channels, updated_at FROM agents WHERE team = $1 ORDER BY agent_id;

-- name: list_agents
SELECT a.agent_id, a.status, a.base, a.updated_at, a.closed_channels, a.team, h.source
FROM agents a
LEFT JOIN LATERAL (SELECT source FROM history WHERE history.agent_id = a.agent_id ORDER BY id DESC LIMIT 1) h ON true
ORDER BY a.agent_id;
