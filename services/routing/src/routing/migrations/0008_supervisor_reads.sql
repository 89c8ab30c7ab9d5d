-- Supervisor and Home reads (issue 10): each queue's service-level threshold, and what the
-- 15-minute queue figures and the work list count.
ALTER TABLE queues ADD COLUMN service_level_s int NOT NULL DEFAULT 20 CHECK (service_level_s >= 1);

ALTER TABLE work_items
    ADD COLUMN ended_at  timestamptz,             -- the conversation ended while waiting or offered
    ADD COLUMN transfers int NOT NULL DEFAULT 0;  -- work.transfer carried out on it

-- One row per work item answered from a queue (offer accepted, auto-accepted or picked), with how
-- long it had waited since it arrived: the assigned count and the service level of the last minutes
-- (kept for a day: the periodic figures pass prunes older rows).
CREATE TABLE assignments (
    id              bigserial PRIMARY KEY,
    conversation_id text             NOT NULL,
    queue           text             NOT NULL,
    agent_id        text             NOT NULL,
    waited_s        double precision NOT NULL,
    at              timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX assignments_by_queue ON assignments (queue, at);
CREATE INDEX assignments_by_time ON assignments (at);  -- pruning

CREATE INDEX work_ended ON work_items (queue, ended_at) WHERE status = 'ended';
CREATE INDEX work_open ON work_items (enqueued_at, conversation_id) WHERE status IN ('queued', 'offered', 'assigned');
CREATE INDEX offers_by_queue ON offers (queue, created_at);
CREATE INDEX decisions_overflowed ON decisions (at) WHERE kind = 'overflowed';
