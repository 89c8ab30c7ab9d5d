-- assist's scrape-time figures for /metrics (assist.metrics), read-only.

-- name: metrics_pending
-- Conversations waiting for their debounced update, and how late the most overdue one is.
SELECT count(*) AS pending,
       COALESCE(extract(epoch FROM now() - min(due_at)) FILTER (WHERE due_at < now()), 0)::float8 AS overdue_s
FROM pending;
