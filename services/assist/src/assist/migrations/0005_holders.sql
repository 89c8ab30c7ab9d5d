-- Who holds each conversation, from routing.v1: work.assigned (and transfers) add the agent, work.released
-- ends their hold; an agent reads only the conversations it holds or held (assist's HTTP interface).
ALTER TABLE conversation_agents ADD COLUMN released_at timestamptz;

-- The debounced update reads a bounded transcript: the latest messages first.
CREATE INDEX messages_latest ON messages (conversation_id, posted_at DESC, message_id DESC);
