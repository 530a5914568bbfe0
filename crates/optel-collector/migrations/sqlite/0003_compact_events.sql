-- optel collector, SQLite schema version 3: a compact events table for fast ingest.
--
-- Measured (BENCHMARKS.md, "SQLite ingest"): the index on ts_ms cost 3x the CPU of the insert
-- itself, because event timestamps arrive in random order within the last hours and every
-- event dirtied a random index page. Retention only needs whole UTC days, so the index is now on
-- the day, whose entries for one day are appended in rowid order (a handful of hot pages).
-- Event and session ids are UUIDs (validated at ingest) stored as their 16 bytes, not 36
-- characters: the unique index that makes retries idempotent halves in size.
CREATE TABLE events_v3 (
    project_id      INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    ts_ms           INTEGER NOT NULL,
    received_ms     INTEGER NOT NULL,
    service         TEXT    NOT NULL,
    service_version TEXT    NOT NULL,
    pseudonym       TEXT    NOT NULL,
    session_id      BLOB    NOT NULL,
    os              TEXT    NOT NULL,
    arch            TEXT    NOT NULL,
    duration_ms     INTEGER,
    success         INTEGER,
    error_code      TEXT,
    metadata        TEXT
);
INSERT INTO events_v3 SELECT project_id, unhex(replace(event_id, '-', '')), event_type, name,
    ts_ms, received_ms, service, service_version, pseudonym, unhex(replace(session_id, '-', '')),
    os, arch, duration_ms, success, error_code, metadata
    FROM events ORDER BY rowid;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE UNIQUE INDEX events_by_id ON events (project_id, event_id);
-- UTC day of the event (src/rollup.rs `day_of`; timestamps are positive, so `/` is floor).
CREATE INDEX events_by_day ON events (ts_ms / 86400000);
