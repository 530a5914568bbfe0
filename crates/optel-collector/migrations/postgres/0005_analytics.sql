-- optel collector, PostgreSQL schema version 5: event catalogs and the analytics rollups of schema
-- version 2 batches (docs/adr/011-analytics-rollups.md, src/rollup.rs).

-- Each catalog version a project's batches brought, at most 100 per project (the one seen
-- least recently is dropped first: storage::MAX_CATALOG_VERSIONS).
CREATE TABLE catalogs (
    project_id    BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    hash          TEXT    COLLATE "C" NOT NULL,
    catalog       TEXT    NOT NULL,
    first_seen_ms BIGINT  NOT NULL,
    last_seen_ms  BIGINT  NOT NULL,
    PRIMARY KEY (project_id, hash)
);

-- What the rollups below counted of each event beyond its columns (breakdown values, phases,
-- measurement value; rollup::Extras as JSON, NULL when none): deletion by pseudonym subtracts
-- exactly that.
ALTER TABLE events ADD COLUMN facts TEXT;

-- Events and failed commands per UTC day, event and value of a declared dimension attribute.
CREATE TABLE rollup_breakdowns (
    project_id BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT  NOT NULL,
    event_type TEXT    COLLATE "C" NOT NULL,
    name       TEXT    COLLATE "C" NOT NULL,
    attribute  TEXT    COLLATE "C" NOT NULL,
    value      TEXT    COLLATE "C" NOT NULL,
    count      BIGINT  NOT NULL,
    failures   BIGINT  NOT NULL,
    PRIMARY KEY (project_id, day, event_type, name, attribute, value)
);

-- Phase duration histogram per UTC day, command, phase and version: one row a key, its
-- buckets (rollup::value_bucket of the duration in ms) a JSON object {"bucket": count}, merged
-- by the upsert through optel_hist_add. A row a bucket made a 30-day query scan ~540,000 rows
-- at 10 M events (BENCHMARKS.md, "Analytics rollups"); a row a key, ~3,600.
CREATE TABLE rollup_phases (
    project_id BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT  NOT NULL,
    command    TEXT    COLLATE "C" NOT NULL,
    phase      TEXT    COLLATE "C" NOT NULL,
    version    TEXT    COLLATE "C" NOT NULL,
    hist       JSONB   NOT NULL,
    PRIMARY KEY (project_id, day, command, phase, version)
);

-- The sum of two histograms {"bucket": count}, buckets whose count falls to 0 left out.
CREATE FUNCTION optel_hist_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, s), '{}'::jsonb) FROM (
        SELECT k, sum(v::bigint) AS s FROM (
            SELECT key, value FROM jsonb_each_text(a)
            UNION ALL SELECT key, value FROM jsonb_each_text(b)) AS t(k, v)
        GROUP BY k HAVING sum(v::bigint) <> 0) AS u
$$;

-- Measurement histogram (with each bucket's sum) per UTC day, name and version.
CREATE TABLE rollup_measurements (
    project_id BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT  NOT NULL,
    name       TEXT    COLLATE "C" NOT NULL,
    version    TEXT    COLLATE "C" NOT NULL,
    bucket     BIGINT  NOT NULL,
    count      BIGINT  NOT NULL,
    sum        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project_id, day, name, version, bucket)
);
