-- routing, issue 3: the full configuration model (rules, skills, methods, hours, overflow,
-- prioritisation) and the last applied document (for dry-run diffs and audits).

ALTER TABLE queues
    ADD COLUMN skill_matching  text  NOT NULL DEFAULT 'exact',
    ADD COLUMN closest_after_s int   NOT NULL DEFAULT 60,
    ADD COLUMN operating_hours jsonb,
    ADD COLUMN overflow        jsonb,
    ADD COLUMN prioritisation  jsonb NOT NULL DEFAULT '[]';

CREATE TABLE rules (
    position   int PRIMARY KEY,
    name       text  NOT NULL,
    queue      text  NOT NULL,
    conditions jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE default_queues (
    channel text PRIMARY KEY,
    queue   text NOT NULL
);

ALTER TABLE agents
    ADD COLUMN skills           jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN last_assigned_at timestamptz;

ALTER TABLE work_items
    ADD COLUMN required_skills jsonb   NOT NULL DEFAULT '{}',
    ADD COLUMN failed_offers   int     NOT NULL DEFAULT 0,
    ADD COLUMN overflowed      boolean NOT NULL DEFAULT false;

CREATE TABLE config_applied (
    id         bigserial PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    source     text        NOT NULL,
    document   jsonb       NOT NULL
);

-- arrival rate per queue (Erlang C in the wait estimate)
CREATE INDEX work_by_queue_time ON work_items (queue, enqueued_at);
