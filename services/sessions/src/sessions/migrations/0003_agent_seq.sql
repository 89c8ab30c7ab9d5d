-- The per-agent event counter gets its own row: on `agents` its lock collided with focus and
-- presence updates held by other consumers' batch transactions.
CREATE TABLE agent_seq (
    agent_id text PRIMARY KEY,
    seq      bigint NOT NULL DEFAULT 0
);
INSERT INTO agent_seq (agent_id, seq) SELECT agent_id, seq FROM agents WHERE seq > 0;
