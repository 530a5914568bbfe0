//! The embedded SQLite backend: WAL mode, one connection behind a mutex (the group-commit
//! writer of [`crate::writer`] is its only writer during ingest), every batch committed in one
//! transaction with its rollups before the HTTP answer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use optel_wire::{Batch, EventType};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{InsertOutcome, Project, PurgeOutcome, Result, StorageError, Store, StoredEvent};
use crate::rollup::{
    CountKey, CountRow, DayRange, Delta, EventFacts, HistRow, InstallSketch, SketchKind, SketchRow,
    day_of, install_hash,
};

/// Migrations of the SQLite schema, applied in order; `PRAGMA user_version` records how many ran.
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_rollups.sql"),
];

/// The embedded SQLite backend: one file, `optel.db`, in the data directory.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Stops the checkpoint thread when the store is dropped.
    checkpointer: Option<Checkpointer>,
}

/// A thread that checkpoints the WAL from its own connection, so that the writer's commits
/// never stop to copy pages back and fsync (which, with SQLite's default automatic checkpoint
/// on the committing connection, dominated commit latency under steady ingest).
#[derive(Debug)]
struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
}

/// How often the checkpoint thread runs a passive checkpoint.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Checkpointer {
    fn spawn(path: &Path) -> Option<Self> {
        let conn = Connection::open(path).ok()?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(1));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
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
        Some(Self { stop })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(c) = self.checkpointer.take() {
            let _ = c.stop.send(());
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
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Event ids are random UUIDs, so inserts touch pages all over the primary key: keep
        // them in memory (256 MiB page cache, 1 GiB memory map) rather than re-reading them
        // through the kernel on every commit.
        conn.pragma_update(None, "cache_size", -262_144)?;
        conn.pragma_update(None, "mmap_size", 1_073_741_824_i64)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        migrate(&mut conn)?;
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

/// Writes a rollup delta inside `tx`. With `removing`, install hashes are taken out of the
/// sketches instead of added.
fn apply_delta(tx: &rusqlite::Transaction<'_>, delta: &Delta, removing: bool) -> Result<()> {
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
    let mut get = tx.prepare_cached(
        "SELECT sketch FROM rollup_installs
         WHERE project_id = ?1 AND day = ?2 AND kind = ?3 AND value = ?4",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO rollup_installs (project_id, day, kind, value, sketch)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (p, day, kind, value, hashes) in delta.sorted_installs() {
        let stored: Option<Vec<u8>> = get
            .query_row(params![p, day, kind.code(), value], |r| r.get(0))
            .optional()?;
        if removing && stored.is_none() {
            continue;
        }
        let mut sketch = stored
            .as_deref()
            .map(InstallSketch::decode)
            .unwrap_or_default();
        for &h in hashes {
            if removing {
                sketch.remove(h);
            } else {
                sketch.insert(h);
            }
        }
        put.execute(params![p, day, kind.code(), value, sketch.encode()])?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
        let conn = self.conn();
        // Foreign keys cascade to keys, events and rollups.
        Ok(conn.execute("DELETE FROM projects WHERE name = ?1", [name])? > 0)
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

    fn add_key(&self, project: &str, key_hash: &str, now_ms: i64) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO ingest_keys (key_hash, project_id, created_ms)
             SELECT ?2, id, ?3 FROM projects WHERE name = ?1",
            params![project, key_hash, now_ms],
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

    fn project_for_key(&self, key_hash: &str) -> Result<Option<Project>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT p.id, p.name, p.created_ms, p.public
                 FROM ingest_keys k JOIN projects p ON p.id = k.project_id
                 WHERE k.key_hash = ?1 AND k.revoked_ms IS NULL",
                [key_hash],
                project_from_row,
            )
            .optional()?)
    }

    fn insert_batches(
        &self,
        batches: &[(i64, &Batch)],
        received_ms: i64,
    ) -> Result<Vec<InsertOutcome>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut delta = Delta::default();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (project_id, event_id, event_type, name, ts_ms,
                    received_ms, service, service_version, pseudonym, session_id, os, arch,
                    duration_ms, success, error_code, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            for &(project_id, batch) in batches {
                let mut outcome = InsertOutcome::default();
                let install = install_hash(&batch.pseudonym);
                for e in &batch.events {
                    let metadata = if e.metadata.is_empty() {
                        None
                    } else {
                        serde_json::to_string(&e.metadata).ok()
                    };
                    let n = stmt.execute(params![
                        project_id,
                        e.event_id.to_ascii_lowercase(),
                        e.event_type.as_str(),
                        e.name,
                        e.timestamp.unix_ms(),
                        received_ms,
                        batch.service_name,
                        batch.service_version,
                        batch.pseudonym,
                        e.session_id,
                        batch.os,
                        batch.arch,
                        e.duration_ms.map(|d| d as i64),
                        e.success,
                        e.error_code,
                        metadata,
                    ])?;
                    if n == 1 {
                        outcome.inserted += 1;
                        delta.add(&EventFacts::of(project_id, batch, e, install), 1);
                    } else {
                        outcome.duplicates += 1;
                    }
                }
                outcomes.push(outcome);
            }
        }
        apply_delta(&tx, &delta, false)?;
        tx.commit()?;
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

    fn purge_before(&self, cutoff_ms: i64) -> Result<PurgeOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let day = day_of(cutoff_ms);
        let events = tx.execute("DELETE FROM events WHERE ts_ms < ?1", [cutoff_ms])? as u64;
        let mut rollup_rows = 0;
        for table in ["rollup_counts", "rollup_durations", "rollup_installs"] {
            rollup_rows +=
                tx.execute(&format!("DELETE FROM {table} WHERE day < ?1"), [day])? as u64;
        }
        tx.commit()?;
        Ok(PurgeOutcome {
            events,
            rollup_rows,
        })
    }

    fn forget(&self, project_id: Option<i64>, pseudonyms: &[String]) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT project_id, ts_ms, event_type, name, service_version, os, arch,
                        duration_ms, success, error_code, pseudonym
                 FROM events WHERE pseudonym = ?1 AND (?2 IS NULL OR project_id = ?2)",
            )?;
            let unique: HashSet<&String> = pseudonyms.iter().collect();
            for p in unique {
                let rows = stmt.query_map(params![p, project_id], |r| {
                    Ok(StoredEvent {
                        project_id: r.get(0)?,
                        ts_ms: r.get(1)?,
                        event_type: EventType::parse(&r.get::<_, String>(2)?)
                            .unwrap_or(EventType::Custom),
                        name: r.get(3)?,
                        version: r.get(4)?,
                        os: r.get(5)?,
                        arch: r.get(6)?,
                        duration_ms: r.get::<_, Option<i64>>(7)?.map(|d| d.max(0) as u64),
                        success: r.get(8)?,
                        error_code: r.get(9)?,
                        pseudonym: r.get(10)?,
                    })
                })?;
                for row in rows {
                    stored.push(row?);
                }
            }
        }
        let delta = super::forget_delta(&stored);
        apply_delta(&tx, &delta, true)?;
        let mut deleted = 0;
        for p in pseudonyms.iter().collect::<HashSet<_>>() {
            deleted += tx.execute(
                "DELETE FROM events WHERE pseudonym = ?1 AND (?2 IS NULL OR project_id = ?2)",
                params![p, project_id],
            )? as u64;
        }
        tx.commit()?;
        Ok(deleted)
    }
}
