-- routing's named queries (shared.db.Queries). Each `RETURNING` of a work item lists the columns of
-- store.WorkItem; each of an offer those of store.Offer; each of an agent's ledger store.Capacity.
-- A statement about one work item or offer, named by its key, compares the status as an expression
-- (`status || '' = 'pending'`): no partial index's condition is then met, and the planner takes the
-- key. With the plain condition it could read a whole partial index (every pending offer, every open
-- item) when its statistics were gathered before a burst and still called that index tiny.

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

-- name: find_config_version
-- Every configuration change adds a row to config_applied; ids are never reused, even after a rollback.
SELECT COALESCE(max(id), 0)::text FROM config_applied;

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

-- name: update_presence
-- A newer change for a known agent, returning what was held before it. The sub-select locks the row
-- first, so it reads the version this statement replaces. No row: unknown agent, or an older change.
UPDATE agents a SET presence = $2, presence_at = $3, closed_channels = $4
FROM (SELECT agent_id, presence, closed_channels, presence_at FROM agents WHERE agent_id = $1 FOR UPDATE) before
WHERE a.agent_id = before.agent_id AND (before.presence_at IS NULL OR before.presence_at <= $3)
RETURNING before.presence, before.closed_channels,
          (SELECT COALESCE(max(id), 0)::text FROM config_applied) AS config_version;

-- name: update_presences
-- update_presence for a batch of agents ($1 agents, $2 presences, $3 times, $4 closed channels, each
-- a JSON array as text), one change per agent; the rows are locked in agent order. Agents without a
-- row returned: unknown, or an older change.
WITH v AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS v(agent_id, presence, at, closed)
)
UPDATE agents a SET presence = v.presence, presence_at = v.at,
    closed_channels = ARRAY(SELECT jsonb_array_elements_text(v.closed::jsonb))
FROM v, (SELECT agent_id, presence, closed_channels, presence_at FROM agents
         WHERE agent_id = ANY($1::text[]) ORDER BY agent_id FOR UPDATE) before
WHERE a.agent_id = v.agent_id AND before.agent_id = v.agent_id
  AND (before.presence_at IS NULL OR before.presence_at <= v.at)
RETURNING a.agent_id, before.presence, before.closed_channels,
          (SELECT COALESCE(max(id), 0)::text FROM config_applied) AS config_version;

-- name: lock_agents
-- First in a batch: the agents it is about ($1), and those offered or holding its conversations' work
-- ($2), locked in agent order. Its handlers then lock them one by one in the batch's order, and two
-- transactions that did that with the same agents would each hold one and wait for the other.
-- (The work items by their keys: `status || ''`, see the top of this file. With the plain condition a
-- burst made it read the whole open work's index, 4,000 buffers a batch.)
SELECT agent_id FROM agents
WHERE agent_id IN (SELECT unnest($1::text[])
                   UNION
                   SELECT agent_id FROM work_items
                   WHERE conversation_id = ANY($2::text[]) AND status || '' IN ('offered', 'assigned'))
ORDER BY agent_id
FOR UPDATE;

-- name: lock_presence
SELECT presence, closed_channels FROM agents WHERE agent_id = $1 FOR UPDATE;

-- name: upsert_presence
-- The configuration version (as find_config_version); no row when the change is older than the one held.
INSERT INTO agents (agent_id, presence, presence_at, closed_channels) VALUES ($1, $2, $3, $4)
ON CONFLICT (agent_id) DO UPDATE SET presence = EXCLUDED.presence, presence_at = EXCLUDED.presence_at,
    closed_channels = EXCLUDED.closed_channels
WHERE agents.presence_at IS NULL OR agents.presence_at <= EXCLUDED.presence_at
RETURNING (SELECT COALESCE(max(id), 0)::text FROM config_applied) AS config_version;

-- name: insert_work
INSERT INTO work_items (conversation_id, channel, queue, priority, status, arrival, enqueued_at, required_skills)
VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)
ON CONFLICT (conversation_id) DO NOTHING
RETURNING conversation_id;

-- name: insert_works
-- insert_work for a batch ($1 conversations, $2 channels, $3 queues, $4 priorities, $5 arrivals as
-- JSON text, $6 arrival times); returns the conversations that were new (a repeated one: once).
INSERT INTO work_items (conversation_id, channel, queue, priority, status, arrival, enqueued_at, required_skills)
SELECT v.conversation_id, v.channel, v.queue, v.priority, 'queued', v.arrival::jsonb, v.at,
       COALESCE(v.arrival::jsonb->'required_skills', '{}')
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
    AS v(conversation_id, channel, queue, priority, arrival, at)
ON CONFLICT (conversation_id) DO NOTHING
RETURNING conversation_id;

-- name: queue_depth
SELECT count(*) FROM work_items WHERE queue = $1 AND status = 'queued';

-- name: count_waiting_by_channel
-- The channels with waiting work and how much waits in each, counted up to $1: the channels found one
-- index probe at a time (a loose index scan of work_waiting_channels), never the whole backlog.
WITH RECURSIVE channels AS (
    (SELECT channel FROM work_items WHERE status = 'queued' ORDER BY channel LIMIT 1)
    UNION ALL
    SELECT (SELECT w.channel FROM work_items w
            WHERE w.status = 'queued' AND w.channel > c.channel ORDER BY w.channel LIMIT 1)
    FROM channels c WHERE c.channel IS NOT NULL
)
SELECT c.channel,
       (SELECT count(*) FROM (SELECT 1 FROM work_items w WHERE w.status = 'queued' AND w.channel = c.channel
                              LIMIT $1) capped)::int AS waiting
FROM channels c WHERE c.channel IS NOT NULL ORDER BY c.channel;

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

-- name: list_waiting_work
SELECT conversation_id, channel, queue, priority, enqueued_at, passed_by, arrival, required_skills
FROM work_items WHERE status = 'queued'
ORDER BY enqueued_at, conversation_id
LIMIT $1
FOR UPDATE SKIP LOCKED;

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

-- name: reserve_units
-- reserve_capacity for several agents at once ($1 agents; $2 the units each takes per channel, a JSON
-- object as text; $3 the presences each must be in, a JSON array as text): one conditional UPDATE,
-- in which an agent gets all its units or none. Exclusive work is one unit taken by an idle agent.
-- An agent another transaction has locked is skipped (no units, as if full): a drain runs after a
-- batch that holds its own agents, so waiting here could close a cycle of waits (a deadlock). The
-- work stays queued for the next pass.
WITH r AS (
    SELECT v.agent_id, v.units::jsonb AS units,
           ARRAY(SELECT jsonb_array_elements_text(v.presences::jsonb)) AS presences,
           (SELECT sum(u.n::int) FROM jsonb_each_text(v.units::jsonb) AS u(ch, n)) AS total
    FROM unnest($1::text[], $2::text[], $3::text[]) AS v(agent_id, units, presences)
    WHERE v.agent_id IN (SELECT agent_id FROM agents WHERE agent_id = ANY($1::text[]) FOR UPDATE SKIP LOCKED)
)
UPDATE agents a SET
    used = a.used || (SELECT jsonb_object_agg(u.ch, COALESCE((a.used->>u.ch)::int, 0) + u.n::int)
                      FROM jsonb_each_text(r.units) AS u(ch, n)),
    total_used = a.total_used + r.total,
    exclusive_held = a.exclusive_held OR EXISTS (SELECT 1 FROM jsonb_object_keys(r.units) AS k(ch)
                                                 WHERE k.ch = ANY(a.exclusive)),
    idle_since = now(),
    last_assigned_at = now()
FROM r
WHERE a.agent_id = r.agent_id
  AND a.presence = ANY(r.presences)
  AND NOT a.exclusive_held
  AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(r.units) AS u(ch, n)
                  WHERE u.ch = ANY(a.closed_channels)
                     OR COALESCE((a.used->>u.ch)::int, 0) + u.n::int > COALESCE((a.limits->>u.ch)::int, 0))
  AND ((a.total_used = 0 AND r.total = 1)
       OR NOT EXISTS (SELECT 1 FROM jsonb_object_keys(r.units) AS k(ch) WHERE k.ch = ANY(a.exclusive)))
RETURNING a.agent_id, a.used, a.limits, a.total_used, a.exclusive_held;

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
-- A drain pass's offers ($1 offer ids, $2 conversations, $3 agents, $4 channels, $5 queues, $6 expiry)
-- recorded as pending, and their waiting work marked offered.
WITH o AS (
    INSERT INTO offers (offer_id, conversation_id, agent_id, channel, queue, status, expires_at)
    SELECT v.offer_id, v.conversation_id, v.agent_id, v.channel, v.queue, 'pending', v.expires_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
        AS v(offer_id, conversation_id, agent_id, channel, queue, expires_at)
)
UPDATE work_items w SET status = 'offered', agent_id = v.agent_id, offer_id = v.offer_id, attempts = attempts + 1,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS v(offer_id, conversation_id, agent_id)
WHERE w.conversation_id = v.conversation_id AND w.status = 'queued';

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
WHERE conversation_id = $1 AND status || '' = 'offered' AND offer_id = $3
RETURNING conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed, assigned_at;

-- name: move_work
UPDATE work_items SET queue = $2, overflowed = true, updated_at = now()
WHERE conversation_id = $1 AND status || '' = 'queued';

-- name: mark_overflowed
UPDATE work_items SET overflowed = true, updated_at = now() WHERE conversation_id = $1;

-- name: close_work
-- Closed by the agent who holds it: the agent's unit of the channel released (cap_* columns, null
-- when none was held) and the decision logged, in one statement; `handled_s` is how long the agent
-- held it, for the queue's figures (add_handled, once per transaction).
WITH w AS (
    UPDATE work_items SET status = 'closed', updated_at = now()
    WHERE conversation_id = $1 AND status || '' = 'assigned' AND agent_id = $2
    RETURNING conversation_id, channel, queue, status, agent_id, offer_id, arrival, failed_offers, overflowed,
              assigned_at
), released AS (
    UPDATE agents a SET
        used = jsonb_set(a.used, ARRAY[w.channel], to_jsonb(GREATEST(COALESCE((a.used->>w.channel)::int, 0) - 1, 0))),
        total_used = GREATEST(a.total_used - 1, 0),
        exclusive_held = a.exclusive_held AND NOT (w.channel = ANY(a.exclusive)),
        idle_since = now()
    FROM w WHERE a.agent_id = w.agent_id AND COALESCE((a.used->>w.channel)::int, 0) > 0
    RETURNING a.agent_id, a.used, a.limits, a.total_used, a.exclusive_held
), decided AS (
    INSERT INTO decisions (conversation_id, kind, detail)
    SELECT conversation_id, 'released', jsonb_build_object('agent_id', agent_id) FROM w
)
SELECT w.conversation_id, w.channel, w.queue, w.status, w.agent_id, w.offer_id, w.arrival, w.failed_offers,
       w.overflowed, w.assigned_at, extract(epoch FROM now() - w.assigned_at)::float8 AS handled_s,
       r.agent_id AS cap_agent_id, r.used AS cap_used, r.limits AS cap_limits,
       r.total_used AS cap_total_used, r.exclusive_held AS cap_exclusive_held
FROM w LEFT JOIN released r ON true;

-- name: add_handled
-- Closed work counted in its queues' figures ($1 queues, $2 closes, $3 seconds held): each queue's
-- row updated once per transaction, not once per close (a batch of closes in one queue made a version
-- of that row for each close).
INSERT INTO queue_stats (queue, handled, handle_seconds)
SELECT * FROM unnest($1::text[], $2::int[], $3::float8[])
ON CONFLICT (queue) DO UPDATE SET handled = queue_stats.handled + EXCLUDED.handled,
    handle_seconds = queue_stats.handle_seconds + EXCLUDED.handle_seconds;

-- name: end_work
-- The conversation ended before anyone took it (waiting or offered).
UPDATE work_items SET status = 'ended', ended_at = now(), updated_at = now()
WHERE conversation_id = $1 AND status || '' IN ('queued', 'offered');

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

-- name: accept_offer
-- A pending, unexpired offer accepted by its agent, and its work (if still offered) assigned to them,
-- logged in assignments and in decisions, in one statement; the w_* columns are null when the work
-- was not offered. Both rows are found by their keys (`status || ''`, see the top of this file): in
-- a burst the planner had read every pending offer, or every open item, to accept one.
WITH o AS (
    UPDATE offers SET status = 'accepted'
    WHERE offer_id = $1 AND agent_id = $2 AND status || '' = 'pending' AND expires_at > $3
    RETURNING offer_id, conversation_id, agent_id, channel, queue, expires_at
), w AS (
    UPDATE work_items wi SET status = 'assigned', agent_id = o.agent_id, offer_id = o.offer_id, assigned_at = now(),
        updated_at = now()
    FROM o WHERE wi.conversation_id = o.conversation_id AND wi.status || '' = 'offered'
    RETURNING wi.conversation_id, wi.channel, wi.queue, wi.status, wi.agent_id, wi.offer_id, wi.arrival,
              wi.failed_offers, wi.overflowed, wi.assigned_at, wi.enqueued_at
), logged AS (
    INSERT INTO assignments (conversation_id, queue, agent_id, waited_s, at)
    SELECT conversation_id, queue, agent_id, GREATEST(extract(epoch FROM assigned_at - enqueued_at)::float8, 0),
           assigned_at
    FROM w
), decided AS (
    INSERT INTO decisions (conversation_id, kind, detail)
    SELECT conversation_id, 'assigned', jsonb_build_object('agent_id', agent_id, 'how', 'accepted') FROM w
)
SELECT o.offer_id, o.conversation_id, o.agent_id, o.channel, o.queue, o.expires_at,
       w.conversation_id AS w_conversation_id, w.channel AS w_channel, w.queue AS w_queue, w.status AS w_status,
       w.agent_id AS w_agent_id, w.offer_id AS w_offer_id, w.arrival AS w_arrival,
       w.failed_offers AS w_failed_offers, w.overflowed AS w_overflowed, w.assigned_at AS w_assigned_at
FROM o LEFT JOIN w ON true;

-- name: end_offer
UPDATE offers SET status = $3
WHERE offer_id = $1 AND agent_id = $2 AND status || '' = 'pending'
RETURNING offer_id, conversation_id, agent_id, channel, queue, expires_at;

-- name: list_expired_offers
SELECT offer_id, conversation_id, agent_id, channel, queue, expires_at FROM offers
WHERE status = 'pending' AND expires_at <= $1
ORDER BY expires_at, offer_id LIMIT $2
FOR UPDATE SKIP LOCKED;

-- name: insert_decisions
INSERT INTO decisions (conversation_id, kind, detail)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]);

-- name: list_decisions
SELECT conversation_id, kind, detail, at FROM decisions WHERE conversation_id = $1 ORDER BY id;

-- name: try_lock_positions
-- One replica announces positions at a time (released at the end of the transaction).
SELECT pg_try_advisory_xact_lock(hashtext('routing.positions'));

-- name: list_position_changes
WITH ranked AS (
    SELECT w.conversation_id, w.channel, w.queue, t.told AS last_position,
           row_number() OVER (PARTITION BY w.queue ORDER BY w.enqueued_at, w.conversation_id) AS position
    FROM work_items w LEFT JOIN told_positions t ON t.conversation_id = w.conversation_id
    WHERE w.status = 'queued'
)
SELECT conversation_id, channel, queue, position::int AS position FROM ranked
-- any move in the first ten places, else a move of at least a tenth: customers far back are not
-- told every step of a draining backlog
WHERE last_position IS DISTINCT FROM position
  AND (position <= 10 OR last_position IS NULL OR abs(last_position - position) * 10 >= last_position)
ORDER BY queue, position
LIMIT $1;

-- name: set_last_positions
-- The places told ($1 conversations, $2 places): in told_positions, never on the work rows (a drain
-- skips a work row another transaction holds).
INSERT INTO told_positions (conversation_id, told)
SELECT * FROM unnest($1::text[], $2::int[])
ON CONFLICT (conversation_id) DO UPDATE SET told = EXCLUDED.told;

-- name: record_positions
-- Places in line of the waiting conversations among $1 (in queues $2), recorded as the places last
-- told (told_positions), with the wait-estimate figures of their queues. The queues' whole line is
-- ranked once, and each of its rows looked up among $1 in a jsonb object (a binary search): a plan
-- whatever the row estimates (`= ANY($1)` in a generic plan compares every row of the line with
-- every element of $1, 150 ms for 384 arrivals behind 6,800). The object is built once
-- (MATERIALIZED): inlined, it was built again for every row of the line, 300 ms for 500 arrivals.
WITH asked AS MATERIALIZED (
    SELECT jsonb_object_agg(id, true) AS ids FROM unnest($1::text[]) AS id
), ranked AS (
    SELECT conversation_id, queue,
           row_number() OVER (PARTITION BY queue ORDER BY enqueued_at, conversation_id) AS position
    FROM work_items WHERE status = 'queued' AND queue = ANY($2::text[])
), mine AS MATERIALIZED (
    SELECT r.conversation_id, r.queue, r.position FROM ranked r, asked a WHERE a.ids ? r.conversation_id
), told AS (
    INSERT INTO told_positions (conversation_id, told)
    SELECT conversation_id, position FROM mine
    ON CONFLICT (conversation_id) DO UPDATE SET told = EXCLUDED.told
)
SELECT m.conversation_id, m.queue, m.position::int AS position, COALESCE(s.handled, 0) AS handled,
       COALESCE(s.handle_seconds, 0) AS handle_seconds, COALESCE(s.staffed_slots, 0) AS staffed_slots,
       COALESCE(s.arrivals_per_s, 0) AS arrivals_per_s
FROM mine m LEFT JOIN queue_stats s ON s.queue = m.queue;

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

-- name: agents_changed_since_analyze
-- Rows of agents changed since its statistics were last gathered, and how many there are.
SELECT n_mod_since_analyze AS changed, n_live_tup AS live FROM pg_stat_user_tables WHERE relid = 'agents'::regclass;

-- name: analyze_agents
ANALYZE agents;

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
