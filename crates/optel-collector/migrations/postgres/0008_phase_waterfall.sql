-- optel collector, PostgreSQL schema version 8: the phase waterfall
-- (docs/adr/011-analytics-rollups.md, src/rollup.rs). `rollup_phases` is keyed by the
-- enclosing phase too, keeps the sum of the phases' start offsets, and holds its histogram as
-- int8[] (rollup::BucketCounts::to_array: the first bucket, then the count of each bucket from
-- it on) instead of JSONB: turning ~9 MB of JSONB into text and parsing it was most of a
-- 30-day `/phases` query (BENCHMARKS.md, "Phase histograms in binary").
--
-- Rows stored before keep their counts, at the top level (parent '') with a start sum of 0;
-- the facts of their events read the same way, so deletion by pseudonym still subtracts
-- exactly. Collectors of an older version cannot write the new form: upgrade them together.

ALTER TABLE rollup_phases ADD COLUMN parent TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE rollup_phases ADD COLUMN start_ms_sum BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollup_phases ADD COLUMN counts BIGINT[];

-- {"bucket": count} → [first bucket, count, count, …], zeros between, none at the ends.
UPDATE rollup_phases AS r SET counts = coalesce((
    SELECT array_prepend(b.lo, array_agg(coalesce(e.c, 0) ORDER BY g))
    FROM (SELECT min(key::int8) AS lo, max(key::int8) AS hi
          FROM jsonb_each_text(r.hist) WHERE value::int8 <> 0) AS b
    CROSS JOIN LATERAL generate_series(b.lo, b.hi) AS g
    LEFT JOIN (SELECT key::int8 AS k, value::int8 AS c FROM jsonb_each_text(r.hist)) AS e
        ON e.k = g
    GROUP BY b.lo), '{}');

ALTER TABLE rollup_phases DROP COLUMN hist;
ALTER TABLE rollup_phases RENAME COLUMN counts TO hist;
ALTER TABLE rollup_phases ALTER COLUMN hist SET NOT NULL;
ALTER TABLE rollup_phases ALTER COLUMN parent DROP DEFAULT;
ALTER TABLE rollup_phases ALTER COLUMN start_ms_sum DROP DEFAULT;
ALTER TABLE rollup_phases DROP CONSTRAINT rollup_phases_pkey;
ALTER TABLE rollup_phases ADD PRIMARY KEY (project_id, day, command, phase, parent, version);

DROP FUNCTION optel_hist_add(jsonb, jsonb);

-- The sum of two histograms in the form above, buckets whose count falls to 0 dropped from the
-- ends; the phase upsert merges with it, so several collectors may share the database.
CREATE FUNCTION optel_hist_add(a int8[], b int8[]) RETURNS int8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH t AS (
        SELECT h[1] + i - 2 AS k, h[i] AS c
        FROM (VALUES (a), (b)) AS v(h), generate_subscripts(h, 1) AS i
        WHERE i > 1 AND h[1] IS NOT NULL AND h[i] IS NOT NULL
    ), s AS (
        SELECT k, sum(c)::int8 AS c FROM t GROUP BY k HAVING sum(c) <> 0
    )
    SELECT coalesce((
        SELECT array_prepend(r.lo, array_agg(coalesce(s.c, 0) ORDER BY g))
        FROM (SELECT min(k) AS lo, max(k) AS hi FROM s) AS r
        CROSS JOIN LATERAL generate_series(r.lo, r.hi) AS g
        LEFT JOIN s ON s.k = g
        GROUP BY r.lo), '{}')
$$;
