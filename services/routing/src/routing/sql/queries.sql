-- routing's named queries (shared.db.Queries). Each `RETURNING` of a work item lists the columns of
-- store.WorkItem; each of an offer those of store.Offer; each of an agent's ledger store.Capacity.

-- name: list_channels
SELECT name, exclusive FROM channels ORDER BY name;

-- name: list_queues
SELECT name, channels, assignment_method, allowed_presences, priority, offer_timeout_s, skill_matching,
       closest_after_s, operating_hours, overflow, prioritisation, preferred_wait_s, service_level_s
FROM queues ORDER BY name;

-- name: list_rules
SELECT position, name, queue, conditions FROM rules ORDER BY position;

-- name: list_default_queues
SELECT channel, queue FROM default_queues ORDER BY channel;

-- name: find_config_document
SELECT document FROM config_applied ORDER BY id DESC LIMIT 1;

-- name: delete_other_channels
DELETE FROM channels WHERE NOT (name = ANY($1::text[]));

-- name: upsert_channel
INSERT INTO channels (name, exclusive) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET exclusive = EXCLUDED.exclusive;

-- name: delete_other_queues
DELETE FROM queues WHERE NOT (name = ANY($1::text[]));

-- name: upsert_queue
INSERT INTO queues (name, channels, assignment_method, allowed_presences, priority, offer_timeout_s, skill_matching,
                    closest_after_s, operating_hours, overflow, prioritisation, preferred_wait_s, service_level_s)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (name) DO UPDATE SET channels = EXCLUDED.channels, assignment_method = EXCLUDED.assignment_method,
    allowed_presences = EXCLUDED.allowed_presences, priority = EXCLUDED.priority,
    offer_timeout_s = EXCLUDED.offer_timeout_s, skill_matching = EXCLUDED.skill_matching,
    closest_after_s = EXCLUDED.closest_after_s, operating_hours = EXCLUDED.operating_hours,
    overflow = EXCLUDED.overflow, prioritisation = EXCLUDED.prioritisation,
    preferred_wait_s = EXCLUDED.preferred_wait_s, service_level_s = EXCLUDED.service_level_s;

-- name: delete_rules
DELETE FROM rules;

-- name: insert_rule
INSERT INTO rules (position, name, queue, conditions) VALUES ($1, $2, $3, $4);

-- name: delete_default_queues
DELETE FROM default_queues;

-- name: insert_default_queue
INSERT INTO default_queues (channel, queue) VALUES ($1, $2);

-- name: unconfigure_other_agents
UPDATE agents SET configured = false WHERE NOT (agent_id = ANY($1::text[]));

-- name: upsert_agent_profile
INSERT INTO agents (agent_id, configured, queues, auto_accept, limits, exclusive, skills)
VALUES ($1, true, $2, $3, $4, $5, $6)
ON CONFLICT (agent_id) DO UPDATE SET configured = true, queues = EXCLUDED.queues, auto_accept = EXCLUDED.auto_accept,
    limits = EXCLUDED.limits, exclusive = EXCLUDED.exclusive, skills = EXCLUDED.skills;

-- name: insert_config_applied
INSERT INTO config_applied (source, document) VALUES ($1, $2);

-- name: lock_presence
SELECT presence, closed_channels FROM agents WHERE agent_id = $1 FOR UPDATE;

-- name: upsert_presence
-- No row when the change is older than the one held.
INSERT INTO agents (agent_id, presence, presence_at, closed_channels) VALUES ($1, $2, $3, $4)
ON CONFLICT (agent_id) DO UPDATE SET presence = EXCLUDED.presence, presence_at = EXCLUDED.presence_at,
    closed_channels = EXCLUDED.closed_channels
WHERE agents.presence_at IS NULL OR agents.presence_at <= EXCLUDED.presence_at
RETURNING agent_id;

-- name: insert_work
INSERT INTO work_items (conversation_id, channel, queue, priority, status, arrival, enqueued_at, required_skills)
VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)
ON CONFLICT (conversation_id) DO NOTHING
RETURNING conversation_id;

-- name: queue_depth
SELECT count(*) FROM work_items WHERE queue = $1 AND status = 'queued';

-- name: get_queue_figures
-- Observed handle times and the figures the periodic pass refreshes; no row for an unknown queue.
SELECT COALESCE(s.handled, 0) AS handled, COALESCE(s.handle_seconds, 0) AS handle_seconds,
       COALESCE(s.staffed_slots, 0) AS staffed_slots, COALESCE(s.arrivals_per_s, 0) AS arrivals_per_s
FROM queues q LEFT JOIN queue_stats s ON s.queue = q.name WHERE q.name = $1;

-- name: refresh_queue_figures
INSERT INTO queue_stats (queue, staffed_slots, arrivals_per_s, refreshed_at)
SELECT q.name,
       (SELECT COALESCE(sum((a.limits->>ch)::int), 0) FROM agents a, unnest(q.channels) ch
         WHERE a.configured AND q.name = ANY(a.queues) AND a.presence = ANY(q.allowed_presences)),
       (SELECT count(*) FROM work_items w WHERE w.queue = q.name AND w.enqueued_at > now() - interval '15 minutes')
           / 900.0,
       now()
FROM queues q
ON CONFLICT (queue) DO UPDATE SET staffed_slots = EXCLUDED.staffed_slots, arrivals_per_s = EXCLUDED.arrivals_per_s,
    refreshed_at = EXCLUDED.refreshed_at;

-- name: record_handle_time
INSERT INTO queue_stats (queue, handled, handle_seconds) VALUES ($1, 1, $2)
ON CONFLICT (queue) DO UPDATE SET handled = queue_stats.handled + 1,
    handle_seconds = queue_stats.handle_seconds + EXCLUDED.handle_seconds;

-- name: list_waiting_work
SELECT conversation_id, channel, queue, priority, enqueued_at, passed_by, arrival, required_skills
FROM work_items WHERE status = 'queued'
ORDER BY enqueued_at, conversation_id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: list_waiting_channels
SELECT DISTINCT channel FROM work_items WHERE status = 'queued' ORDER BY channel;

-- name: list_candidate_agents
-- Agents in an allowed presence with at least one free unit in a channel that has waiting work.
SELECT agent_id, presence, queues, auto_accept, limits, exclusive, used, total_used, exclusive_held, idle_since,
       closed_channels, skills, last_assigned_at
FROM agents
WHERE configured AND presence = ANY($1::text[]) AND NOT exclusive_held
  AND EXISTS (SELECT 1 FROM unnest($2::text[]) ch
              WHERE COALESCE((used->>ch)::int, 0) < COALESCE((limits->>ch)::int, 0)
                AND NOT (ch = ANY(closed_channels)))
ORDER BY idle_since, agent_id
LIMIT $3;

-- name: list_agents_by_id
SELECT agent_id, presence, queues, auto_accept, limits, exclusive, used, total_used, exclusive_held, idle_since,
       closed_channels, skills, last_assigned_at
FROM agents WHERE configured AND agent_id = ANY($1::text[])
ORDER BY agent_id;

-- name: find_agent
SELECT agent_id, presence, queues, auto_accept, limits, exclusive, used, total_used, exclusive_held, idle_since,
       closed_channels, skills, last_assigned_at
FROM agents WHERE agent_id = $1;

-- name: reserve_capacity
UPDATE agents SET
    used = jsonb_set(used, ARRAY[$2::text], to_jsonb(COALESCE((used->>$2)::int, 0) + 1)),
    total_used = total_used + 1,
    exclusive_held = exclusive_held OR ($2 = ANY(exclusive)),
    idle_since = now(),
    last_assigned_at = now()
WHERE agent_id = $1
  AND presence = ANY($3::text[])
  AND NOT ($2 = ANY(closed_channels))
  AND COALESCE((used->>$2)::int, 0) + 1 <= COALESCE((limits->>$2)::int, 0)
  AND NOT exclusive_held
  AND (NOT ($2 = ANY(exclusive)) OR total_used = 0)
RETURNING agent_id, used, limits, total_used, exclusive_held;

-- name: release_capacity
UPDATE agents SET
    used = jsonb_set(used, ARRAY[$2::text], to_jsonb(GREATEST(COALESCE((used->>$2)::int, 0) - 1, 0))),
    total_used = GREATEST(total_used - 1, 0),
    exclusive_held = exclusive_held AND NOT ($2 = ANY(exclusive)),
    idle_since = now()
WHERE agent_id = $1 AND COALESCE((used->>$2)::int, 0) > 0
RETURNING agent_id, used, limits, total_used, exclusive_held;

-- name: find_work
SELECT conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed, assigned_at
FROM work_items WHERE conversation_id = $1 FOR UPDATE;

-- name: mark_offered
UPDATE work_items SET status = 'offered', agent_id = $2, offer_id = $3, attempts = attempts + 1, updated_at = now()
WHERE conversation_id = $1 AND status = 'queued';

-- name: mark_assigned
-- Answered from its queue: logged in assignments with how long it waited since it arrived.
WITH w AS (
    UPDATE work_items SET status = 'assigned', agent_id = $2, offer_id = $3, assigned_at = now(), updated_at = now()
    WHERE conversation_id = $1 AND status = ANY($4::text[])
    RETURNING conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed,
              assigned_at, enqueued_at
), logged AS (
    INSERT INTO assignments (conversation_id, queue, agent_id, waited_s, at)
    SELECT conversation_id, queue, agent_id, GREATEST(extract(epoch FROM assigned_at - enqueued_at)::float8, 0),
           assigned_at
    FROM w
)
SELECT conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed, assigned_at
FROM w;

-- name: requeue_work
UPDATE work_items SET status = 'queued', agent_id = NULL, offer_id = NULL,
    passed_by = array_append(passed_by, $2), failed_offers = failed_offers + 1, updated_at = now()
WHERE conversation_id = $1 AND status = 'offered' AND offer_id = $3
RETURNING conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed, assigned_at;

-- name: move_work
UPDATE work_items SET queue = $2, overflowed = true, updated_at = now()
WHERE conversation_id = $1 AND status = 'queued';

-- name: mark_overflowed
UPDATE work_items SET overflowed = true, updated_at = now() WHERE conversation_id = $1;

-- name: close_work
UPDATE work_items SET status = 'closed', updated_at = now()
WHERE conversation_id = $1 AND status = 'assigned' AND agent_id = $2
RETURNING conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed, assigned_at;

-- name: end_work
-- The conversation ended before anyone took it (waiting or offered).
UPDATE work_items SET status = 'ended', ended_at = now(), updated_at = now()
WHERE conversation_id = $1 AND status IN ('queued', 'offered');

-- name: transfer_to_agent
UPDATE work_items SET status = 'assigned', agent_id = $2, queue = $3, offer_id = NULL, assigned_at = now(),
    transfers = transfers + 1, updated_at = now()
WHERE conversation_id = $1
RETURNING conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed, assigned_at;

-- name: transfer_to_queue
-- Back in a queue, keeping its original place in line (the customer has waited already).
UPDATE work_items SET status = 'queued', agent_id = NULL, offer_id = NULL, queue = $2, transfers = transfers + 1,
    updated_at = now()
WHERE conversation_id = $1;

-- name: insert_offer
INSERT INTO offers (offer_id, conversation_id, agent_id, channel, queue, status, expires_at)
VALUES ($1, $2, $3, $4, $5, 'pending', $6);

-- name: accept_offer
UPDATE offers SET status = 'accepted'
WHERE offer_id = $1 AND agent_id = $2 AND status = 'pending' AND expires_at > $3
RETURNING offer_id, conversation_id, agent_id, channel, queue, expires_at;

-- name: end_offer
UPDATE offers SET status = $3
WHERE offer_id = $1 AND agent_id = $2 AND status = 'pending'
RETURNING offer_id, conversation_id, agent_id, channel, queue, expires_at;

-- name: list_expired_offers
SELECT offer_id, conversation_id, agent_id, channel, queue, expires_at FROM offers
WHERE status = 'pending' AND expires_at <= $1
ORDER BY expires_at, offer_id LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: insert_decision
INSERT INTO decisions (conversation_id, kind, detail) VALUES ($1, $2, $3);

-- name: list_decisions
SELECT conversation_id, kind, detail, at FROM decisions WHERE conversation_id = $1 ORDER BY id;

-- name: try_lock_positions
-- One replica announces positions at a time (released at the end of the transaction).
SELECT pg_try_advisory_xact_lock(hashtext('routing.positions'));

-- name: list_position_changes
WITH ranked AS (
    SELECT conversation_id, channel, queue, last_position,
           row_number() OVER (PARTITION BY queue ORDER BY enqueued_at, conversation_id) AS position
    FROM work_items WHERE status = 'queued'
)
SELECT conversation_id, channel, queue, position::int AS position FROM ranked
-- any move in the first ten places, else a move of at least a tenth: customers far back are not
-- told every step of a draining backlog
WHERE last_position IS DISTINCT FROM position
  AND (position <= 10 OR last_position IS NULL OR abs(last_position - position) * 10 >= last_position)
ORDER BY queue, position
LIMIT $1;

-- name: set_last_positions
UPDATE work_items w SET last_position = v.position
FROM unnest($1::text[], $2::int[]) AS v(conversation_id, position)
WHERE w.conversation_id = v.conversation_id;

-- name: positions_of
WITH ranked AS (
    SELECT conversation_id,
           row_number() OVER (PARTITION BY queue ORDER BY enqueued_at, conversation_id) AS position
    FROM work_items WHERE status = 'queued' AND queue = ANY($2::text[])
)
SELECT conversation_id, position::int AS position FROM ranked WHERE conversation_id = ANY($1::text[]);

-- --- reads for the supervisor view and the agent's Home (GET /queues, /agents, /work) ----------

-- name: list_queue_activity
-- Per configured queue: what waits now, what happened since $1, and its wait-estimate figures.
WITH waiting AS (
    SELECT queue, count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'offered') AS offered_now, min(enqueued_at) AS oldest_waiting_at
    FROM work_items WHERE status IN ('queued', 'offered') GROUP BY queue
)
SELECT q.name AS queue, COALESCE(w.queued, 0) AS queued, COALESCE(w.offered_now, 0) AS offered_now,
       w.oldest_waiting_at,
       (SELECT count(*) FROM offers o WHERE o.queue = q.name AND o.created_at > $1) AS offered,
       (SELECT count(*) FROM assignments a WHERE a.queue = q.name AND a.at > $1) AS assigned,
       (SELECT count(*) FROM assignments a
         WHERE a.queue = q.name AND a.at > $1 AND a.waited_s <= q.service_level_s) AS assigned_in_time,
       (SELECT count(*) FROM work_items e
         WHERE e.queue = q.name AND e.status = 'ended' AND e.ended_at > $1) AS abandoned,
       (SELECT count(*) FROM decisions d
         WHERE d.kind = 'overflowed' AND d.at > $1 AND d.detail->>'from' = q.name) AS overflowed,
       q.service_level_s,
       COALESCE(s.handled, 0) AS handled, COALESCE(s.handle_seconds, 0) AS handle_seconds,
       COALESCE(s.staffed_slots, 0) AS staffed_slots, COALESCE(s.arrivals_per_s, 0) AS arrivals_per_s
FROM queues q LEFT JOIN waiting w ON w.queue = q.name LEFT JOIN queue_stats s ON s.queue = q.name
ORDER BY q.name;

-- name: prune_assignments
DELETE FROM assignments WHERE at < $1;

-- name: list_agents
SELECT agent_id, presence, queues, auto_accept, limits, exclusive, used, total_used, exclusive_held, idle_since,
       closed_channels, skills, last_assigned_at
FROM agents WHERE configured
ORDER BY agent_id;

-- name: list_open_work
-- Waiting, offered and assigned work, oldest arrival first.
SELECT conversation_id, channel, queue, status, agent_id, arrival, priority, enqueued_at, assigned_at, overflowed,
       transfers
FROM work_items WHERE status IN ('queued', 'offered', 'assigned')
ORDER BY enqueued_at, conversation_id
LIMIT $1;
