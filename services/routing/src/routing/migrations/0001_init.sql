-- routing: configured channels, queues and agents (with their capacity ledger), work items, offers,
-- and the decision log that `switchboard routing explain` reads.

CREATE TABLE channels (
    name      text PRIMARY KEY,
    exclusive boolean NOT NULL DEFAULT false
);

CREATE TABLE queues (
    name              text PRIMARY KEY,
    channels          text[]  NOT NULL,
    assignment_method text    NOT NULL DEFAULT 'longest_idle',
    allowed_presences text[]  NOT NULL DEFAULT '{available,busy}',
    priority          int     NOT NULL DEFAULT 0,
    offer_timeout_s   int     NOT NULL DEFAULT 120 CHECK (offer_timeout_s > 0)
);

-- One row per agent holds its whole capacity ledger, so one conditional UPDATE decides a
-- reservation atomically (concurrent replicas re-check the row's newest version).
CREATE TABLE agents (
    agent_id       text PRIMARY KEY,
    configured     boolean     NOT NULL DEFAULT false,
    presence       text        NOT NULL DEFAULT 'offline',
    queues         text[]      NOT NULL DEFAULT '{}',
    auto_accept    text[]      NOT NULL DEFAULT '{}',
    limits         jsonb       NOT NULL DEFAULT '{}',
    exclusive      text[]      NOT NULL DEFAULT '{}',
    used           jsonb       NOT NULL DEFAULT '{}',
    total_used     int         NOT NULL DEFAULT 0 CHECK (total_used >= 0),
    exclusive_held boolean     NOT NULL DEFAULT false,
    idle_since     timestamptz NOT NULL DEFAULT now(),
    presence_at    timestamptz
);
CREATE INDEX agents_presence ON agents (presence) WHERE configured;

CREATE TABLE work_items (
    conversation_id text PRIMARY KEY,
    channel         text        NOT NULL,
    queue           text        NOT NULL,
    priority        int         NOT NULL DEFAULT 0,
    status          text        NOT NULL CHECK (status IN ('queued', 'offered', 'assigned', 'closed', 'ended')),
    arrival         jsonb       NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    agent_id        text,
    offer_id        text,
    attempts        int         NOT NULL DEFAULT 0,
    passed_by       text[]      NOT NULL DEFAULT '{}',
    assigned_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_waiting ON work_items (enqueued_at) WHERE status = 'queued';
CREATE INDEX work_by_queue ON work_items (queue, enqueued_at) WHERE status = 'queued';

CREATE TABLE offers (
    offer_id        text PRIMARY KEY,
    conversation_id text        NOT NULL,
    agent_id        text        NOT NULL,
    channel         text        NOT NULL,
    queue           text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'accepted', 'expired', 'rejected', 'withdrawn')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX offers_pending_expiry ON offers (expires_at) WHERE status = 'pending';
CREATE UNIQUE INDEX one_pending_offer_per_conversation ON offers (conversation_id) WHERE status = 'pending';

CREATE TABLE queue_stats (
    queue          text PRIMARY KEY,
    handled        bigint           NOT NULL DEFAULT 0,
    handle_seconds double precision NOT NULL DEFAULT 0
);

CREATE TABLE decisions (
    id              bigserial PRIMARY KEY,
    conversation_id text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    kind            text        NOT NULL,
    detail          jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX decisions_by_conversation ON decisions (conversation_id, id);
