-- assist, issue 6: the knowledge base with weighted full-text search (title over body), and what
-- was last surfaced per conversation (so an unchanged list is not sent again).

-- array_to_string is only stable (it depends on the array's element type output), but joining text
-- with a space is immutable, which a generated column needs.
CREATE FUNCTION tags_text(text[]) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_to_string($1, ' ') $$;

CREATE TABLE articles (
    id         text PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL,
    tags       text[]      NOT NULL DEFAULT '{}',
    product    text,
    language   text        NOT NULL DEFAULT 'en',
    status     text        NOT NULL DEFAULT 'published' CHECK (status IN ('draft', 'published', 'archived')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    search     tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', tags_text(tags)), 'B') ||
        setweight(to_tsvector('english', coalesce(body, '')), 'C')
    ) STORED
);
CREATE INDEX articles_search ON articles USING gin (search);

CREATE TABLE surfaced (
    conversation_id text PRIMARY KEY,
    article_ids     text[]      NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
