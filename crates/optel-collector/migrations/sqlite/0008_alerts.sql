-- optel collector: release health and alert hooks (docs/adr/013-release-health-and-alerts.md).

-- Command duration histogram per UTC day and tool version (bucket: src/rollup.rs
-- duration_bucket): each version's p95 for release health. Fed from this migration on; days
-- before it have no rows, so their p95 per version reads as unknown.
CREATE TABLE rollup_version_durations (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, name, version, bucket)
) WITHOUT ROWID;

-- Webhooks posted when a project's release health changes. The secret signs each body
-- (HMAC-SHA256), so it is kept as given, not hashed.
CREATE TABLE alert_hooks (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    kinds      TEXT    NOT NULL,
    log        INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX alert_hooks_by_project ON alert_hooks (project_id);

-- Conditions that fired, so each fires once per (project, kind, version, command, detail).
CREATE TABLE alert_fired (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    command    TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    fired_ms   INTEGER NOT NULL,
    PRIMARY KEY (project_id, kind, version, command, detail)
) WITHOUT ROWID;
