-- optel collector, SQLite schema version 7: event catalogs and the analytics rollups of schema
-- version 2 batches (docs/adr/011-analytics-rollups.md, src/rollup.rs).

-- Each catalog version a project's batches brought, at most 100 per project (the one seen
-- least recently is dropped first: storage::MAX_CATALOG_VERSIONS).
CREATE TABLE catalogs (
    project_id    INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    hash          TEXT    NOT NULL,
    catalog       TEXT    NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    PRIMARY KEY (project_id, hash)
) WITHOUT ROWID;

-- What the rollups below counted of each event beyond its columns (breakdown values, phases,
-- measurement value; rollup::Extras as JSON, NULL when none): deletion by pseudonym subtracts
-- exactly that.
ALTER TABLE events ADD COLUMN facts TEXT;

-- Events and failed commands per UTC day, event and value of a declared dimension attribute.
CREATE TABLE rollup_breakdowns (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    attribute  TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    failures   INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, event_type, name, attribute, value)
) WITHOUT ROWID;

-- Phase duration histogram per UTC day, command, phase and version: one row a key, its
-- buckets (rollup::value_bucket of the duration in ms) a JSON object {"bucket": count}, merged
-- by the upsert. A row a bucket made a 30-day query scan ~540,000 rows at 10 M events
-- (BENCHMARKS.md, "Analytics rollups"); a row a key, ~3,600.
CREATE TABLE rollup_phases (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    command    TEXT    NOT NULL,
    phase      TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    hist       TEXT    NOT NULL,
    PRIMARY KEY (project_id, day, command, phase, version)
) WITHOUT ROWID;

-- Measurement histogram (with each bucket's sum) per UTC day, name and version.
CREATE TABLE rollup_measurements (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    sum        REAL    NOT NULL,
    PRIMARY KEY (project_id, day, name, version, bucket)
) WITHOUT ROWID;
