-- presence, issue 5: custom statuses, per-profile automatic rules, disconnect/idle memory,
-- per-channel presence, teams, device idle time.

CREATE TABLE statuses (
    name   text PRIMARY KEY,
    base   text    NOT NULL CHECK (base IN ('available', 'busy', 'busy_dnd', 'away', 'offline', 'inactive')),
    colour text,
    custom boolean NOT NULL DEFAULT true
);

CREATE TABLE profiles (
    name  text PRIMARY KEY,
    rules jsonb NOT NULL DEFAULT '{}'
);

ALTER TABLE agents
    ADD COLUMN profile         text        NOT NULL DEFAULT 'default',
    ADD COLUMN team            text,
    ADD COLUMN status_before   text,
    ADD COLUMN manual_before   boolean     NOT NULL DEFAULT false,
    ADD COLUMN disconnected_at timestamptz,
    ADD COLUMN idle            boolean     NOT NULL DEFAULT false,
    ADD COLUMN closed_channels text[]      NOT NULL DEFAULT '{}';

ALTER TABLE devices
    ADD COLUMN idle_s double precision,
    ADD COLUMN lost   boolean NOT NULL DEFAULT false;

CREATE INDEX devices_live ON devices (last_seen) WHERE signed_in AND NOT lost;
