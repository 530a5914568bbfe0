-- optel collector, SQLite schema version 2: public flag, daily rollups.
ALTER TABLE projects ADD COLUMN public INTEGER NOT NULL DEFAULT 0;

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
