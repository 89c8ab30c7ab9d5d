-- assist, issue 10: the escalation signals flagged per conversation (a customer asking for a manager,
-- or clearly upset), so each is announced once however often the conversation is processed again.

CREATE TABLE escalations (
    conversation_id text        NOT NULL,
    signal          text        NOT NULL CHECK (signal IN ('asks_for_manager', 'upset')),
    message_id      text        NOT NULL,
    flagged_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, signal)
);
