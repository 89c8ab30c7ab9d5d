-- routing's scrape-time figures for /metrics (routing.metrics), read-only and set-based.

-- name: metrics_waiting_work
-- Work waiting per queue (queued: no agent yet; offered: waiting for the agent's answer) and the
-- longest wait, over every configured queue (0 when none waits).
SELECT q.name AS queue,
       count(w.conversation_id) FILTER (WHERE w.status = 'queued') AS queued,
       count(w.conversation_id) FILTER (WHERE w.status = 'offered') AS offered,
       COALESCE(extract(epoch FROM now() - min(w.enqueued_at)), 0)::float8 AS longest_wait_s
FROM queues q
LEFT JOIN work_items w ON w.queue = q.name AND w.status IN ('queued', 'offered')
GROUP BY q.name ORDER BY q.name;

-- name: metrics_routable_agents
-- Agents who could take a queue's work now: configured for it and in a presence it allows.
SELECT q.name AS queue, count(a.agent_id) AS agents
FROM queues q
LEFT JOIN agents a ON a.configured AND q.name = ANY(a.queues) AND a.presence = ANY(q.allowed_presences)
GROUP BY q.name ORDER BY q.name;

-- name: metrics_capacity
-- Capacity in use and configured per channel, over agents who are not offline.
SELECT ch.channel,
       COALESCE(sum(COALESCE((a.used ->> ch.channel)::int, 0)), 0)::bigint AS used,
       COALESCE(sum(COALESCE((a.limits ->> ch.channel)::int, 0)), 0)::bigint AS total
FROM (SELECT name AS channel FROM channels) ch
LEFT JOIN agents a ON a.configured AND a.presence <> 'offline'
GROUP BY ch.channel ORDER BY ch.channel;

-- name: metrics_agents_by_presence
-- Configured agents per presence, as routing's projection of presence.v1 sees them.
SELECT presence, count(*) AS agents FROM agents WHERE configured GROUP BY presence ORDER BY presence;
