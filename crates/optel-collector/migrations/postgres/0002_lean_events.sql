-- optel collector, PostgreSQL schema version 2: lean raw events for ingest at scale
-- (docs/adr/004-collector-storage.md; BENCHMARKS.md, "PostgreSQL ingest", has the profiles).
--
-- Measured on version 1 with perf during `optel bench ingest`: the foreign key check of every
-- inserted event (an RI trigger running one SPI query per row) took ~18 % of the database's
-- CPU, and the unique index on a 36-character TEXT id compared with the locale's strcoll. The
-- batch-level columns (pseudonym, service, version, OS, architecture, received time) were
-- repeated on every event, and deletion by pseudonym had no index at all (a full scan).
-- Version 2:
-- - `uploads`: one row per ingested batch with the batch-level columns, indexed by pseudonym
--   (one index entry per batch, not per event). `upload_id`s come from a sequence that hands
--   each collector a block of 1,024 at a time, so they grow with time;
-- - `events`: UUID ids (16 bytes, memcmp), the upload it came in, no foreign key
--   (`PgStore::delete_project` deletes a project's events itself), and BRIN indexes on
--   `upload_id` (deletion by pseudonym) and `ts_ms` (retention): both grow with insertion
--   order, so a BRIN finds their rows for almost no cost per insert, where the B-tree
--   `events_by_time` was one more index descent per event;
-- - count rollups keyed by integers (below); the other rollup text keys in the "C" collation
--   (byte order, as before for the ASCII names stored, without strcoll); room on each rollup
--   page for HOT updates (fillfactor 70): their rows are updated in place by every commit.
CREATE SEQUENCE upload_ids INCREMENT BY 1024;

CREATE TABLE uploads (
    upload_id       BIGINT  PRIMARY KEY,
    project_id      BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    received_ms     BIGINT  NOT NULL,
    pseudonym       TEXT    COLLATE "C" NOT NULL,
    service         TEXT    NOT NULL,
    service_version TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    arch            TEXT    NOT NULL
);
CREATE INDEX uploads_by_pseudonym ON uploads (pseudonym);
CREATE INDEX uploads_by_time ON uploads USING brin (received_ms);

CREATE TABLE events_v2 (
    project_id  BIGINT  NOT NULL,
    event_id    UUID    NOT NULL,
    upload_id   BIGINT  NOT NULL,
    ts_ms       BIGINT  NOT NULL,
    duration_ms BIGINT,
    session_id  UUID    NOT NULL,
    success     BOOLEAN,
    event_type  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    error_code  TEXT,
    metadata    TEXT,
    PRIMARY KEY (project_id, event_id)
);

-- Version 1 events: one upload per distinct batch-level tuple.
INSERT INTO uploads (upload_id, project_id, received_ms, pseudonym, service, service_version,
                     os, arch)
    SELECT row_number() OVER (ORDER BY received_ms, project_id, pseudonym),
           project_id, received_ms, pseudonym, service, service_version, os, arch
    FROM (SELECT DISTINCT project_id, received_ms, pseudonym, service, service_version, os, arch
          FROM events) AS d;
SELECT setval('upload_ids', COALESCE((SELECT max(upload_id) FROM uploads), 0) + 1, false);
INSERT INTO events_v2 (project_id, event_id, upload_id, ts_ms, duration_ms, session_id, success,
                       event_type, name, error_code, metadata)
    SELECT e.project_id, e.event_id::uuid, u.upload_id, e.ts_ms, e.duration_ms,
           e.session_id::uuid, e.success, e.event_type, e.name, e.error_code, e.metadata
    FROM events e
    JOIN uploads u ON u.project_id = e.project_id AND u.received_ms = e.received_ms
        AND u.pseudonym = e.pseudonym AND u.service = e.service
        AND u.service_version = e.service_version AND u.os = e.os AND u.arch = e.arch;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
ALTER INDEX events_v2_pkey RENAME TO events_pkey;
CREATE INDEX events_by_upload ON events USING brin (upload_id);
CREATE INDEX events_by_time ON events USING brin (ts_ms);

-- Count rollups, dictionary-encoded: each distinct (project, event type, name, version, OS,
-- architecture, outcome, error code) is a row of `rollup_keys`, and `rollup_cells` holds one
-- row per day and key with integer keys only. A 30-day dashboard query sums ~50,000 cells per
-- project at 100,000 installs; grouping them by one integer instead of seven text columns
-- took it from 55-80 ms to ~25 ms (BENCHMARKS.md), and the upserts of every commit compare
-- three integers instead of nine columns. `command` and `failed` repeat what the key says so
-- that per-day totals need no join. The view `rollup_counts` keeps the version 1 shape for
-- readers such as the Grafana dashboard (deploy/grafana).
CREATE TABLE rollup_keys (
    key_id     BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    event_type TEXT   COLLATE "C" NOT NULL,
    name       TEXT   COLLATE "C" NOT NULL,
    version    TEXT   COLLATE "C" NOT NULL,
    os         TEXT   COLLATE "C" NOT NULL,
    arch       TEXT   COLLATE "C" NOT NULL,
    outcome    BIGINT NOT NULL,
    error_code TEXT   COLLATE "C" NOT NULL,
    UNIQUE (project_id, event_type, name, version, os, arch, outcome, error_code)
);
CREATE TABLE rollup_cells (
    project_id   BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day          BIGINT  NOT NULL,
    key_id       BIGINT  NOT NULL,
    command      BOOLEAN NOT NULL,
    failed       BOOLEAN NOT NULL,
    count        BIGINT  NOT NULL,
    duration_sum BIGINT  NOT NULL,
    PRIMARY KEY (project_id, day, key_id)
) WITH (fillfactor = 70);
INSERT INTO rollup_keys (project_id, event_type, name, version, os, arch, outcome, error_code)
    SELECT DISTINCT project_id, event_type, name, version, os, arch, outcome, error_code
    FROM rollup_counts;
INSERT INTO rollup_cells (project_id, day, key_id, command, failed, count, duration_sum)
    SELECT c.project_id, c.day, k.key_id, c.event_type = 'command',
           c.event_type = 'command' AND c.outcome = 0, c.count, c.duration_sum
    FROM rollup_counts c
    JOIN rollup_keys k ON k.project_id = c.project_id
        AND k.event_type = c.event_type COLLATE "C" AND k.name = c.name COLLATE "C"
        AND k.version = c.version COLLATE "C" AND k.os = c.os COLLATE "C"
        AND k.arch = c.arch COLLATE "C" AND k.outcome = c.outcome
        AND k.error_code = c.error_code COLLATE "C";
DROP TABLE rollup_counts;
CREATE VIEW rollup_counts AS
    SELECT c.project_id, c.day, k.event_type, k.name, k.version, k.os, k.arch, k.outcome,
           k.error_code, c.count, c.duration_sum
    FROM rollup_cells c JOIN rollup_keys k ON k.key_id = c.key_id;

ALTER TABLE rollup_durations
    ALTER COLUMN name TYPE TEXT COLLATE "C",
    SET (fillfactor = 70);
ALTER TABLE rollup_installs
    ALTER COLUMN value TYPE TEXT COLLATE "C",
    SET (fillfactor = 70);
