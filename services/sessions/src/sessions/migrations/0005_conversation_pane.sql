-- What assist last said of each conversation (summary, articles, replies, case draft), kept whether
-- or not an agent holds it yet: the agent who accepts or receives it by transfer sees it at once.
CREATE TABLE conversation_pane (
    conversation_id text PRIMARY KEY,
    pane jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
