//! The write path: multi-row event inserts and the rollup delta with its install-sketch cache.

use std::collections::HashMap;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use crate::rollup::{BucketCounts, Delta, InstallSketch, SketchKind};
use crate::storage::{MAX_CATALOG_VERSIONS, PreparedBatch, Result};

/// Events per `INSERT` statement: one multi-row statement costs less than as many single-row
/// ones (about a fifth less CPU per event in a bulk insert; BENCHMARKS.md), and 25 rows of 12
/// parameters stay far below SQLite's parameter limit.
pub(super) const ROWS_PER_INSERT: usize = 25;

/// Parameters of one event row in [`insert_sql`].
pub(super) const EVENT_PARAMS: usize = 12;

/// The `INSERT` of `rows` events (1..=[`ROWS_PER_INSERT`]), built once.
pub(super) fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        (0..=ROWS_PER_INSERT)
            .map(|n| {
                format!(
                    "INSERT OR IGNORE INTO events (project_id, event_id, upload_id, event_type,
                        name, ts_ms, session_id, duration_ms, success, error_code, metadata,
                        facts)
                     VALUES {}",
                    vec![one; n.max(1)].join(", ")
                )
            })
            .collect()
    });
    &all[rows.clamp(1, ROWS_PER_INSERT)]
}

/// Records one batch's stored events (`?1` upload id .. `?10` last event row; migration 0004).
pub(super) const INSERT_UPLOAD: &str =
    "INSERT INTO uploads (upload_id, project_id, received_ms, pseudonym,
        service, service_version, os, arch, first_event, last_event)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Writes a rollup delta inside `tx`. With `removing`, install hashes are taken out of the
/// sketches instead of added. With `cache`, sketches are read from and kept in it.
pub(super) fn apply_delta(
    tx: &rusqlite::Transaction<'_>,
    delta: &Delta,
    removing: bool,
    mut cache: Option<&mut SketchCache>,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO rollup_counts (project_id, day, event_type, name, version, os, arch, outcome,
            error_code, count, duration_sum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (project_id, day, event_type, name, version, os, arch, outcome, error_code)
         DO UPDATE SET count = count + excluded.count,
                       duration_sum = duration_sum + excluded.duration_sum",
    )?;
    for (p, k, count, dur) in delta.sorted_counts() {
        stmt.execute(params![
            p,
            k.day,
            k.event_type,
            k.name,
            k.version,
            k.os,
            k.arch,
            k.outcome,
            k.error_code,
            count,
            dur
        ])?;
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO rollup_durations (project_id, day, name, bucket, count)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (project_id, day, name, bucket) DO UPDATE SET count = count + excluded.count",
    )?;
    for (p, day, name, bucket, count) in delta.sorted_durations() {
        stmt.execute(params![p, day, name, bucket, count])?;
    }
    let version_durations = delta.sorted_version_durations();
    if !version_durations.is_empty() {
        // Removing updates existing rows only: events stored before migration 0008 are in no
        // per-version histogram, and forgetting them must not leave negative rows behind.
        let mut stmt = tx.prepare_cached(if removing {
            "UPDATE rollup_version_durations SET count = count + ?6
             WHERE project_id = ?1 AND day = ?2 AND name = ?3 AND version = ?4 AND bucket = ?5"
        } else {
            "INSERT INTO rollup_version_durations (project_id, day, name, version, bucket, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (project_id, day, name, version, bucket)
             DO UPDATE SET count = count + excluded.count"
        })?;
        for (p, day, name, version, bucket, count) in version_durations {
            stmt.execute(params![p, day, name, version, bucket, count])?;
        }
    }
    apply_analytics(tx, delta)?;
    let mut get = tx.prepare_cached(
        "SELECT sketch FROM rollup_installs
         WHERE project_id = ?1 AND day = ?2 AND kind = ?3 AND value = ?4",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO rollup_installs (project_id, day, kind, value, sketch)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (p, day, kind, value, hashes) in delta.sorted_installs() {
        let key = (p, day, kind, value.to_owned());
        let cached = cache.as_deref_mut().and_then(|c| c.map.remove(&key));
        let (mut sketch, existed) = match cached {
            Some(sketch) => (sketch, true),
            None => {
                let stored: Option<Vec<u8>> = get
                    .query_row(params![p, day, kind.code(), value], |r| r.get(0))
                    .optional()?;
                if removing && stored.is_none() {
                    continue;
                }
                let existed = stored.is_some();
                let sketch = stored
                    .as_deref()
                    .map(InstallSketch::decode)
                    .unwrap_or_default();
                (sketch, existed)
            }
        };
        let mut changed = !existed;
        for &h in hashes {
            if removing {
                sketch.remove(h);
                changed = true;
            } else {
                changed |= sketch.insert(h);
            }
        }
        // Most installs seen on a day were seen before that day's earlier commits: their
        // sketch is unchanged and is not written again.
        if changed {
            put.execute(params![p, day, kind.code(), value, sketch.encode()])?;
        }
        if let Some(c) = cache.as_deref_mut() {
            c.map.insert(key, sketch);
        }
    }
    Ok(())
}

/// The install sketches as last committed by this connection, keyed like the primary key of
/// `rollup_installs`, so that a commit neither reads nor decodes the sketches it updates, and
/// writes only those that changed. Valid while `PRAGMA data_version` is unchanged (no other
/// connection, such as `optel forget` in another process, committed since).
#[derive(Debug, Default)]
pub(super) struct SketchCache {
    pub(super) data_version: i64,
    pub(super) map: HashMap<(i64, i64, SketchKind, String), InstallSketch>,
}

/// Most sketches kept in [`SketchCache`] (each at most ~2 KiB) before it starts afresh.
pub(super) const SKETCH_CACHE_MAX: usize = 20_000;

/// Stores the catalogs the batches carry and marks the versions they name as seen at
/// `now_ms`, keeping at most [`MAX_CATALOG_VERSIONS`] per project (the least recently seen
/// go first).
pub(super) fn store_catalogs(
    tx: &rusqlite::Transaction<'_>,
    batches: &[PreparedBatch],
    now_ms: i64,
) -> Result<()> {
    let mut added = std::collections::BTreeSet::new();
    for p in batches {
        let Some(hash) = &p.batch.catalog_hash else {
            continue;
        };
        match &p.batch.catalog {
            Some(catalog) => {
                let json = serde_json::to_string(catalog).unwrap_or_default();
                tx.prepare_cached(
                    "INSERT INTO catalogs (project_id, hash, catalog, first_seen_ms, last_seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT (project_id, hash)
                     DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
                )?
                .execute(params![p.project_id, hash, json, now_ms])?;
                added.insert(p.project_id);
            }
            None => {
                tx.prepare_cached(
                    "UPDATE catalogs SET last_seen_ms = max(last_seen_ms, ?3)
                     WHERE project_id = ?1 AND hash = ?2",
                )?
                .execute(params![p.project_id, hash, now_ms])?;
            }
        }
    }
    for project_id in added {
        tx.prepare_cached(
            "DELETE FROM catalogs WHERE project_id = ?1 AND hash NOT IN (
                SELECT hash FROM catalogs WHERE project_id = ?1
                ORDER BY last_seen_ms DESC, hash LIMIT ?2)",
        )?
        .execute(params![project_id, MAX_CATALOG_VERSIONS as i64])?;
    }
    Ok(())
}

/// Upserts the schema version 2 rollups of a delta (breakdowns, phases, measurements); a
/// delta without any (every version 1 batch) prepares no statement.
fn apply_analytics(tx: &rusqlite::Transaction<'_>, delta: &Delta) -> Result<()> {
    if !delta.breakdowns.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO rollup_breakdowns (project_id, day, event_type, name, attribute, value,
            count, failures)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (project_id, day, event_type, name, attribute, value)
         DO UPDATE SET count = count + excluded.count, failures = failures + excluded.failures",
        )?;
        for (p, (day, event_type, name, attribute, value), count, failures) in
            delta.sorted_breakdowns()
        {
            stmt.execute(params![
                p, day, event_type, name, attribute, value, count, failures
            ])?;
        }
    }
    if !delta.phases.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO rollup_phases (project_id, day, command, phase, parent, version, hist,
            start_ms_sum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (project_id, day, command, phase, parent, version) DO UPDATE SET
            hist = optel_hist_add(hist, excluded.hist),
            start_ms_sum = start_ms_sum + excluded.start_ms_sum",
        )?;
        for (p, (day, command, phase, parent, version), sum) in delta.sorted_phases() {
            stmt.execute(params![
                p,
                day,
                command,
                phase,
                parent,
                version,
                sum.hist.encode(),
                sum.start_ms_sum
            ])?;
        }
    }
    if !delta.measures.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO rollup_measurements (project_id, day, name, version, bucket, count, sum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (project_id, day, name, version, bucket)
         DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum",
        )?;
        for (p, (day, name, version, bucket), count, sum) in delta.sorted_measures() {
            stmt.execute(params![p, day, name, version, bucket, count, sum])?;
        }
    }
    Ok(())
}

/// Registers on `conn` the SQL functions the schema relies on:
/// - `optel_hist_add(a, b)`: the sum of two `rollup_phases` histograms
///   ([`BucketCounts::encode`] BLOBs), which the phase upsert merges with; anything that is
///   not a well-formed histogram counts as empty;
/// - `optel_hist_of_json(text)`: the histogram of a JSON object `{"bucket": count}`, the form
///   before migration 0010, which converts the stored rows with it.
///
/// Both are deterministic and never fail, so a damaged row cannot stop ingest.
///
/// # Errors
/// SQLite refuses the registration.
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("optel_hist_add", 2, flags, |ctx| {
        let mut sum = hist_arg(ctx, 0);
        sum.merge(&hist_arg(ctx, 1));
        Ok(sum.encode())
    })?;
    conn.create_scalar_function("optel_hist_of_json", 1, flags, |ctx| {
        let hist = match ctx.get_raw(0) {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(BucketCounts::from_json)
                .unwrap_or_default(),
            _ => BucketCounts::default(),
        };
        Ok(hist.encode())
    })
}

/// Argument `i` of a histogram function: a BLOB decoded, anything else empty.
fn hist_arg(ctx: &Context<'_>, i: usize) -> BucketCounts {
    match ctx.get_raw(i) {
        ValueRef::Blob(b) => BucketCounts::decode(b),
        _ => BucketCounts::default(),
    }
}
