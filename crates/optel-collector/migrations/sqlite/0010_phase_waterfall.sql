-- optel collector, SQLite schema version 10: the phase waterfall (docs/adr/011-analytics-rollups.md,
-- src/rollup.rs). `rollup_phases` is keyed by the enclosing phase too, keeps the sum of the
-- phases' start offsets, and holds its histogram as a compact BLOB (rollup::BucketCounts,
-- merged in the upsert by the function optel_hist_add that the collector registers) instead of
-- a JSON object: parsing ~9 MB of JSON was most of a 30-day `/phases` query (BENCHMARKS.md,
-- "Phase histograms in binary").
--
-- Rows stored before keep their counts, at the top level (parent '') with a start sum of 0;
-- the facts of their events read the same way, so deletion by pseudonym still subtracts
-- exactly. optel_hist_of_json, registered by the collector, converts the old histograms.

CREATE TABLE rollup_phases_v10 (
    project_id   INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day          INTEGER NOT NULL,
    command      TEXT    NOT NULL,
    phase        TEXT    NOT NULL,
    -- Name of the enclosing phase, '' at the top level.
    parent       TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    hist         BLOB    NOT NULL,
    -- Sum of the phases' start offsets from their command's start, ms.
    start_ms_sum INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, command, phase, parent, version)
) WITHOUT ROWID;

INSERT INTO rollup_phases_v10 (project_id, day, command, phase, parent, version, hist,
    start_ms_sum)
SELECT project_id, day, command, phase, '', version, optel_hist_of_json(hist), 0
FROM rollup_phases;

DROP TABLE rollup_phases;
ALTER TABLE rollup_phases_v10 RENAME TO rollup_phases;
