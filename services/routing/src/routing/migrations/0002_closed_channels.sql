-- Per-channel presence (presence.changed closed_channels): routing never offers a closed channel.
ALTER TABLE agents ADD COLUMN closed_channels text[] NOT NULL DEFAULT '{}';
