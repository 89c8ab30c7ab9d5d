-- name: ensure_agent
INSERT INTO agents (agent_id) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: lock_agent
SELECT status, base, manual, profile, status_before, manual_before, disconnected_at, idle, closed_channels
FROM agents WHERE agent_id = $1 FOR UPDATE;

-- name: set_status
UPDATE agents SET status = $2, base = $3, manual = $4, updated_at = now() WHERE agent_id = $1;

-- name: remember_before
UPDATE agents SET status_before = $2, manual_before = $3, disconnected_at = $4 WHERE agent_id = $1;

-- name: set_idle
UPDATE agents SET idle = $2 WHERE agent_id = $1;

-- name: set_closed_channels
UPDATE agents SET closed_channels = $2 WHERE agent_id = $1;

-- name: add_history
INSERT INTO history (agent_id, status, previous, source, reason) VALUES ($1, $2, $3, $4, $5);

-- name: list_history
SELECT status, previous, source, reason, at FROM history WHERE agent_id = $1 ORDER BY id DESC LIMIT $2;

-- name: find_load
SELECT total_used, is_full, exclusive_held FROM capacity WHERE agent_id = $1;

-- name: upsert_load
INSERT INTO capacity (agent_id, total_used, is_full, exclusive_held) VALUES ($1, $2, $3, $4)
ON CONFLICT (agent_id) DO UPDATE SET total_used = $2, is_full = $3, exclusive_held = $4;

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
