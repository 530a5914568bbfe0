-- optel collector, SQLite schema version 5: high-water marks of cumulative OTLP sums.
--
-- A cumulative `command_invocation` series (per install, scope, attributes and start time:
-- `series` is the SHA-256 of those, src/otlp/metrics.rs) reports its total since its start;
-- `stored` is how many of those invocations are stored, so the next export stores only the
-- difference. Kept in the database, not in memory: it must survive a restart and be shared by
-- every collector of one database. A row no export updated for 90 days (the oldest event
-- ingest accepts) is deleted by the next update.
CREATE TABLE otlp_cumulative (
    project_id INTEGER NOT NULL,
    series     BLOB    NOT NULL,
    stored     INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, series)
) WITHOUT ROWID;
CREATE INDEX otlp_cumulative_by_time ON otlp_cumulative (updated_ms);
