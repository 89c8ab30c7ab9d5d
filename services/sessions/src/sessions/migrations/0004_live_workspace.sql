-- sessions, issue 10: the conversations' transcripts, the agent's presence, the waiting work of the
-- queues (Home), wrap-up dispositions, supervisor actions and escalation flags.

-- Every message of a conversation, in the order sessions consumed them (one partition per
-- conversation, so `ordinal` is the conversation's order).
CREATE TABLE messages (
    conversation_id text        NOT NULL,
    message_id      text        NOT NULL,
    ordinal         bigint      NOT NULL,
    sender          text        NOT NULL,
    sender_id       text,
    visibility      text        NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'internal')),
    text            text        NOT NULL,
    time            timestamptz NOT NULL,
    suggestion_id   text,
    command_id      text,
    PRIMARY KEY (conversation_id, message_id),
    UNIQUE (conversation_id, ordinal)
);

-- The agent's presence as presence.v1 last announced it (its own row: no lock shared with focus).
CREATE TABLE presence (
    agent_id        text PRIMARY KEY,
    status          text        NOT NULL,
    base            text,
    closed_channels jsonb       NOT NULL DEFAULT '[]',
    colour          text,
    source          text        NOT NULL,
    since           timestamptz NOT NULL
);

-- What conversations.v1 said of a conversation on arrival (titles of waiting work).
CREATE TABLE conversations (
    conversation_id text PRIMARY KEY,
    channel         text        NOT NULL,
    title           text,
    priority        int         NOT NULL DEFAULT 0,
    arrived_at      timestamptz NOT NULL
);

-- Work waiting in (or offered from) a queue: Home lists the open work of the agent's queues.
CREATE TABLE waiting_work (
    conversation_id text PRIMARY KEY,
    channel         text        NOT NULL,
    queue           text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('waiting', 'offered')),
    queued_at       timestamptz NOT NULL
);
CREATE INDEX waiting_work_by_queue ON waiting_work (queue);

ALTER TABLE assignments ADD COLUMN queue text;

-- Wrap-up: the disposition codes of the configuration, and what the agent chose on close.
CREATE TABLE dispositions (
    code     text PRIMARY KEY,
    label    text NOT NULL,
    position int  NOT NULL
);
ALTER TABLE sessions
    ADD COLUMN disposition  text,
    ADD COLUMN note         text,
    ADD COLUMN close_reason text;

CREATE TABLE supervisor_actions (
    action_id       bigserial PRIMARY KEY,
    supervisor_id   text        NOT NULL,
    agent_id        text        NOT NULL,
    action          text        NOT NULL,
    conversation_id text,
    session_id      text,
    detail          text,
    time            timestamptz NOT NULL
);
CREATE INDEX supervisor_actions_by_conversation ON supervisor_actions (conversation_id, action_id);

-- Escalation signals assist saw per conversation (asks_for_manager, upset), until it ends.
CREATE TABLE escalations (
    conversation_id text PRIMARY KEY,
    signals         jsonb       NOT NULL DEFAULT '[]',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
