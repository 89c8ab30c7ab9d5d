-- Preferred agent: how long a queue waits for the conversation's preferred agent before anyone else.
ALTER TABLE queues ADD COLUMN preferred_wait_s int NOT NULL DEFAULT 30;
