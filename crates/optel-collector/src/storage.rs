//! Storage behind one trait. The embedded default is SQLite ([`SqliteStore`]): WAL mode, one
//! connection behind a mutex, every batch committed in one transaction before the HTTP answer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use optel_wire::Batch;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::query::{
    CommandStats, ErrorCodeStats, NameStats, PlatformStats, Stats, TimeRange, VersionStats,
};

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A project of that name exists already.
    #[error("project {0:?} already exists: pick another name or use the existing project's key")]
    ProjectExists(String),
    /// The database schema is newer than this binary.
    #[error(
        "database schema version {found} is newer than this optel ({supported}): upgrade optel"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// Creating the data directory failed.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// `Result` with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A project: one tool whose events are collected, with its own ingest keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    /// Database id.
    pub id: i64,
    /// Unique name, e.g. `acme`.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// What [`Store::insert_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Events newly stored.
    pub inserted: u64,
    /// Events already stored by an earlier request (same event id), not stored again.
    pub duplicates: u64,
}

/// A storage backend. Methods block: async callers run them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// Creates a project with its first ingest key, given as the key's SHA-256 hex.
    ///
    /// # Errors
    /// [`StorageError::ProjectExists`] if the name is taken; database errors.
    fn create_project(&self, name: &str, key_hash: &str, now_ms: i64) -> Result<Project>;
    /// All projects, by name.
    ///
    /// # Errors
    /// Database errors.
    fn list_projects(&self) -> Result<Vec<Project>>;
    /// The project with this name.
    ///
    /// # Errors
    /// Database errors.
    fn project_by_name(&self, name: &str) -> Result<Option<Project>>;
    /// The project an unrevoked ingest key (as SHA-256 hex) writes to.
    ///
    /// # Errors
    /// Database errors.
    fn project_for_key(&self, key_hash: &str) -> Result<Option<Project>>;
    /// Stores a validated batch for a project in one transaction, skipping events whose id is
    /// already stored. Returns only after the commit.
    ///
    /// # Errors
    /// Database errors; nothing of the batch is stored then.
    fn insert_batch(
        &self,
        project_id: i64,
        batch: &Batch,
        received_ms: i64,
    ) -> Result<InsertOutcome>;
    /// Usage statistics of a project over a time range.
    ///
    /// # Errors
    /// Database errors.
    fn stats(&self, project: &Project, range: TimeRange) -> Result<Stats>;
}

/// Migrations of the SQLite schema, applied in order; `PRAGMA user_version` records how many ran.
const SQLITE_MIGRATIONS: &[&str] = &[include_str!("../migrations/sqlite/0001_init.sql")];

/// The embedded SQLite backend: one file, `optel.db`, in the data directory.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
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
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
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

fn project_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: row.get(0)?,
        name: row.get(1)?,
        created_ms: row.get(2)?,
    })
}

impl Store for SqliteStore {
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
        })
    }

    fn list_projects(&self) -> Result<Vec<Project>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name, created_ms FROM projects ORDER BY name")?;
        let rows = stmt.query_map([], project_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT id, name, created_ms FROM projects WHERE name = ?1",
                [name],
                project_from_row,
            )
            .optional()?)
    }

    fn project_for_key(&self, key_hash: &str) -> Result<Option<Project>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT p.id, p.name, p.created_ms FROM ingest_keys k JOIN projects p ON p.id = k.project_id
                 WHERE k.key_hash = ?1 AND k.revoked_ms IS NULL",
                [key_hash],
                project_from_row,
            )
            .optional()?)
    }

    fn insert_batch(
        &self,
        project_id: i64,
        batch: &Batch,
        received_ms: i64,
    ) -> Result<InsertOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcome = InsertOutcome::default();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (project_id, event_id, event_type, name, ts_ms, received_ms,
                    service, service_version, pseudonym, session_id, os, arch, duration_ms, success,
                    error_code, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
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
                } else {
                    outcome.duplicates += 1;
                }
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    fn stats(&self, project: &Project, range: TimeRange) -> Result<Stats> {
        let conn = self.conn();
        let p = params![project.id, range.since_ms, range.until_ms];
        const WHERE: &str = "project_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3";

        let mut stmt = conn.prepare_cached(&format!(
            "SELECT name, COUNT(*), COALESCE(SUM(success = 0), 0), COUNT(DISTINCT pseudonym)
             FROM events WHERE {WHERE} AND event_type = 'command'
             GROUP BY name ORDER BY COUNT(*) DESC, name"
        ))?;
        let commands = stmt
            .query_map(p, |r| {
                Ok(CommandStats {
                    name: r.get(0)?,
                    count: r.get::<_, i64>(1)? as u64,
                    failures: r.get::<_, i64>(2)? as u64,
                    installs: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;

        let mut stmt = conn.prepare_cached(&format!(
            "SELECT name, error_code, COUNT(*) FROM events
             WHERE {WHERE} AND event_type = 'command' AND success = 0
             GROUP BY name, error_code ORDER BY COUNT(*) DESC, name, error_code LIMIT 50"
        ))?;
        let error_codes = stmt
            .query_map(p, |r| {
                Ok(ErrorCodeStats {
                    command: r.get(0)?,
                    error_code: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    count: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;

        let active_installs: i64 = conn.query_row(
            &format!("SELECT COUNT(DISTINCT pseudonym) FROM events WHERE {WHERE}"),
            p,
            |r| r.get(0),
        )?;
        let events: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM events WHERE {WHERE}"),
            p,
            |r| r.get(0),
        )?;

        let mut stmt = conn.prepare_cached(&format!(
            "SELECT service_version, COUNT(*), COUNT(DISTINCT pseudonym) FROM events WHERE {WHERE}
             GROUP BY service_version ORDER BY COUNT(DISTINCT pseudonym) DESC, service_version DESC"
        ))?;
        let versions = stmt
            .query_map(p, |r| {
                Ok(VersionStats {
                    version: r.get(0)?,
                    events: r.get::<_, i64>(1)? as u64,
                    installs: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;

        let mut stmt = conn.prepare_cached(&format!(
            "SELECT os, arch, COUNT(*), COUNT(DISTINCT pseudonym) FROM events WHERE {WHERE}
             GROUP BY os, arch ORDER BY COUNT(DISTINCT pseudonym) DESC, os, arch"
        ))?;
        let platforms = stmt
            .query_map(p, |r| {
                Ok(PlatformStats {
                    os: r.get(0)?,
                    arch: r.get(1)?,
                    events: r.get::<_, i64>(2)? as u64,
                    installs: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;

        let named = |event_type: &str| -> Result<Vec<NameStats>> {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT name, COUNT(*), COUNT(DISTINCT pseudonym) FROM events
                 WHERE {WHERE} AND event_type = ?4 GROUP BY name ORDER BY COUNT(*) DESC, name LIMIT 100"
            ))?;
            let rows = stmt.query_map(
                params![project.id, range.since_ms, range.until_ms, event_type],
                |r| {
                    Ok(NameStats {
                        name: r.get(0)?,
                        count: r.get::<_, i64>(1)? as u64,
                        installs: r.get::<_, i64>(2)? as u64,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        };

        Ok(Stats {
            project: project.name.clone(),
            since: optel_wire::Timestamp::from_unix_ms(range.since_ms),
            until: optel_wire::Timestamp::from_unix_ms(range.until_ms),
            events: events as u64,
            active_installs: active_installs as u64,
            commands,
            error_codes,
            versions,
            platforms,
            features: named("feature")?,
            methods: named("method")?,
        })
    }
}
