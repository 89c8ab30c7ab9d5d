-- The drain's reads of the waiting work walk an index and stop (issue 13): at a surge the planner's
-- row estimate lags the backlog by up to a minute of autovacuum, and both reads sorted or counted
-- the whole backlog on every pass.
-- The oldest waiting first, in the order list_waiting_work takes them (its tie-break included).
DROP INDEX work_waiting;
CREATE INDEX work_waiting ON work_items (enqueued_at, conversation_id) WHERE status = 'queued';
-- The channels with waiting work, one index probe each (count_waiting_by_channel).
CREATE INDEX work_waiting_channels ON work_items (channel) WHERE status = 'queued';
