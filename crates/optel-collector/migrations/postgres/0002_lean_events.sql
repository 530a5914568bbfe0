-- optel collector, PostgreSQL schema version 2: a leaner raw events table for ingest at scale
-- (docs/adr/004-collector-storage.md, BENCHMARKS.md "PostgreSQL ingest").
--
-- Measured on version 1 (perf of the backend during `optel bench ingest`): the foreign key
-- check on every inserted event (an RI trigger running one SPI query per row) took ~18 % of the
-- backend's CPU, and the unique index on a 36-character TEXT id compared with the locale's
-- strcoll. Version 2:
-- - `event_id` and `session_id` are UUID (16 bytes, compared with memcmp);
-- - no foreign key on `events`: `PgStore::delete_project` deletes a project's events itself;
-- - `events_by_time` (a B-tree on (project_id, ts_ms), one more index insert per event) becomes
--   a BRIN index on ts_ms, which retention needs only to find old block ranges, and costs
--   almost nothing per insert since rows arrive roughly in time order;
-- - an index on pseudonym, so deletion by pseudonym (`forget`) no longer scans every event;
-- - the rollup tables, whose rows are updated in place on every commit, leave room on each page
--   for HOT updates (fillfactor 70).
CREATE TABLE events_v2 (
    project_id      BIGINT  NOT NULL,
    event_id        UUID    NOT NULL,
    ts_ms           BIGINT  NOT NULL,
    received_ms     BIGINT  NOT NULL,
    duration_ms     BIGINT,
    session_id      UUID    NOT NULL,
    success         BOOLEAN,
    event_type      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    service_version TEXT    NOT NULL,
    pseudonym       TEXT    COLLATE "C" NOT NULL,
    os              TEXT    NOT NULL,
    arch            TEXT    NOT NULL,
    error_code      TEXT,
    metadata        TEXT,
    PRIMARY KEY (project_id, event_id)
);
INSERT INTO events_v2 (project_id, event_id, ts_ms, received_ms, duration_ms, session_id, success,
                       event_type, name, service, service_version, pseudonym, os, arch,
                       error_code, metadata)
    SELECT project_id, event_id::uuid, ts_ms, received_ms, duration_ms, session_id::uuid, success,
           event_type, name, service, service_version, pseudonym, os, arch, error_code, metadata
    FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
ALTER INDEX events_v2_pkey RENAME TO events_pkey;
CREATE INDEX events_by_time ON events USING brin (ts_ms);
CREATE INDEX events_by_pseudonym ON events (pseudonym);

ALTER TABLE rollup_counts SET (fillfactor = 70);
ALTER TABLE rollup_durations SET (fillfactor = 70);
ALTER TABLE rollup_installs SET (fillfactor = 70);
