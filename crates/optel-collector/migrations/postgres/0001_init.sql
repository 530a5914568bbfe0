-- optel collector, PostgreSQL schema version 1 (same tables as SQLite versions 1 and 2).
CREATE TABLE projects (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_ms  BIGINT  NOT NULL,
    public      BOOLEAN NOT NULL DEFAULT FALSE
);

-- Ingest keys are stored as the SHA-256 of the key, never the key itself.
CREATE TABLE ingest_keys (
    key_hash    TEXT    PRIMARY KEY,
    project_id  BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    created_ms  BIGINT  NOT NULL,
    revoked_ms  BIGINT
);

-- One row per event; (project_id, event_id) makes retried batches idempotent.
CREATE TABLE events (
    project_id      BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    ts_ms           BIGINT  NOT NULL,
    received_ms     BIGINT  NOT NULL,
    service         TEXT    NOT NULL,
    service_version TEXT    NOT NULL,
    pseudonym       TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    arch            TEXT    NOT NULL,
    duration_ms     BIGINT,
    success         BOOLEAN,
    error_code      TEXT,
    metadata        TEXT,
    PRIMARY KEY (project_id, event_id)
);
CREATE INDEX events_by_time ON events (project_id, ts_ms);

CREATE TABLE rollup_counts (
    project_id   BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day          BIGINT NOT NULL,
    event_type   TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    os           TEXT   NOT NULL,
    arch         TEXT   NOT NULL,
    outcome      BIGINT NOT NULL,
    error_code   TEXT   NOT NULL,
    count        BIGINT NOT NULL,
    duration_sum BIGINT NOT NULL,
    PRIMARY KEY (project_id, day, event_type, name, version, os, arch, outcome, error_code)
);

CREATE TABLE rollup_durations (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT NOT NULL,
    name       TEXT   NOT NULL,
    bucket     BIGINT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (project_id, day, name, bucket)
);

CREATE TABLE rollup_installs (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT NOT NULL,
    kind       BIGINT NOT NULL,
    value      TEXT   NOT NULL,
    sketch     BYTEA  NOT NULL,
    PRIMARY KEY (project_id, day, kind, value)
);
