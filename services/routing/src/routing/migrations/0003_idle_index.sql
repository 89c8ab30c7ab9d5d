-- Longest idle first by an index probe instead of a scan of every agent.
CREATE INDEX agents_idle ON agents (idle_since, agent_id) WHERE configured AND NOT exclusive_held;
