//! The embedded SQLite backend: WAL mode, one connection behind a mutex (the group-commit
//! writer of [`crate::writer`] is its only writer during ingest), every batch committed in one
//! transaction with its rollups before the HTTP answer.

mod dp;
#[cfg(test)]
mod tests;
mod write;

use write::{
    EVENT_PARAMS, INSERT_UPLOAD, ROWS_PER_INSERT, SKETCH_CACHE_MAX, SketchCache, apply_delta,
    insert_sql, register_functions,
};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use optel_wire::EventType;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    DpEntry, DpLookup, DpRecorded, Durability, InsertOutcome, KeyGrant, PreparedBatch, Project,
    PurgeOutcome, Result, StorageError, Store, StoredCatalog, StoredEvent, kinds_column,
    kinds_of_column,
};
use crate::alerts::{AlertHook, AlertKey, AlertKind};
use crate::rollup::{
    BreakdownCount, BucketCounts, CountKey, CountRow, DayRange, Delta, HistRow, InstallSketch,
    MeasureHist, PhaseHist, SketchKind, SketchRow, VersionHistRow, day_of,
};
use optel_wire::catalog::Catalog;

/// Deletes the raw events before a cutoff (`?2`, ms) through the day index (`?1`: its day).
const PURGE_EVENTS: &str = "DELETE FROM events WHERE ts_ms / 86400000 <= ?1 AND ts_ms < ?2";
/// Deletes the uploads received before `?1` (ms; index `uploads_by_time`). An upload's events
/// lie at most [`crate::ingest::MAX_FUTURE_SKEW_MS`] after it was received, so with `?1` a day
/// before the events' cutoff, every upload deleted has no events left.
const PURGE_UPLOADS: &str = "DELETE FROM uploads WHERE received_ms < ?1";
/// A pseudonym's (`?1`) uploads, in one project (`?2`) or all (NULL).
const FORGET_UPLOADS: &str = "SELECT upload_id, project_id, service_version, os, arch, pseudonym,
        first_event, last_event
     FROM uploads WHERE pseudonym = ?1 AND (?2 IS NULL OR project_id = ?2)";
/// The rollup facts of one upload's (`?1`) events, found by their row range (`?2`..=`?3`).
const FORGET_SELECT: &str = "SELECT ts_ms, event_type, name, duration_ms, success, error_code,
        facts
     FROM events WHERE seq BETWEEN ?2 AND ?3 AND upload_id = ?1";
/// Deletes one upload's (`?1`) events, found by their row range (`?2`..=`?3`).
const FORGET_EVENTS: &str = "DELETE FROM events WHERE seq BETWEEN ?2 AND ?3 AND upload_id = ?1";

/// Every rollup table: retention deletes their days before the cutoff.
const ROLLUP_TABLES: [&str; 7] = [
    "rollup_counts",
    "rollup_durations",
    "rollup_version_durations",
    "rollup_installs",
    "rollup_breakdowns",
    "rollup_phases",
    "rollup_measurements",
];

/// Migrations of the SQLite schema, applied in order; `PRAGMA user_version` records how many ran.
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_rollups.sql"),
    include_str!("../../../migrations/sqlite/0003_compact_events.sql"),
    include_str!("../../../migrations/sqlite/0004_uploads.sql"),
    include_str!("../../../migrations/sqlite/0005_otlp_cumulative.sql"),
    include_str!("../../../migrations/sqlite/0006_browser_keys.sql"),
    include_str!("../../../migrations/sqlite/0007_analytics.sql"),
    include_str!("../../../migrations/sqlite/0008_alerts.sql"),
    include_str!("../../../migrations/sqlite/0009_public_dp.sql"),
    include_str!("../../../migrations/sqlite/0010_phase_waterfall.sql"),
];

/// The embedded SQLite backend: one file, `optel.db`, in the data directory.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Stops the checkpoint thread when the store is dropped.
    checkpointer: Option<Checkpointer>,
    /// Install sketches as last committed (see [`SketchCache`]).
    sketches: Mutex<SketchCache>,
}

/// A thread that checkpoints the WAL from its own connection, so that the writer's commits
/// never stop to copy pages back and fsync (which, with SQLite's default automatic checkpoint
/// on the committing connection, dominated commit latency under steady ingest).
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// How often the checkpoint thread runs a passive checkpoint.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Checkpointer {
    fn spawn(path: &Path) -> Option<Self> {
        let conn = Connection::open(path).ok()?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(1));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("optel-sqlite-checkpoint".into())
            .spawn(move || {
                // Runs until the store is dropped (the sender goes away).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    // PASSIVE never blocks the writer or readers; it copies what it can.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Self { stop, thread })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Waiting for the thread closes its connection first, so that the store's own
        // connection is the last one and SQLite checkpoints and removes the WAL as it closes:
        // the next open does not start by reading a large WAL.
        if let Some(c) = self.checkpointer.take() {
            let _ = c.stop.send(());
            let _ = c.thread.join();
        }
    }
}

impl SqliteStore {
    /// File name of the database inside the data directory.
    pub const FILE_NAME: &'static str = "optel.db";

    /// Opens (creating if needed) the database in `data_dir` and applies pending migrations.
    ///
    /// # Errors
    /// The directory cannot be created, the file cannot be opened, or its schema is newer than
    /// this binary.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, Durability::default())
    }

    /// [`SqliteStore::open`] with an explicit [`Durability`]: `synchronous=FULL` for
    /// [`Durability::Fsync`], `NORMAL` for [`Durability::CrashSafe`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(data_dir: &Path, durability: Durability) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(Self::FILE_NAME);
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode, NORMAL is durable against process crashes (a commit is in the WAL before
        // the call returns); only an OS crash or power cut may lose the last transactions.
        // FULL also syncs the WAL at each commit: one fsync per group commit.
        let synchronous = match durability {
            Durability::Fsync => "FULL",
            Durability::CrashSafe => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Pages are read through a memory map (up to 8 GiB, SQLite may cap it lower), so the
        // page cache mostly holds the pages a transaction dirties: 16 MiB. A larger cache made
        // every commit slower (SQLite scans the whole cache's hash table when it ends a write
        // transaction: 16 % of the CPU of a bulk insert at 256 MiB; BENCHMARKS.md).
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.pragma_update(None, "mmap_size", 8_589_934_592_i64)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Before migrating: migration 0010 and the phase upsert call them.
        register_functions(&conn)?;
        migrate(&mut conn)?;
        // One cached INSERT per chunk length (up to ROWS_PER_INSERT) besides the others.
        conn.set_prepared_statement_cache_capacity(64);
        // Checkpoints run on their own thread and connection (see `Checkpointer`); the
        // writer's automatic checkpoint stays as a backstop only, for a WAL of ~16 MiB, in case
        // long readers keep the passive checkpoints from finishing.
        let checkpointer = Checkpointer::spawn(&path);
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", 4_000)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            checkpointer,
            sketches: Mutex::new(SketchCache::default()),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction committed
        // (rusqlite rolls back on drop), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the sketch cache for a write transaction `tx` (begun IMMEDIATE, so nobody else
    /// commits before it ends), emptied if another connection committed since it was filled.
    fn sketch_cache(&self, tx: &rusqlite::Transaction<'_>) -> Result<SketchCache> {
        let version: i64 = tx.pragma_query_value(None, "data_version", |r| r.get(0))?;
        let mut cache = std::mem::take(
            &mut *self
                .sketches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if cache.data_version != version || cache.map.len() > SKETCH_CACHE_MAX {
            cache.map.clear();
        }
        cache.data_version = version;
        Ok(cache)
    }

    /// Puts the cache back after a successful commit.
    fn keep_sketches(&self, cache: SketchCache) {
        *self
            .sketches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cache;
    }

    /// Forgets every cached sketch (after this connection changed sketches another way).
    fn drop_sketches(&self) {
        self.sketches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .clear();
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = SQLITE_MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StorageError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in SQLITE_MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

const PROJECT_COLUMNS: &str = "id, name, created_ms, public";

fn project_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: row.get(0)?,
        name: row.get(1)?,
        created_ms: row.get(2)?,
        public: row.get(3)?,
    })
}
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn cumulative_marks(
        &self,
        project_id: i64,
        series: &[[u8; 32]],
    ) -> Result<Vec<([u8; 32], i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT stored FROM otlp_cumulative WHERE project_id = ?1 AND series = ?2",
        )?;
        let mut out = Vec::new();
        for key in series {
            if let Some(stored) = stmt
                .query_row(params![project_id, &key[..]], |r| r.get::<_, i64>(0))
                .optional()?
            {
                out.push((*key, stored));
            }
        }
        Ok(out)
    }

    fn advance_cumulative(
        &self,
        project_id: i64,
        marks: &[([u8; 32], i64)],
        now_ms: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO otlp_cumulative (project_id, series, stored, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project_id, series) DO UPDATE
                 SET stored = max(stored, excluded.stored), updated_ms = excluded.updated_ms",
            )?;
            for (key, stored) in marks {
                stmt.execute(params![project_id, &key[..], stored, now_ms])?;
            }
        }
        tx.execute(
            "DELETE FROM otlp_cumulative WHERE updated_ms < ?1",
            [now_ms - crate::ingest::MAX_EVENT_AGE_MS],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        let conn = self.conn();
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    fn create_project(&self, name: &str, key_hash: &str, now_ms: i64) -> Result<Project> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM projects WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StorageError::ProjectExists(name.to_owned()));
        }
        tx.execute(
            "INSERT INTO projects (name, created_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO ingest_keys (key_hash, project_id, created_ms) VALUES (?1, ?2, ?3)",
            params![key_hash, id, now_ms],
        )?;
        tx.commit()?;
        Ok(Project {
            id,
            name: name.to_owned(),
            created_ms: now_ms,
            public: false,
        })
    }

    fn delete_project(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // `events` and `uploads` have no foreign key (a lookup per inserted row, migration
        // 0004): their rows go explicitly; keys and rollups follow by ON DELETE CASCADE.
        for table in ["events", "uploads"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE project_id IN (SELECT id FROM projects WHERE name = ?1)"
                ),
                [name],
            )?;
        }
        let deleted = tx.execute("DELETE FROM projects WHERE name = ?1", [name])? > 0;
        tx.commit()?;
        // Project ids may be reused: no sketch of the deleted project may outlive it.
        self.drop_sketches();
        Ok(deleted)
    }

    fn set_public(&self, name: &str, public: bool) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE projects SET public = ?2 WHERE name = ?1",
            params![name, public],
        )?;
        if n == 0 {
            return Err(StorageError::NoProject(name.to_owned()));
        }
        Ok(())
    }

    fn public_dp(&self, project_id: i64) -> Result<Option<crate::query::DpSettings>> {
        dp::settings(&self.conn(), project_id)
    }

    fn set_public_dp(&self, name: &str, settings: Option<crate::query::DpSettings>) -> Result<()> {
        dp::set(&mut self.conn(), name, settings)
    }

    fn dp_lookup(&self, project_id: i64, day: i64, view: &str, query: &str) -> Result<DpLookup> {
        dp::lookup(&self.conn(), project_id, day, view, query)
    }

    fn dp_record(&self, entry: &DpEntry<'_>) -> Result<DpRecorded> {
        dp::record(&mut self.conn(), entry)
    }

    fn list_projects(&self) -> Result<Vec<Project>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name"
        ))?;
        let rows = stmt.query_map([], project_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1"),
                [name],
                project_from_row,
            )
            .optional()?)
    }

    fn add_key_with_origins(
        &self,
        project: &str,
        key_hash: &str,
        origins: &[String],
        now_ms: i64,
    ) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO ingest_keys (key_hash, project_id, created_ms, origins)
             SELECT ?2, id, ?3, ?4 FROM projects WHERE name = ?1",
            params![project, key_hash, now_ms, super::origins_column(origins)],
        )?;
        if n == 0 {
            return Err(StorageError::NoProject(project.to_owned()));
        }
        Ok(())
    }

    fn revoke_key(&self, key_hash: &str, now_ms: i64) -> Result<bool> {
        let conn = self.conn();
        Ok(conn.execute(
            "UPDATE ingest_keys SET revoked_ms = ?2 WHERE key_hash = ?1 AND revoked_ms IS NULL",
            params![key_hash, now_ms],
        )? > 0)
    }

    fn project_for_key(&self, key_hash: &str) -> Result<Option<KeyGrant>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT p.id, p.name, p.created_ms, p.public, k.origins
                 FROM ingest_keys k JOIN projects p ON p.id = k.project_id
                 WHERE k.key_hash = ?1 AND k.revoked_ms IS NULL",
                [key_hash],
                |row| {
                    Ok(KeyGrant {
                        project: project_from_row(row)?,
                        origins: super::origins_of_column(row.get(4)?),
                    })
                },
            )
            .optional()?)
    }

    fn insert_prepared(
        &self,
        batches: &mut [PreparedBatch],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut sketches = self.sketch_cache(&tx)?;
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut delta = Delta::default();
        {
            // Rowids are assigned as max + 1, so the rows one statement inserts are exactly
            // the rowids after the previous ones: that tells which events of a multi-row
            // statement were new when some were not, and which rows an upload holds.
            let mut last_rowid: i64 =
                tx.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
            let mut upload: i64 =
                tx.query_row("SELECT coalesce(max(upload_id), 0) FROM uploads", [], |r| {
                    r.get(0)
                })?;
            let mut stored = Vec::new();
            for p in batches.iter() {
                let batch = &p.batch;
                stored.clear();
                // The next upload id, taken only if the batch stores an event (then its rows
                // refer to it; otherwise no row does).
                let id = upload + 1;
                let first_row = last_rowid + 1;
                let mut first = 0;
                for chunk in batch.events.chunks(ROWS_PER_INSERT) {
                    let mut stmt = tx.prepare_cached(insert_sql(chunk.len()))?;
                    for (k, e) in chunk.iter().enumerate() {
                        let i = first + k;
                        let at = k * EVENT_PARAMS;
                        stmt.raw_bind_parameter(at + 1, p.project_id)?;
                        stmt.raw_bind_parameter(at + 2, &p.event_ids[i][..])?;
                        stmt.raw_bind_parameter(at + 3, id)?;
                        stmt.raw_bind_parameter(at + 4, e.event_type.as_str())?;
                        stmt.raw_bind_parameter(at + 5, &e.name)?;
                        stmt.raw_bind_parameter(at + 6, e.timestamp.unix_ms())?;
                        stmt.raw_bind_parameter(at + 7, &p.session_ids[i][..])?;
                        stmt.raw_bind_parameter(at + 8, e.duration_ms.map(|d| d as i64))?;
                        stmt.raw_bind_parameter(at + 9, e.success)?;
                        stmt.raw_bind_parameter(at + 10, &e.error_code)?;
                        stmt.raw_bind_parameter(at + 11, &p.metadata[i])?;
                        stmt.raw_bind_parameter(at + 12, &p.facts[i])?;
                    }
                    let n = stmt.raw_execute()? as i64;
                    if n == chunk.len() as i64 {
                        stored.extend(first..first + chunk.len());
                    } else if n > 0 {
                        let mut new_ids: HashSet<Vec<u8>> = tx
                            .prepare_cached(
                                "SELECT event_id FROM events WHERE seq > ?1 AND seq <= ?2",
                            )?
                            .query_map(params![last_rowid, last_rowid + n], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()?;
                        for k in 0..chunk.len() {
                            // The first copy of an id repeated within the chunk is the new one.
                            if new_ids.remove(&p.event_ids[first + k][..]) {
                                stored.push(first + k);
                            }
                        }
                    }
                    last_rowid += n;
                    first += chunk.len();
                }
                if !stored.is_empty() {
                    upload = id;
                    tx.prepare_cached(INSERT_UPLOAD)?.execute(params![
                        id,
                        p.project_id,
                        received_ms,
                        &batch.pseudonym,
                        &batch.service_name,
                        &batch.service_version,
                        &batch.os,
                        &batch.arch,
                        first_row,
                        last_rowid,
                    ])?;
                }
                let outcome = InsertOutcome {
                    inserted: stored.len() as u64,
                    duplicates: (batch.events.len() - stored.len()) as u64,
                };
                if outcome.duplicates == 0 {
                    delta.merge_from(&p.delta);
                } else {
                    // Some events were stored before: only the new ones count.
                    p.delta_of(stored.iter().copied(), &mut delta);
                }
                outcomes.push(outcome);
            }
        }
        // On any error the cache, which may hold sketches of the rolled-back transaction, is
        // not put back: the next commit starts with an empty one.
        apply_delta(&tx, &delta, false, Some(&mut sketches))?;
        write::store_catalogs(&tx, batches, received_ms)?;
        tx.commit()?;
        self.keep_sketches(sketches);
        Ok(outcomes)
    }

    fn counts(&self, project_id: i64, days: DayRange) -> Result<Vec<CountRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT day, event_type, name, version, os, arch, outcome, error_code, count,
                    duration_sum
             FROM rollup_counts WHERE project_id = ?1 AND day >= ?2 AND day <= ?3",
        )?;
        let rows = stmt.query_map(params![project_id, days.first, days.last], |r| {
            Ok(CountRow {
                key: CountKey {
                    day: r.get(0)?,
                    event_type: r.get(1)?,
                    name: r.get(2)?,
                    version: r.get(3)?,
                    os: r.get(4)?,
                    arch: r.get(5)?,
                    outcome: r.get(6)?,
                    error_code: r.get(7)?,
                },
                count: r.get(8)?,
                duration_sum: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn catalog(&self, project_id: i64, hash: &str) -> Result<Option<Catalog>> {
        let conn = self.conn();
        let json: Option<String> = conn
            .prepare_cached("SELECT catalog FROM catalogs WHERE project_id = ?1 AND hash = ?2")?
            .query_row(params![project_id, hash], |r| r.get(0))
            .optional()?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    fn catalogs(&self, project_id: i64) -> Result<Vec<StoredCatalog>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT hash, catalog, first_seen_ms, last_seen_ms FROM catalogs
             WHERE project_id = ?1 ORDER BY last_seen_ms DESC, hash",
        )?;
        let rows = stmt.query_map([project_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, json, first_seen_ms, last_seen_ms) = row?;
            // A catalog that no longer parses (written by a newer optel) is skipped.
            if let Ok(catalog) = serde_json::from_str(&json) {
                out.push(StoredCatalog {
                    hash,
                    catalog,
                    first_seen_ms,
                    last_seen_ms,
                });
            }
        }
        Ok(out)
    }

    fn breakdowns(&self, project_id: i64, days: DayRange) -> Result<Vec<BreakdownCount>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT event_type, name, attribute, value, sum(count), sum(failures)
             FROM rollup_breakdowns WHERE project_id = ?1 AND day >= ?2 AND day <= ?3
             GROUP BY event_type, name, attribute, value",
        )?;
        let rows = stmt.query_map(params![project_id, days.first, days.last], |r| {
            Ok(BreakdownCount {
                event_type: r.get(0)?,
                name: r.get(1)?,
                attribute: r.get(2)?,
                value: r.get(3)?,
                count: r.get(4)?,
                failures: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn phases(&self, project_id: i64, days: DayRange) -> Result<Vec<PhaseHist>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT command, phase, parent, version, hist, start_ms_sum
             FROM rollup_phases WHERE project_id = ?1 AND day >= ?2 AND day <= ?3",
        )?;
        let rows = stmt.query_map(params![project_id, days.first, days.last], |r| {
            Ok(PhaseHist {
                command: r.get(0)?,
                phase: r.get(1)?,
                parent: r.get(2)?,
                version: r.get(3)?,
                // Decoded in place: the BLOB is not copied out first.
                hist: r
                    .get_ref(4)?
                    .as_blob()
                    .map(BucketCounts::decode)
                    .unwrap_or_default(),
                start_ms_sum: r.get(5)?,
            })
        })?;
        let rows: Vec<PhaseHist> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(crate::rollup::sum_phase_rows(rows))
    }

    fn measurements(&self, project_id: i64, days: DayRange) -> Result<Vec<MeasureHist>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, version, bucket, sum(count), sum(sum)
             FROM rollup_measurements WHERE project_id = ?1 AND day >= ?2 AND day <= ?3
             GROUP BY name, version, bucket",
        )?;
        let rows = stmt.query_map(params![project_id, days.first, days.last], |r| {
            Ok(MeasureHist {
                name: r.get(0)?,
                version: r.get(1)?,
                bucket: r.get(2)?,
                count: r.get(3)?,
                sum: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn durations(&self, project_id: i64, days: DayRange) -> Result<Vec<HistRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT day, name, bucket, count FROM rollup_durations
             WHERE project_id = ?1 AND day >= ?2 AND day <= ?3",
        )?;
        let rows = stmt.query_map(params![project_id, days.first, days.last], |r| {
            Ok(HistRow {
                day: r.get(0)?,
                name: r.get(1)?,
                bucket: r.get(2)?,
                count: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn version_durations(
        &self,
        project_id: i64,
        days: DayRange,
        versions: &[&str],
    ) -> Result<Vec<VersionHistRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, bucket, SUM(count) FROM rollup_version_durations
             WHERE project_id = ?1 AND version = ?2 AND day >= ?3 AND day <= ?4
             GROUP BY name, bucket",
        )?;
        let mut out = Vec::new();
        for &version in versions {
            let rows =
                stmt.query_map(params![project_id, version, days.first, days.last], |r| {
                    Ok(VersionHistRow {
                        name: r.get(0)?,
                        version: version.to_owned(),
                        bucket: r.get(1)?,
                        count: r.get(2)?,
                    })
                })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn installs(
        &self,
        project_id: i64,
        days: DayRange,
        kinds: &[SketchKind],
    ) -> Result<Vec<SketchRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT day, value, sketch FROM rollup_installs
             WHERE project_id = ?1 AND kind = ?2 AND day >= ?3 AND day <= ?4",
        )?;
        let mut out = Vec::new();
        for &kind in kinds {
            let rows = stmt.query_map(
                params![project_id, kind.code(), days.first, days.last],
                |r| {
                    Ok(SketchRow {
                        day: r.get(0)?,
                        kind,
                        value: r.get(1)?,
                        sketch: InstallSketch::decode(&r.get::<_, Vec<u8>>(2)?),
                    })
                },
            )?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn add_alert_hook(
        &self,
        project: &str,
        url: &str,
        secret: &str,
        kinds: &[AlertKind],
        log: bool,
        now_ms: i64,
    ) -> Result<AlertHook> {
        let conn = self.conn();
        let Some(project_id) = conn
            .query_row("SELECT id FROM projects WHERE name = ?1", [project], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        else {
            return Err(StorageError::NoProject(project.to_owned()));
        };
        conn.execute(
            "INSERT INTO alert_hooks (project_id, url, secret, kinds, log, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![project_id, url, secret, kinds_column(kinds), log, now_ms],
        )?;
        Ok(AlertHook {
            id: conn.last_insert_rowid(),
            project_id,
            project: project.to_owned(),
            url: url.to_owned(),
            secret: secret.to_owned(),
            kinds: kinds.to_vec(),
            log,
            created_ms: now_ms,
        })
    }

    fn alert_hooks(&self, project: Option<&str>) -> Result<Vec<AlertHook>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT h.id, h.project_id, p.name, h.url, h.secret, h.kinds, h.log, h.created_ms
             FROM alert_hooks h JOIN projects p ON p.id = h.project_id
             WHERE ?1 IS NULL OR p.name = ?1 ORDER BY h.id",
        )?;
        let rows = stmt.query_map([project], |r| {
            Ok(AlertHook {
                id: r.get(0)?,
                project_id: r.get(1)?,
                project: r.get(2)?,
                url: r.get(3)?,
                secret: r.get(4)?,
                kinds: kinds_of_column(&r.get::<_, String>(5)?),
                log: r.get(6)?,
                created_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn remove_alert_hook(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM alert_hooks WHERE id = ?1", [id])?
            > 0)
    }

    fn mark_alert(&self, project_id: i64, key: &AlertKey, now_ms: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO alert_fired (project_id, kind, version, command, detail, fired_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                project_id,
                key.kind.as_str(),
                key.version,
                key.command,
                key.detail,
                now_ms
            ],
        )? > 0)
    }

    fn clear_alert(&self, project_id: i64, key: &AlertKey) -> Result<()> {
        self.conn().execute(
            "DELETE FROM alert_fired
             WHERE project_id = ?1 AND kind = ?2 AND version = ?3 AND command = ?4 AND detail = ?5",
            params![
                project_id,
                key.kind.as_str(),
                key.version,
                key.command,
                key.detail
            ],
        )?;
        Ok(())
    }

    fn purge_before(&self, cutoff_ms: i64) -> Result<PurgeOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let day = day_of(cutoff_ms);
        // `ts_ms / 86400000` is the indexed expression (events_by_day, migration 0003).
        let events = tx.execute(PURGE_EVENTS, params![day, cutoff_ms])? as u64;
        tx.execute(PURGE_UPLOADS, [cutoff_ms - crate::rollup::DAY_MS])?;
        let mut rollup_rows = 0;
        for table in ROLLUP_TABLES {
            rollup_rows +=
                tx.execute(&format!("DELETE FROM {table} WHERE day < ?1"), [day])? as u64;
        }
        tx.commit()?;
        self.drop_sketches();
        Ok(PurgeOutcome {
            events,
            rollup_rows,
        })
    }

    fn forget(&self, project_id: Option<i64>, pseudonyms: &[String]) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = Vec::new();
        let mut uploads = Vec::new();
        {
            let mut find = tx.prepare_cached(FORGET_UPLOADS)?;
            let mut select = tx.prepare_cached(FORGET_SELECT)?;
            for p in pseudonyms.iter().collect::<HashSet<_>>() {
                let found = find.query_map(params![p, project_id], |r| {
                    Ok(Upload {
                        id: r.get(0)?,
                        project_id: r.get(1)?,
                        version: r.get(2)?,
                        os: r.get(3)?,
                        arch: r.get(4)?,
                        pseudonym: r.get(5)?,
                        rows: (r.get(6)?, r.get(7)?),
                    })
                })?;
                for u in found {
                    let u = u?;
                    let rows = select.query_map(params![u.id, u.rows.0, u.rows.1], |r| {
                        Ok(StoredEvent {
                            project_id: u.project_id,
                            ts_ms: r.get(0)?,
                            event_type: EventType::parse(&r.get::<_, String>(1)?)
                                .unwrap_or(EventType::Custom),
                            name: r.get(2)?,
                            version: u.version.clone(),
                            os: u.os.clone(),
                            arch: u.arch.clone(),
                            duration_ms: r.get::<_, Option<i64>>(3)?.map(|d| d.max(0) as u64),
                            success: r.get(4)?,
                            error_code: r.get(5)?,
                            pseudonym: u.pseudonym.clone(),
                            facts: r.get(6)?,
                        })
                    })?;
                    for row in rows {
                        stored.push(row?);
                    }
                    uploads.push(u);
                }
            }
        }
        let delta = super::forget_delta(&stored);
        apply_delta(&tx, &delta, true, None)?;
        self.drop_sketches();
        let mut deleted = 0;
        for u in &uploads {
            deleted += tx.execute(FORGET_EVENTS, params![u.id, u.rows.0, u.rows.1])? as u64;
            tx.execute("DELETE FROM uploads WHERE upload_id = ?1", [u.id])?;
        }
        tx.commit()?;
        Ok(deleted)
    }
}

/// One row of `uploads` as deletion by pseudonym reads it.
struct Upload {
    id: i64,
    project_id: i64,
    version: String,
    os: String,
    arch: String,
    pseudonym: String,
    /// First and last `events.seq` of its events.
    rows: (i64, i64),
}
