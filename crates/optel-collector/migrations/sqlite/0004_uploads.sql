-- optel collector, SQLite schema version 4: the batch-level columns move to `uploads`, as in the
-- PostgreSQL schema 2 (docs/adr/004-collector-storage.md).
--
-- Measured (BENCHMARKS.md, "SQLite ingest"): the index on the 32-character pseudonym of every
-- event cost about a fifth of ingest throughput. One batch is one install, and the events a
-- batch stores are consecutive rows, so one `uploads` row per batch records them: its
-- pseudonym (indexed: one index entry per batch, not per event), the other columns every event
-- of the batch shares (service, version, OS, architecture, received time), and the range of
-- event rows it stored. Deletion by pseudonym reads an install's uploads through the index
-- and each upload's events by row range; retention deletes an upload once its events are gone
-- (through an index on its received time).
-- Each event row is ~60 bytes narrower.
--
-- `events.seq` names the rowid, so that a VACUUM keeps the row numbers that `uploads` records.
-- `events` has no foreign key to `projects` any more (a lookup per inserted event):
-- `SqliteStore::delete_project` deletes a project's events and uploads itself.
CREATE TABLE uploads (
    upload_id       INTEGER PRIMARY KEY,
    project_id      INTEGER NOT NULL,
    received_ms     INTEGER NOT NULL,
    pseudonym       TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    service_version TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    arch            TEXT    NOT NULL,
    -- First and last `events.seq` of the upload's events (inclusive).
    first_event     INTEGER NOT NULL,
    last_event      INTEGER NOT NULL
);

-- Version 3 events: one upload per distinct batch-level tuple, ordered as the events came.
CREATE TEMP TABLE upload_keys AS
    SELECT project_id, received_ms, pseudonym, service, service_version, os, arch,
           min(rowid) AS first_event, max(rowid) AS last_event
    FROM events
    GROUP BY project_id, received_ms, pseudonym, service, service_version, os, arch;
INSERT INTO uploads (project_id, received_ms, pseudonym, service, service_version, os, arch,
                     first_event, last_event)
    SELECT project_id, received_ms, pseudonym, service, service_version, os, arch, first_event,
           last_event
    FROM upload_keys ORDER BY first_event;
DROP TABLE upload_keys;
CREATE INDEX uploads_by_key
    ON uploads (project_id, received_ms, pseudonym, service, service_version, os, arch);

CREATE TABLE events_v4 (
    seq         INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL,
    event_id    BLOB    NOT NULL,
    upload_id   INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    ts_ms       INTEGER NOT NULL,
    session_id  BLOB    NOT NULL,
    duration_ms INTEGER,
    success     INTEGER,
    error_code  TEXT,
    metadata    TEXT
);
INSERT INTO events_v4 (seq, project_id, event_id, upload_id, event_type, name, ts_ms, session_id,
                       duration_ms, success, error_code, metadata)
    SELECT e.rowid, e.project_id, e.event_id, u.upload_id, e.event_type, e.name, e.ts_ms,
           e.session_id, e.duration_ms, e.success, e.error_code, e.metadata
    FROM events e
    JOIN uploads u ON u.project_id = e.project_id AND u.received_ms = e.received_ms
        AND u.pseudonym = e.pseudonym AND u.service = e.service
        AND u.service_version = e.service_version AND u.os = e.os AND u.arch = e.arch
    ORDER BY e.rowid;
DROP INDEX uploads_by_key;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE UNIQUE INDEX events_by_id ON events (project_id, event_id);
-- UTC day of the event (src/rollup.rs `day_of`; timestamps are positive, so `/` is floor).
CREATE INDEX events_by_day ON events (ts_ms / 86400000);
CREATE INDEX uploads_by_pseudonym ON uploads (pseudonym);
-- Retention (uploads are appended in received order: one cheap index entry per batch).
CREATE INDEX uploads_by_time ON uploads (received_ms);
