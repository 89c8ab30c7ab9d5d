-- The place in line last told to each waiting conversation, kept apart from its work item.
-- Announcing positions updated the work rows, and held them until the announcing transaction
-- committed; a drain meanwhile (FOR UPDATE SKIP LOCKED, which keeps replicas from offering the
-- same work twice) skipped the rows held and gave a freed slot to a younger conversation.
-- No foreign key: its check would lock the work row too (FOR KEY SHARE).
CREATE TABLE told_positions (
    conversation_id text PRIMARY KEY,
    told            int  NOT NULL
);
INSERT INTO told_positions (conversation_id, told)
SELECT conversation_id, last_position FROM work_items WHERE last_position IS NOT NULL;
ALTER TABLE work_items DROP COLUMN last_position;
