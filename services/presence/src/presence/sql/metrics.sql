-- presence's scrape-time figures for /metrics (presence.metrics), read-only.

-- name: metrics_agents_by_status
-- Agents per status (a custom status with its base presence).
SELECT status, base, count(*) AS agents FROM agents GROUP BY status, base ORDER BY status, base;

-- name: metrics_devices
-- Devices signed in and still beating.
SELECT count(*) AS devices FROM devices WHERE signed_in AND NOT lost;
