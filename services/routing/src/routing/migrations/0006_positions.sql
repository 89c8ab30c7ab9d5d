-- The position last announced for a waiting item, so updates are sent only when it moves.
ALTER TABLE work_items ADD COLUMN last_position int;
