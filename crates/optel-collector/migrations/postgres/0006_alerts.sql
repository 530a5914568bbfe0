-- optel collector: release health and alert hooks (docs/adr/013-release-health-and-alerts.md).

-- Command duration histogram per UTC day and tool version (bucket: src/rollup.rs
-- duration_bucket): each version's p95 for release health.
CREATE TABLE rollup_version_durations (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    version    TEXT COLLATE "C" NOT NULL,
    bucket     BIGINT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (project_id, day, name, version, bucket)
) WITH (fillfactor = 70);

-- Webhooks posted when a project's release health changes. The secret signs each body
-- (HMAC-SHA256), so it is kept as given, not hashed.
CREATE TABLE alert_hooks (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    kinds      TEXT    NOT NULL,
    log        BOOLEAN NOT NULL,
    created_ms BIGINT  NOT NULL
);
CREATE INDEX alert_hooks_by_project ON alert_hooks (project_id);

-- Conditions that fired, so each fires once per (project, kind, version, command, detail).
CREATE TABLE alert_fired (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    command    TEXT   NOT NULL,
    detail     TEXT   NOT NULL,
    fired_ms   BIGINT NOT NULL,
    PRIMARY KEY (project_id, kind, version, command, detail)
);
