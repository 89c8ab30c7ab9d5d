-- sessions, issue 4: per-agent event sequence, experience profiles, drafts, record links, pane
-- state, and the projection of the agent's assigned conversations.

ALTER TABLE agents
    ADD COLUMN seq     bigint NOT NULL DEFAULT 0,
    ADD COLUMN profile text   NOT NULL DEFAULT 'default';

CREATE TABLE profiles (
    name     text PRIMARY KEY,
    settings jsonb NOT NULL DEFAULT '{}'
);

ALTER TABLE sessions
    ADD COLUMN record jsonb,
    ADD COLUMN pane   jsonb NOT NULL DEFAULT '{}';

ALTER TABLE tabs ADD COLUMN position int NOT NULL DEFAULT 0;

-- A draft lives with its conversation when the session has one (an email written across many short
-- sessions, or on two devices), else with the agent's session and tab.
CREATE TABLE drafts (
    draft_key       text PRIMARY KEY,
    agent_id        text        NOT NULL,
    session_id      text        NOT NULL,
    tab_id          text        NOT NULL,
    conversation_id text,
    fields          jsonb       NOT NULL DEFAULT '{}',
    version         int         NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drafts_by_conversation ON drafts (conversation_id) WHERE conversation_id IS NOT NULL;

CREATE TABLE assignments (
    conversation_id text PRIMARY KEY,
    agent_id        text        NOT NULL,
    channel         text        NOT NULL,
    conversation    jsonb       NOT NULL DEFAULT '{}',
    assigned_at     timestamptz NOT NULL DEFAULT now(),
    released        boolean     NOT NULL DEFAULT false
);
CREATE INDEX assignments_by_agent ON assignments (agent_id) WHERE NOT released;
