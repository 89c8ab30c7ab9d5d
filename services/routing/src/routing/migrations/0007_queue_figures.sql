-- Staffing and arrival rate per queue, refreshed by the periodic pass instead of per batch.
ALTER TABLE queue_stats
    ADD COLUMN staffed_slots  int              NOT NULL DEFAULT 0,
    ADD COLUMN arrivals_per_s double precision NOT NULL DEFAULT 0,
    ADD COLUMN refreshed_at   timestamptz;
