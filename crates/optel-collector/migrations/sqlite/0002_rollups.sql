-- optel collector, SQLite schema version 2: public flag, daily rollups.
ALTER TABLE projects ADD COLUMN public INTEGER NOT NULL DEFAULT 0;

-- Events move from a WITHOUT ROWID table keyed by (project_id, event_id) to an append-only
-- rowid table: event ids are random UUIDs, and keeping whole rows in random key order made every
-- commit rewrite a page per event. Only the narrow unique index stays in random order.
CREATE TABLE events_v2 (
    project_id      INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    ts_ms           INTEGER NOT NULL,
    received_ms     INTEGER NOT NULL,
    service         TEXT    NOT NULL,
    service_version TEXT    NOT NULL,
    pseudonym       TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    arch            TEXT    NOT NULL,
    duration_ms     INTEGER,
    success         INTEGER,
    error_code      TEXT,
    metadata        TEXT
);
INSERT INTO events_v2 SELECT project_id, event_id, event_type, name, ts_ms, received_ms, service,
    service_version, pseudonym, session_id, os, arch, duration_ms, success, error_code, metadata
    FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
CREATE UNIQUE INDEX events_by_id ON events (project_id, event_id);
CREATE INDEX events_by_time ON events (ts_ms);

-- Events and summed durations per UTC day and dimension (see src/rollup.rs).
CREATE TABLE rollup_counts (
    project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day          INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    os           TEXT    NOT NULL,
    arch         TEXT    NOT NULL,
    outcome      INTEGER NOT NULL,
    error_code   TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    duration_sum INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, event_type, name, version, os, arch, outcome, error_code)
) WITHOUT ROWID;

-- Command duration histogram per UTC day (bucket: src/rollup.rs duration_bucket).
CREATE TABLE rollup_durations (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, name, bucket)
) WITHOUT ROWID;

-- Distinct installs per UTC day and dimension, as mergeable sketches (src/rollup.rs).
CREATE TABLE rollup_installs (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    value      TEXT    NOT NULL,
    sketch     BLOB    NOT NULL,
    PRIMARY KEY (project_id, day, kind, value)
) WITHOUT ROWID;
