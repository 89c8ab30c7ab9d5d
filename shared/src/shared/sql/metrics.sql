-- Scrape-time figures every service exposes on /metrics (shared.metrics), read-only.

-- name: outbox_figures
-- Events committed but not yet published (dead rows, which the broker can never take, apart), and
-- how long the oldest pending one has waited.
SELECT count(*) FILTER (WHERE dead_at IS NULL) AS pending,
       extract(epoch FROM now() - min(created_at) FILTER (WHERE dead_at IS NULL))::float8 AS oldest_s,
       count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead
FROM outbox;
