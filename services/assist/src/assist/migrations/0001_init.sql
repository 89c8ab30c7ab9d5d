-- assist: the conversations it follows (projection of conversations.v1) and their transcripts.

CREATE TABLE conversations (
    conversation_id text PRIMARY KEY,
    channel         text,
    subject         text,
    customer_name   text,
    arrived_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    conversation_id text        NOT NULL,
    message_id      text        NOT NULL,
    sender          text        NOT NULL,
    visibility      text        NOT NULL,
    text            text        NOT NULL,
    posted_at       timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);

CREATE TABLE summaries (
    conversation_id text PRIMARY KEY,
    summary         text        NOT NULL,
    entities        jsonb       NOT NULL DEFAULT '{}',
    provider        text        NOT NULL,
    message_count   int         NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
