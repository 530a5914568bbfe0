-- The differential-privacy mode of public views (docs/adr/012-differential-privacy-public-views.md):
-- a project's settings, and each UTC day's noisy answers with the ε each spent (the day's spent
-- budget is their sum). Rows of days before yesterday are deleted when an answer is recorded.
-- Numbered after the analytics (0007) and alerts (0008) migrations of the same release.
CREATE TABLE public_dp (
    project_id   INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    epsilon      REAL    NOT NULL,
    daily_budget REAL    NOT NULL
);

CREATE TABLE public_dp_answers (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    day        INTEGER NOT NULL,
    query      TEXT    NOT NULL,
    view       TEXT    NOT NULL,
    first_day  INTEGER NOT NULL,
    last_day   INTEGER NOT NULL,
    epsilon    REAL    NOT NULL,
    body       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, query)
);
