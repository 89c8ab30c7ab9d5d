-- assist, issue 6: dense vectors (all-MiniLM-L6-v2, 384 little-endian float4 as bytea), the reply
-- library and learned replies with their feedback, the debounce queue, who worked a conversation,
-- and case summaries.

ALTER TABLE articles ADD COLUMN vector bytea;
ALTER TABLE messages ADD COLUMN vector bytea;
ALTER TABLE messages ADD COLUMN suggestion_id text;
ALTER TABLE messages ADD COLUMN learned boolean NOT NULL DEFAULT false;
ALTER TABLE summaries ADD COLUMN intent text;
ALTER TABLE summaries ADD COLUMN model text;
ALTER TABLE summaries ADD COLUMN trigger text;

-- Bumped by every change to articles or replies: each replica reloads its in-memory vectors when
-- the number it holds is behind.
CREATE TABLE kb_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version bigint NOT NULL);
INSERT INTO kb_version VALUES (true, 1);

-- Replies: the library (templates with {slots}) and replies agents actually sent (source 'history',
-- their personal details turned back into slots). `vector` is what the reply answers: for the
-- library its title and example questions, for history the customer messages it answered.
CREATE TABLE replies (
    id         text PRIMARY KEY,
    source     text        NOT NULL CHECK (source IN ('library', 'history')),
    title      text        NOT NULL,
    text       text        NOT NULL,
    tags       text[]      NOT NULL DEFAULT '{}',
    language   text        NOT NULL DEFAULT 'en',
    vector     bytea       NOT NULL,
    uses       int         NOT NULL DEFAULT 0,
    shown      int         NOT NULL DEFAULT 0,
    accepted   int         NOT NULL DEFAULT 0,
    edited     int         NOT NULL DEFAULT 0,
    rejected   int         NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every suggestion shown, and what the agent did with it.
CREATE TABLE suggestions (
    suggestion_id   text PRIMARY KEY,
    conversation_id text        NOT NULL,
    reply_id        text        NOT NULL,
    text            text        NOT NULL,
    score           real        NOT NULL,
    shown_at        timestamptz NOT NULL DEFAULT now(),
    verdict         text CHECK (verdict IN ('accepted', 'edited', 'rejected')),
    final_text      text,
    agent_id        text,
    decided_at      timestamptz
);
CREATE INDEX suggestions_conversation ON suggestions (conversation_id, shown_at);

CREATE TABLE last_suggested (
    conversation_id text PRIMARY KEY,
    reply_ids       text[] NOT NULL,
    for_message     text   NOT NULL
);

-- The debounce queue: a conversation is processed once its burst has been quiet for the debounce
-- (or has waited the longest allowed). `triggers` asks for summaries; `version` guards a claim.
CREATE TABLE pending (
    conversation_id text PRIMARY KEY,
    due_at          timestamptz NOT NULL,
    first_at        timestamptz NOT NULL DEFAULT now(),
    triggers        text[]      NOT NULL DEFAULT '{}',
    version         bigint      NOT NULL DEFAULT 1,
    leased_until    timestamptz
);
CREATE INDEX pending_due ON pending (due_at);

CREATE TABLE conversation_agents (
    conversation_id text        NOT NULL,
    agent_id        text        NOT NULL,
    first_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, agent_id)
);

CREATE TABLE case_summaries (
    conversation_id text PRIMARY KEY,
    draft           jsonb       NOT NULL,
    trigger         text        NOT NULL,
    agent_id        text,
    provider        text        NOT NULL,
    model           text        NOT NULL,
    status          text        NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'saved')),
    drafted_at      timestamptz NOT NULL DEFAULT now(),
    saved           jsonb,
    saved_by        text,
    saved_at        timestamptz
);
