-- optel collector, PostgreSQL schema version 3: high-water marks of cumulative OTLP sums
-- (as SQLite schema version 5, migrations/sqlite/0005_otlp_cumulative.sql).
CREATE TABLE otlp_cumulative (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    series     BYTEA  NOT NULL,
    stored     BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (project_id, series)
);
CREATE INDEX otlp_cumulative_by_time ON otlp_cumulative (updated_ms);
