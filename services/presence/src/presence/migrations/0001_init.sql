-- presence: each agent's status and whether the agent chose it by hand, devices, history,
-- and the projection of routing's capacity that the automatic rules read.

CREATE TABLE agents (
    agent_id   text PRIMARY KEY,
    status     text        NOT NULL DEFAULT 'offline',
    base       text        NOT NULL DEFAULT 'offline',
    manual     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    agent_id   text        NOT NULL,
    device_id  text        NOT NULL,
    signed_in  boolean     NOT NULL DEFAULT true,
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, device_id)
);

CREATE TABLE capacity (
    agent_id       text PRIMARY KEY,
    total_used     int     NOT NULL DEFAULT 0,
    is_full        boolean NOT NULL DEFAULT false,
    exclusive_held boolean NOT NULL DEFAULT false
);

CREATE TABLE history (
    id       bigserial PRIMARY KEY,
    agent_id text        NOT NULL,
    status   text        NOT NULL,
    previous text,
    source   text        NOT NULL,
    reason   text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_by_agent ON history (agent_id, id);
