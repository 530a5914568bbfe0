//! The reads of the [`Store`](crate::storage::Store) trait that queries rely on: the daily
//! rollups (count cells, duration histograms, install sketches, breakdowns, phases,
//! measurements) and the stored catalogs. Each function is the `Store` method of the same
//! name, run on the store's pool.

use deadpool_postgres::Pool;
use optel_wire::catalog::Catalog;

use super::get;
use crate::rollup::{
    BreakdownCount, BucketCounts, CountKey, CountRow, DayRange, HistRow, InstallSketch,
    MeasureHist, PhaseHist, SketchKind, SketchRow, VersionHistRow,
};
use crate::storage::{Result, StoredCatalog};

/// A [`CountRow`] from the columns day, event_type, name, version, os, arch, outcome,
/// error_code, count, duration_sum.
fn count_row(r: &tokio_postgres::Row) -> CountRow {
    CountRow {
        key: CountKey {
            day: r.get(0),
            event_type: r.get(1),
            name: r.get(2),
            version: r.get(3),
            os: r.get(4),
            arch: r.get(5),
            outcome: r.get(6),
            error_code: r.get(7),
        },
        count: r.get(8),
        duration_sum: r.get(9),
    }
}

pub(super) async fn counts(pool: &Pool, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT c.day, k.event_type, k.name, k.version, k.os, k.arch, k.outcome,
                    k.error_code, c.count, c.duration_sum
             FROM rollup_cells c JOIN rollup_keys k ON k.key_id = c.key_id
             WHERE c.project_id = $1 AND c.day >= $2 AND c.day <= $3",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(rows.iter().map(count_row).collect())
}

pub(super) async fn counts_total(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
) -> Result<Vec<CountRow>> {
    let rows = get(pool)
        .await?
        .query(
            // Summed by key id first (integers hash fast), then named.
            // Dated on the first day, as the trait documents; same columns as `counts`.
            "SELECT $2::int8, k.event_type, k.name, k.version, k.os, k.arch, k.outcome,
                    k.error_code, s.count, s.duration_sum
             FROM (SELECT key_id, SUM(count)::int8 AS count,
                          SUM(duration_sum)::int8 AS duration_sum
                   FROM rollup_cells
                   WHERE project_id = $1 AND day >= $2 AND day <= $3
                   GROUP BY key_id) AS s
             JOIN rollup_keys k ON k.key_id = s.key_id",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(rows.iter().map(count_row).collect())
}

pub(super) async fn day_totals(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
) -> Result<Vec<(i64, i64, i64, i64)>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT day, SUM(count)::int8,
                    COALESCE(SUM(count) FILTER (WHERE command), 0)::int8,
                    COALESCE(SUM(count) FILTER (WHERE failed), 0)::int8
             FROM rollup_cells WHERE project_id = $1 AND day >= $2 AND day <= $3
             GROUP BY day",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

pub(super) async fn catalog(pool: &Pool, project_id: i64, hash: &str) -> Result<Option<Catalog>> {
    let hash = hash.to_owned();
    let row = get(pool)
        .await?
        .query_opt(
            "SELECT catalog FROM catalogs WHERE project_id = $1 AND hash = $2",
            &[&project_id, &hash],
        )
        .await?;
    Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
}

pub(super) async fn catalogs(pool: &Pool, project_id: i64) -> Result<Vec<StoredCatalog>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT hash, catalog, first_seen_ms, last_seen_ms FROM catalogs
             WHERE project_id = $1 ORDER BY last_seen_ms DESC, hash",
            &[&project_id],
        )
        .await?;
    // A catalog that no longer parses (written by a newer optel) is skipped.
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(StoredCatalog {
                hash: r.get(0),
                catalog: serde_json::from_str(r.get::<_, &str>(1)).ok()?,
                first_seen_ms: r.get(2),
                last_seen_ms: r.get(3),
            })
        })
        .collect())
}

pub(super) async fn breakdowns(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
) -> Result<Vec<BreakdownCount>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT event_type, name, attribute, value, SUM(count)::int8,
                    SUM(failures)::int8
             FROM rollup_breakdowns WHERE project_id = $1 AND day >= $2 AND day <= $3
             GROUP BY event_type, name, attribute, value",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| BreakdownCount {
            event_type: r.get(0),
            name: r.get(1),
            attribute: r.get(2),
            value: r.get(3),
            count: r.get(4),
            failures: r.get(5),
        })
        .collect())
}

pub(super) async fn phases(pool: &Pool, project_id: i64, days: DayRange) -> Result<Vec<PhaseHist>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT command, phase, parent, version, hist, start_ms_sum
             FROM rollup_phases WHERE project_id = $1 AND day >= $2 AND day <= $3",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(crate::rollup::sum_phase_rows(rows.iter().map(|r| {
        PhaseHist {
            command: r.get(0),
            phase: r.get(1),
            parent: r.get(2),
            version: r.get(3),
            // A damaged array (NULL elements) reads as empty, like a damaged BLOB.
            hist: r
                .try_get::<_, Vec<i64>>(4)
                .map(|a| BucketCounts::from_array(&a))
                .unwrap_or_default(),
            start_ms_sum: r.get(5),
        }
    })))
}

pub(super) async fn measurements(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
) -> Result<Vec<MeasureHist>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT name, version, bucket, SUM(count)::int8, SUM(sum)::float8
             FROM rollup_measurements WHERE project_id = $1 AND day >= $2 AND day <= $3
             GROUP BY name, version, bucket",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| MeasureHist {
            name: r.get(0),
            version: r.get(1),
            bucket: r.get(2),
            count: r.get(3),
            sum: r.get(4),
        })
        .collect())
}

pub(super) async fn durations(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
) -> Result<Vec<HistRow>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT day, name, bucket, count FROM rollup_durations
             WHERE project_id = $1 AND day >= $2 AND day <= $3",
            &[&project_id, &days.first, &days.last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| HistRow {
            day: r.get(0),
            name: r.get(1),
            bucket: r.get(2),
            count: r.get(3),
        })
        .collect())
}

pub(super) async fn version_durations(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
    versions: &[&str],
) -> Result<Vec<VersionHistRow>> {
    let versions: Vec<String> = versions.iter().map(|&v| v.to_owned()).collect();
    let rows = get(pool)
        .await?
        .query(
            "SELECT name, version, bucket, SUM(count)::int8 FROM rollup_version_durations
             WHERE project_id = $1 AND version = ANY($2) AND day >= $3 AND day <= $4
             GROUP BY name, version, bucket",
            &[&project_id, &versions, &days.first, &days.last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| VersionHistRow {
            name: r.get(0),
            version: r.get(1),
            bucket: r.get(2),
            count: r.get(3),
        })
        .collect())
}

pub(super) async fn installs(
    pool: &Pool,
    project_id: i64,
    days: DayRange,
    kinds: &[SketchKind],
) -> Result<Vec<SketchRow>> {
    let codes: Vec<i64> = kinds.iter().map(|k| k.code()).collect();
    let rows = get(pool)
        .await?
        .query(
            "SELECT day, kind, value, sketch FROM rollup_installs
             WHERE project_id = $1 AND kind = ANY($2) AND day >= $3 AND day <= $4",
            &[&project_id, &codes, &days.first, &days.last],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(SketchRow {
                day: r.get(0),
                kind: SketchKind::from_code(r.get(1))?,
                value: r.get(2),
                sketch: InstallSketch::decode(r.get(3)),
            })
        })
        .collect())
}
