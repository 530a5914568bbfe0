-- optel collector, SQLite schema version 1.
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

-- Ingest keys are stored as the SHA-256 of the key, never the key itself.
CREATE TABLE ingest_keys (
    key_hash    TEXT    PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);

-- One row per event; (project_id, event_id) makes retried batches idempotent.
CREATE TABLE events (
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
    metadata        TEXT,
    PRIMARY KEY (project_id, event_id)
) WITHOUT ROWID;

CREATE INDEX events_by_time ON events (project_id, ts_ms);
