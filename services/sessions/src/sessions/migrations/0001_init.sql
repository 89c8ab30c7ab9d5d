-- sessions: each agent's workspace (sessions, tabs, focus, unread), pending offers, and the
-- conversations projection that titles come from.

CREATE TABLE agents (
    agent_id        text PRIMARY KEY,
    focused_session text        NOT NULL DEFAULT 'home',
    presence        text,
    visitor_counter int         NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    agent_id        text        NOT NULL,
    session_id      text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('home', 'conversation', 'record')),
    conversation_id text,
    channel         text,
    title           text        NOT NULL,
    icon            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    unread          int         NOT NULL DEFAULT 0,
    focused_tab     text,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (agent_id, session_id)
);
-- DESIGN.md invariant: a conversation belongs to at most one agent's open session.
CREATE UNIQUE INDEX one_open_session_per_conversation ON sessions (conversation_id)
    WHERE status = 'open' AND conversation_id IS NOT NULL;

CREATE TABLE tabs (
    agent_id   text        NOT NULL,
    session_id text        NOT NULL,
    tab_id     text        NOT NULL,
    kind       text        NOT NULL,
    title      text,
    anchor     boolean     NOT NULL DEFAULT false,
    target     jsonb       NOT NULL DEFAULT '{}',
    opened_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, session_id, tab_id),
    FOREIGN KEY (agent_id, session_id) REFERENCES sessions (agent_id, session_id)
);

CREATE TABLE offers (
    offer_id        text PRIMARY KEY,
    agent_id        text        NOT NULL,
    conversation_id text        NOT NULL,
    channel         text        NOT NULL,
    queue           text,
    title           text,
    conversation    jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'withdrawn', 'assigned')),
    expires_at      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offers_by_agent ON offers (agent_id) WHERE status IN ('pending', 'accepted');
