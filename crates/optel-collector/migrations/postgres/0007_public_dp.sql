-- The differential-privacy mode of public views (docs/adr/012-differential-privacy-public-views.md):
-- a project's settings, and each UTC day's noisy answers with the ε each spent (the day's spent
-- budget is their sum). Rows of days before yesterday are deleted when an answer is recorded.
-- Numbered after the analytics (0005) and alerts (0006) migrations of the same release.
CREATE TABLE public_dp (
    project_id   BIGINT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    epsilon      DOUBLE PRECISION NOT NULL,
    daily_budget DOUBLE PRECISION NOT NULL
);

CREATE TABLE public_dp_answers (
    project_id BIGINT  NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        BIGINT  NOT NULL,
    query      TEXT    NOT NULL,
    view       TEXT    NOT NULL,
    first_day  BIGINT  NOT NULL,
    last_day   BIGINT  NOT NULL,
    epsilon    DOUBLE PRECISION NOT NULL,
    body       TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL,
    PRIMARY KEY (project_id, day, query)
);
