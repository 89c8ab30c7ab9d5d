-- name: upsert_article
INSERT INTO articles (id, title, body, tags, product, language, status, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (id) DO UPDATE SET title = $2, body = $3, tags = $4, product = $5, language = $6, status = $7,
    updated_at = now()
RETURNING (xmax = 0) AS created;

-- name: get_article
SELECT id, title, body, tags, product, language, status, updated_at FROM articles WHERE id = $1;

-- name: search_articles
-- Any of the query's words (OR), ranked by cover density with title > tags > body weights.
WITH q AS (SELECT to_tsquery('english', $1) AS query)
SELECT a.id, a.title, a.tags, a.product, ts_rank_cd('{0.1, 0.2, 0.6, 1.0}', a.search, q.query, 32) AS score
FROM articles a, q
WHERE a.status = 'published' AND a.search @@ q.query AND ($3::text IS NULL OR a.language = $3)
ORDER BY score DESC, a.id
LIMIT $2;

-- name: last_surfaced
SELECT article_ids FROM surfaced WHERE conversation_id = $1;

-- name: set_surfaced
INSERT INTO surfaced (conversation_id, article_ids) VALUES ($1, $2)
ON CONFLICT (conversation_id) DO UPDATE SET article_ids = $2, at = now();

-- name: customer_text
SELECT text FROM messages WHERE conversation_id = $1 AND sender = 'customer' ORDER BY posted_at, message_id;

-- name: conversation_subject
SELECT subject FROM conversations WHERE conversation_id = $1;
