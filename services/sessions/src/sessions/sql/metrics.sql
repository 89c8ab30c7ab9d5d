-- sessions' scrape-time figures for /metrics (sessions.metrics), read-only.

-- name: metrics_open_sessions
-- Open sessions per kind (every agent's Home session counts as one of kind home).
SELECT kind, count(*) AS sessions FROM sessions WHERE status = 'open' GROUP BY kind ORDER BY kind;

-- name: metrics_pending_offers
-- Offers shown to agents and not yet answered.
SELECT count(*) AS offers FROM offers WHERE status = 'pending';
